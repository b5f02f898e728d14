"""Three people: a private room, a direct message, unread counts, a mention, leaving."""

from __future__ import annotations

import re

import pytest

from tests.e2e.people import Cast, Person, expect

pytestmark = pytest.mark.e2e

MENTION_BACKGROUND = "rgb(255, 246, 214)"  # --mention in the light scheme (static/app.css)


def sidebar_link(person: Person, name: str | re.Pattern[str]) -> object:
    return person.page.locator("#sidebar").get_by_role("link", name=name)


async def test_private_room_direct_message_unread_mentions_and_leaving(cast: Cast) -> None:
    cast.expect_console("status of 404", "/rooms/p-")  # Cee, then Bob, refused on purpose
    ada = await cast.person("ada@example.org")
    bob = await cast.person("bob@example.org")
    cee = await cast.person("cee@example.org")

    # Ada makes a private room and invites Bob, whose room list (live) shows it at once.
    await ada.page.get_by_label("Room name").fill("Secret plans")
    await ada.page.get_by_label("Private").check()
    await ada.page.get_by_role("button", name="Create room").click()
    await ada.page.wait_for_url(re.compile(r"/rooms/p-[0-9a-f]{16}$"))
    await ada.wait_until_live()
    secret_url = ada.page.url
    await ada.page.get_by_label("Invite by email").fill("bob@example.org")
    await ada.page.get_by_role("button", name="Invite", exact=True).click()
    await expect(ada.page.get_by_text("can open this room now")).to_be_visible()
    await expect(sidebar_link(bob, "Secret plans")).to_be_visible()

    # Cee can neither see nor open it.
    await expect(cee.page.locator("#sidebar")).not_to_contain_text("Secret plans")
    refused = await cee.page.goto(secret_url)
    assert refused is not None and refused.status == 404
    await cee.page.goto("/")

    await sidebar_link(bob, "Secret plans").click()
    await bob.wait_until_live()
    await ada.send("Tea at four?")
    await bob.sees("Tea at four?")
    await bob.send("Yes, and cake")
    await ada.sees("Tea at four?", "Yes, and cake")

    # Ada starts a direct message with Cee from the Online list of #general.
    await cee.open_room("general")
    await sidebar_link(ada, "general").click()
    await ada.wait_until_live()
    await expect(ada.online.get_by_text("cee", exact=True)).to_be_visible()
    await ada.page.get_by_role("link", name="Message cee").click()
    await ada.page.wait_for_url(re.compile(r"/rooms/d-[0-9a-f]{16}$"))
    await ada.wait_until_live()
    await expect(ada.page.get_by_role("heading", level=1)).to_contain_text("cee")
    await ada.send("Hi Cee, have you got a minute?")
    # In Cee's sidebar (she is in #general) the conversation appears, with its count, live.
    direct = sidebar_link(cee, re.compile("^ada"))
    await expect(direct).to_contain_text("1 unread")
    await ada.send("It is about the launch")
    await expect(direct).to_contain_text("2 unread")
    await direct.click()
    await cee.wait_until_live()
    await cee.sees("Hi Cee, have you got a minute?", "It is about the launch")
    await expect(cee.page.locator("#sidebar")).not_to_contain_text("unread")

    # A mention in #general highlights the message for Cee only.
    await sidebar_link(cee, "general").click()
    await cee.wait_until_live()
    await sidebar_link(bob, "general").click()
    await bob.wait_until_live()
    await bob.send("@cee the slides are ready")
    await cee.sees("@cee the slides are ready")
    mention = cee.messages.last.locator(".msg-main")
    await expect(mention).to_have_css("background-color", MENTION_BACKGROUND)
    await expect(bob.messages.last.locator(".msg-main")).not_to_have_css(
        "background-color", MENTION_BACKGROUND
    )
    await expect(cee.messages.last.get_by_role("link", name="@cee")).to_be_visible()

    # Bob leaves the private room; his other tab's sidebar drops it at once.
    other_tab = await bob.context.new_page()
    await other_tab.goto("/")
    await expect(other_tab.locator("#sidebar[data-live]")).to_have_count(1)  # its socket is open
    await expect(
        other_tab.locator("#sidebar").get_by_role("link", name="Secret plans")
    ).to_be_visible()
    await bob.page.goto(secret_url)
    await bob.wait_until_live()
    await bob.page.get_by_role("button", name="Leave room").click()
    await bob.page.wait_for_url(cast.base_url + "/")
    await expect(other_tab.locator("#sidebar")).not_to_contain_text("Secret plans")
    await expect(bob.page.locator("#sidebar")).not_to_contain_text("Secret plans")
    refused = await bob.page.goto(secret_url)
    assert refused is not None and refused.status == 404
