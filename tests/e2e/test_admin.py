"""An admin bans someone who has a room open: their socket closes at once, sign-in refuses them."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.people import Cast, expect

ADMIN, BOB = "admin@example.org", "bob@example.org"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
BANNED = "This address has been banned from this chat by an admin."


async def test_an_admin_bans_bob_while_he_has_a_room_open(cast: Cast) -> None:
    admin = await cast.person(ADMIN)
    bob = await cast.person(BOB)
    await bob.open_room("general")
    await admin.open_room("general")
    await expect(admin.online.get_by_text(bob.name, exact=True)).to_be_visible()
    # Sign-in refusals are 403 answers on purpose; Chromium logs each one.
    cast.expect_console(r"status of 403", url="/login")

    desk = await admin.context.new_page()
    await desk.goto("/admin")
    await desk.get_by_label("Ban email").fill(BOB)
    await desk.get_by_role("button", name="Ban", exact=True).click()
    await desk.wait_for_url(re.compile(r"/admin$"))
    banned = desk.get_by_role("listitem").filter(has_text=BOB)
    await expect(banned.get_by_role("button", name="Unban")).to_be_visible()
    await expect(desk.get_by_text(f"banned {BOB}")).to_be_visible()  # the admin log
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await desk.screenshot(path=SCREENSHOTS / "admin-desktop-light.png", full_page=True)
    await admin.page.screenshot(path=SCREENSHOTS / "admin-room-rules-desktop-light.png")

    # Bob's open room hears it over its socket, without a reload; his socket is gone, so he
    # leaves the Online list the admin is looking at.
    await expect(bob.page.get_by_text("You are signed out.")).to_be_visible()
    await expect(admin.online.get_by_text(bob.name, exact=True)).to_be_hidden()

    await bob.page.reload()
    await bob.page.wait_for_url(re.compile(r"/login$"))
    sent = len(cast.inbox.to(BOB))
    await bob.page.get_by_label("Email").fill(BOB)
    await bob.page.get_by_role("button", name="Send code").click()
    await expect(bob.page.get_by_role("alert")).to_have_text(BANNED)
    assert len(cast.inbox.to(BOB)) == sent  # no code was mailed
