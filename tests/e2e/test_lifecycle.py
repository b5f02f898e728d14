"""Messages after they are sent: edited, deleted and reacted to, live for everyone, the same
after a reload and after a reconnect; and who is typing."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Locator

from tests.e2e.people import Cast, Person, expect
from tests.e2e.test_reconnect import set_tab_hidden

pytestmark = pytest.mark.e2e


def message(person: Person, text: str) -> Locator:
    return person.messages.filter(has_text=text)


async def edit(person: Person, old: str, new: str) -> None:
    await message(person, old).get_by_role("button", name="Edit").click()
    box = person.page.get_by_role("textbox", name="Edit message")
    await expect(box).to_have_value(old)
    await box.fill(new)
    await person.page.get_by_role("button", name="Save").click()
    await expect(message(person, new).locator(".edited")).to_have_text("(edited)")


async def delete(person: Person, text: str) -> None:
    await message(person, text).get_by_role("button", name="Delete").click()
    confirm = person.page.locator(".msg-confirm")
    await expect(confirm).to_contain_text("Delete this message?")
    await confirm.get_by_role("button", name="Delete").click()
    await expect(confirm).to_have_count(0)


async def test_edits_and_deletions_reach_everyone_live_after_reload_and_reconnect(
    cast: Cast,
) -> None:
    ada, bob = await cast.ada_and_bob_in_general()
    await ada.send("helo wrld")
    await ada.send("this one goes")
    await bob.sees("helo wrld", "this one goes")
    # Only the author gets the buttons (the server checks too: tests/test_changes.py).
    await expect(message(bob, "helo wrld").get_by_role("button", name="Edit")).to_have_count(0)
    await expect(message(bob, "helo wrld").get_by_role("button", name="Delete")).to_have_count(0)

    await edit(ada, "helo wrld", "hello world")
    await bob.sees("hello world", "this one goes")
    edited = message(bob, "hello world").locator(".edited")
    await expect(edited).to_have_text("(edited)")
    await expect(edited).to_have_attribute("title", re.compile(r"\d"))

    await delete(ada, "this one goes")
    await bob.sees("hello world", "Message deleted")
    await ada.sees("hello world", "Message deleted")

    # Bob's socket closes (tab hidden); what changes meanwhile arrives once he is back.
    await set_tab_hidden(bob.page, True)
    await expect(ada.online.get_by_text("bob", exact=True)).to_have_count(0)
    await edit(ada, "hello world", "hello, world")
    await ada.send("third")
    await delete(ada, "third")
    await ada.send("fourth")
    await asyncio.sleep(0.3)
    await bob.sees("hello world", "Message deleted")
    await set_tab_hidden(bob.page, False)
    await bob.sees("hello, world", "Message deleted", "Message deleted", "fourth")

    await bob.page.reload()
    await bob.wait_until_live()
    await bob.sees("hello, world", "Message deleted", "Message deleted", "fourth")
    await expect(message(bob, "hello, world").locator(".edited")).to_have_text("(edited)")


async def test_reactions_count_who_and_toggle_for_everyone(cast: Cast) -> None:
    ada, bob = await cast.ada_and_bob_in_general()
    await ada.send("ship it?")
    await bob.sees("ship it?")

    await message(bob, "ship it?").get_by_role("button", name="👍", exact=True).click()
    for person in (ada, bob):
        await expect(
            message(person, "ship it?").get_by_role("button", name="👍 1: bob")
        ).to_be_visible()
    await expect(
        message(bob, "ship it?").get_by_role("button", name="👍 1: bob")
    ).to_have_attribute("aria-pressed", "true")
    await expect(
        message(ada, "ship it?").get_by_role("button", name="👍 1: bob")
    ).to_have_attribute("aria-pressed", "false")

    await message(ada, "ship it?").get_by_role("button", name="👍 1: bob").click()
    await message(ada, "ship it?").get_by_role("button", name="🎉", exact=True).click()
    for person in (ada, bob):
        thumbs = message(person, "ship it?").get_by_role("button", name="👍 2: bob, ada")
        await expect(thumbs).to_have_attribute("aria-pressed", "true")
        await expect(
            message(person, "ship it?").get_by_role("button", name="🎉 1: ada")
        ).to_be_visible()

    await message(bob, "ship it?").get_by_role("button", name="👍 2: bob, ada").click()
    for person in (ada, bob):
        await expect(
            message(person, "ship it?").get_by_role("button", name="👍 1: ada")
        ).to_be_visible()
    await expect(
        message(bob, "ship it?").get_by_role("button", name="👍 1: ada")
    ).to_have_attribute("aria-pressed", "false")

    await bob.page.reload()
    await bob.wait_until_live()
    await expect(message(bob, "ship it?").get_by_role("button", name="🎉 1: ada")).to_be_visible()


async def test_typing_is_shown_to_the_others_and_goes_away(cast: Cast) -> None:
    ada, bob = await cast.ada_and_bob_in_general()
    typing_line = ada.page.locator("#typing")
    await bob.message_box.press_sequentially("I am wri", delay=30)
    await expect(typing_line).to_have_text("bob is typing…", timeout=1500)
    await expect(bob.page.locator("#typing")).to_have_text("")  # not to the typist

    # Stopping: gone within 6 s of the last key.
    await expect(typing_line).to_have_text("", timeout=6500)

    # Sending: gone at once. Typing again this soon can wait out htmx's 3 s throttle window,
    # so Bob types for a while (a few keys within one window may never show, rightly).
    typing = asyncio.create_task(bob.message_box.press_sequentially(" now, still", delay=250))
    await expect(typing_line).to_have_text("bob is typing…", timeout=4000)
    await typing
    await bob.message_box.press("Enter")
    await ada.sees("I am wri now, still")
    await expect(typing_line).to_have_text("", timeout=1000)


async def test_slow_mode_refuses_a_second_quick_message_with_the_wait(cast: Cast) -> None:
    admin = await cast.person("admin@example.org")
    bob = await cast.person("bob@example.org")
    await admin.open_room("general")
    await admin.page.get_by_label("Slow mode").select_option(label="30 s")
    await admin.page.locator(".rules-form").get_by_role("button", name="Save").click()
    await admin.wait_until_live()
    await expect(admin.page.get_by_label("Slow mode")).to_have_value("30")
    try:
        await bob.open_room("general")
        await bob.send("first")
        await bob.message_box.fill("second, too soon")
        await bob.message_box.press("Enter")
        notice = bob.page.locator("#compose-error")
        await expect(notice).to_contain_text("slow mode")
        await expect(notice).to_contain_text(re.compile(r"\d+ seconds"))
        await expect(bob.message_box).to_have_value("second, too soon")  # kept to send later
        await admin.sees("first")
    finally:
        await admin.page.get_by_label("Slow mode").select_option(label="Off")
        await admin.page.locator(".rules-form").get_by_role("button", name="Save").click()
        await expect(admin.page.get_by_label("Slow mode")).to_have_value("0")
