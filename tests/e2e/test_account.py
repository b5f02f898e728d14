"""Where a person is signed in, as they see and use it on /settings."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.e2e.people import Cast, expect

pytestmark = pytest.mark.e2e

PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


async def test_ada_ends_the_session_on_her_other_browser(cast: Cast) -> None:
    laptop = await cast.person("ada@example.org")
    await asyncio.sleep(1.1)  # CODE_RESEND_SECONDS: the second code is a second email
    phone = await cast.person("ada@example.org", user_agent=PHONE)
    await phone.open_room("general")

    await laptop.page.goto("/settings")
    signed_in = laptop.page.get_by_role("region", name="Where you're signed in")
    rows = signed_in.get_by_role("listitem")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("This browser")
    other = rows.filter(has_text="Mobile Safari 17 on iOS 17")
    await expect(other).to_have_count(1)
    await other.get_by_role("button", name=re.compile("^Sign out")).click()

    await expect(laptop.page.get_by_role("status")).to_have_text("1 sign-in ended.")
    await expect(rows).to_have_count(1)
    # The phone's open room hears at once that it is signed out; its next request is refused.
    await expect(phone.page.get_by_text("You are signed out.")).to_be_visible()
    await phone.page.reload()
    await phone.page.wait_for_url(re.compile(r"/login$"))
    await expect(phone.page.get_by_role("heading", name="Sign in")).to_be_visible()
