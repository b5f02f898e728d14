"""Two people in two browsers: sign in, talk live, reload, make a room, sign out."""

from __future__ import annotations

import re

import pytest

from tests.e2e.people import Cast, expect

pytestmark = pytest.mark.e2e


async def test_two_people_talk_live_and_history_survives_a_reload(cast: Cast) -> None:
    ada = await cast.person("ada@example.org")
    bob = await cast.person("bob@example.org")
    for person in (ada, bob):
        await expect(person.page).to_have_url(cast.base_url + "/")
        await expect(
            person.page.get_by_role("main").get_by_role("link", name="general")
        ).to_be_visible()
        await expect(person.page.get_by_role("button", name="Sign out")).to_be_visible()
    await ada.open_room("general")
    await bob.open_room("general")
    await expect(ada.page).to_have_title(re.compile("general"))
    await expect(ada.online.get_by_text("bob", exact=True)).to_be_visible()

    await ada.send("Hi Bob, is the build green?")
    await bob.sees("Hi Bob, is the build green?")
    await expect(bob.messages.last.locator(".author")).to_have_text("ada")
    await expect(bob.messages.last.locator("time")).to_have_attribute(
        "datetime", re.compile(r"^\d{4}-")
    )

    await bob.send("Green since this morning.")
    await ada.sees("Hi Bob, is the build green?", "Green since this morning.")

    await bob.page.reload()
    await bob.wait_until_live()
    await bob.sees("Hi Bob, is the build green?", "Green since this morning.")
    await ada.send("Great, shipping it.")
    await bob.sees(
        "Hi Bob, is the build green?", "Green since this morning.", "Great, shipping it."
    )


async def test_a_new_room_can_be_joined_by_someone_else(cast: Cast) -> None:
    ada = await cast.person("ada@example.org")
    bob = await cast.person("bob@example.org")
    await ada.page.get_by_label("Room name").fill("Release planning")
    await ada.page.get_by_role("button", name="Create room").click()
    await ada.page.wait_for_url(cast.base_url + "/rooms/release-planning")
    await ada.wait_until_live()
    await expect(ada.page.get_by_role("heading", level=1)).to_contain_text("Release planning")

    # Bob's own list holds the rooms he opened; every room is one link away.
    await expect(bob.page.get_by_role("main").get_by_text("Release planning")).to_have_count(0)
    await bob.page.get_by_role("main").get_by_role("link", name="All rooms").click()
    await bob.open_room("Release planning")
    await expect(bob.page).to_have_url(cast.base_url + "/rooms/release-planning")
    await expect(ada.online.get_by_text("bob", exact=True)).to_be_visible()
    await ada.send("Welcome to the planning room")
    await bob.sees("Welcome to the planning room")
    await bob.send("Thanks!")
    await ada.sees("Welcome to the planning room", "Thanks!")


async def test_sign_out_returns_to_login_and_back_shows_nothing(cast: Cast) -> None:
    ada = await cast.person("ada@example.org")
    await ada.open_room("general")
    await ada.send("a secret plan")
    await ada.page.get_by_role("button", name="Sign out").click()
    await ada.page.wait_for_url(cast.base_url + "/login")
    await expect(ada.page.get_by_label("Email")).to_be_visible()

    await ada.page.go_back()
    await expect(ada.page).to_have_url(cast.base_url + "/login")
    await expect(ada.page.get_by_label("Email")).to_be_visible()
    await expect(ada.page.get_by_text("a secret plan")).to_have_count(0)
    response = await ada.page.goto("/rooms/general")
    assert response is not None
    await expect(ada.page).to_have_url(cast.base_url + "/login")
    await expect(ada.page.get_by_text("a secret plan")).to_have_count(0)


async def test_keyboard_only_tab_to_the_message_box_type_and_enter(cast: Cast) -> None:
    ada, bob = await cast.ada_and_bob_in_general()
    page = ada.page
    await page.locator("body").focus()
    for _ in range(40):
        await page.keyboard.press("Tab")
        if await ada.message_box.evaluate("box => box === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the Message box")
    await page.keyboard.type("typed without a mouse")
    await page.keyboard.press("Enter")
    await bob.sees("typed without a mouse")
    await expect(ada.message_box).to_have_value("")
    # The fresh form keeps the focus flow usable: Tab from the page lands there again.
    await expect(page.get_by_role("button", name="Send")).to_be_visible()
