"""What people send cannot run in anyone's browser, and oversized messages stop at the sender."""

from __future__ import annotations

import pytest

from tests.e2e.people import Cast, expect

pytestmark = pytest.mark.e2e

XSS = "<img src=x onerror=alert(1)>"


async def test_markup_in_a_message_is_shown_as_text(cast: Cast) -> None:
    ada, bob = await cast.ada_and_bob_in_general()
    await ada.send(XSS)
    await ada.send("<script>alert(2)</script> and https://example.org/?q=<b>")
    for person in (ada, bob):
        await person.sees(XSS, "<script>alert(2)</script> and https://example.org/?q=<b>")
        log = person.page.get_by_role("log")
        await expect(log.locator("img, script, b")).to_have_count(0)
        await expect(log.get_by_role("link")).to_have_attribute("href", "https://example.org/?q=")
    await bob.page.reload()
    await bob.wait_until_live()
    await bob.sees(XSS, "<script>alert(2)</script> and https://example.org/?q=<b>")
    await expect(bob.page.get_by_role("log").locator("img")).to_have_count(0)
    # A dialog or a blocked inline handler would be in cast.problems, checked after the test.


async def test_a_message_over_the_limit_gets_an_inline_error_and_reaches_nobody(
    cast: Cast,
) -> None:
    ada, bob = await cast.ada_and_bob_in_general()
    await ada.send("before")
    await bob.sees("before")

    await ada.message_box.fill("x" * 5000)
    await ada.message_box.press("Enter")
    error = ada.page.locator("#compose-error")
    await expect(error).to_contain_text("at most 4,000 characters")
    await expect(error).to_be_visible()
    await expect(ada.message_box).to_have_value("x" * 5000)  # kept, so it can be shortened

    await ada.message_box.fill("after")
    await ada.message_box.press("Enter")
    # Messages arrive in order, so once "after" is there the long one can no longer come.
    await bob.sees("before", "after")
    await ada.sees("before", "after")
    await expect(ada.page.locator("#compose-error")).to_be_hidden()
