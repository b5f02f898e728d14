"""A display name chosen in Settings is what the others see on new messages and in the room."""

from __future__ import annotations

import re

import pytest

from tests.e2e.people import Cast, expect

pytestmark = pytest.mark.e2e


async def test_a_display_name_shows_on_the_next_message(cast: Cast) -> None:
    ada, bob = await cast.ada_and_bob_in_general()
    await ada.send("Before my new name")
    await bob.sees("Before my new name")
    await expect(bob.messages.last.locator(".author")).to_have_text("ada")

    await ada.page.get_by_role("link", name="Settings").click()
    await expect(ada.page.get_by_label("Display name")).to_have_value("ada")
    await ada.page.get_by_label("Display name").fill("Ada Lovelace")
    await ada.page.get_by_role("button", name="Save").click()
    await expect(ada.page.get_by_role("status")).to_have_text("Saved.")
    await expect(ada.page.locator(".me-name")).to_have_text("Ada Lovelace")

    await ada.page.locator("#sidebar").get_by_role("link", name="general").click()
    await ada.page.wait_for_url(re.compile(r"/rooms/general$"))
    ada.name = "Ada Lovelace"  # how she is listed now
    await ada.wait_until_live()
    await expect(bob.online.get_by_text("Ada Lovelace", exact=True)).to_be_visible()
    await ada.send("After my new name")
    await bob.sees("Before my new name", "After my new name")
    await expect(bob.messages.last.locator(".author")).to_have_text("Ada Lovelace")
    await expect(bob.online).not_to_contain_text("example.org")

    # Bob follows her name in the Online list to her page, and from there writes to her.
    await bob.online.get_by_role("link", name="Ada Lovelace", exact=True).click()
    await expect(bob.page.get_by_role("heading", level=1)).to_have_text("Ada Lovelace")
    await expect(bob.page.get_by_role("main")).not_to_contain_text("example.org")
    await bob.page.get_by_role("link", name="Message Ada Lovelace").click()
    await bob.page.wait_for_url(re.compile(r"/rooms/d-[0-9a-f]{16}$"))
    await expect(bob.page.get_by_role("heading", level=1)).to_contain_text("Ada Lovelace")
