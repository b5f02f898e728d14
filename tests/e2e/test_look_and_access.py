"""Accessibility (axe-core, labels) and screenshots: light and dark, desktop and phone.

axe-core is vendored for the tests only (tests/e2e/vendor/, never served by the app). Injecting
it needs a context with bypass_csp=True; those contexts are used for nothing else, so the CSP
checks of the other tests run against the real policy.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from tests.e2e.people import Cast, Person, expect

pytestmark = pytest.mark.e2e

VENDOR = Path(__file__).parent / "vendor"
AXE = VENDOR / "axe-core-4.14.1.min.js"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
DEVICES: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
    },
}
SCHEMES = ("light", "dark")


async def conversation(cast: Cast) -> tuple[Person, Person]:
    """Ada and Bob in #general after a short exchange; Ada made a second room."""
    ada = await cast.person("ada.lovelace@example.org")
    bob = await cast.person("bob.stone@example.org")
    await ada.page.get_by_label("Room name").fill("Release planning")
    await ada.page.get_by_role("button", name="Create room").click()
    await ada.page.wait_for_url(cast.base_url + "/rooms/release-planning")
    await ada.page.goto("/")
    await ada.open_room("general")
    await bob.open_room("general")
    await ada.send("Morning! Did the 2.4 deploy go out?")
    await bob.send("Yes, at 9:40. Error rates are flat and the dashboards look calm.")
    await ada.send("Great. Release notes draft: https://example.org/notes/2.4")
    await bob.send(
        "Read it. One thing: the migration step needs a line about the backfill, since "
        "large rooms take a few minutes to catch up after the upgrade."
    )
    await ada.send("Good catch, adding it now.")
    await expect(bob.messages).to_have_count(5)
    return ada, bob


async def serious_axe_violations(page: Page) -> list[str]:
    await page.add_script_tag(path=str(AXE))
    violations = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} -> "
        + "; ".join(node["target"][0] for node in v["nodes"][:5])
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]


def test_vendored_axe_matches_its_checksum() -> None:
    line = (VENDOR / "SHA256SUMS").read_text().split()
    assert line[1] == "./" + AXE.name
    assert hashlib.sha256(AXE.read_bytes()).hexdigest() == line[0]
    assert (VENDOR / "VERSION").read_text().strip() in AXE.name


async def test_every_page_passes_axe_in_light_and_dark(cast: Cast) -> None:
    ada, _ = await conversation(cast)
    signed_in = await ada.context.storage_state()
    cast.expect_console(r"status of 404", url="/rooms/no-such-room")
    found: dict[str, list[str]] = {}
    for scheme in SCHEMES:
        guest = await (await cast.context(bypass_csp=True, color_scheme=scheme)).new_page()
        await guest.goto("/login")
        found[f"login {scheme}"] = await serious_axe_violations(guest)
        await guest.get_by_label("Email").fill("someone@example.org")
        await guest.get_by_role("button", name="Send code").click()
        await expect(guest.get_by_label("Code")).to_be_visible()
        found[f"code {scheme}"] = await serious_axe_violations(guest)

        context = await cast.context(bypass_csp=True, color_scheme=scheme, storage_state=signed_in)
        page = await context.new_page()
        await page.goto("/")
        found[f"room list {scheme}"] = await serious_axe_violations(page)
        await page.goto("/rooms/general")
        await expect(page.get_by_role("log").locator("article")).to_have_count(5)
        found[f"room {scheme}"] = await serious_axe_violations(page)
        await page.goto("/rooms/no-such-room")
        found[f"404 {scheme}"] = await serious_axe_violations(page)
        await context.close()
    assert found == {key: [] for key in found}


async def test_every_control_is_labelled(cast: Cast) -> None:
    ada, _ = await conversation(cast)
    page = ada.page
    await expect(page.get_by_role("log")).to_have_attribute("aria-live", "polite")
    await expect(page.get_by_role("textbox", name="Message")).to_be_visible()
    await expect(page.get_by_role("button", name="Send")).to_be_visible()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    await expect(page.get_by_role("heading", name="Online")).to_be_attached()
    unnamed = await page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), button, select, textarea, a[href]')]
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                          && !el.textContent.trim())
            .map(el => el.outerHTML)"""
    )
    assert unnamed == []


async def test_screenshots(cast: Cast) -> None:
    """PNGs under test-artifacts/screenshots/ for people to look at (not compared to anything)."""
    ada, _ = await conversation(cast)
    signed_in = await ada.context.storage_state()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for device, options in DEVICES.items():
        for scheme in SCHEMES:
            name = f"{device}-{scheme}"
            guest = await (await cast.context(color_scheme=scheme, **options)).new_page()
            await guest.goto("/login")
            await guest.screenshot(path=SCREENSHOTS / f"login-{name}.png")

            context = await cast.context(color_scheme=scheme, storage_state=signed_in, **options)
            page = await context.new_page()
            await page.goto("/")
            await page.screenshot(path=SCREENSHOTS / f"rooms-{name}.png")
            await page.goto("/rooms/general")
            await expect(page.get_by_role("log").locator("article")).to_have_count(5)
            await expect(page.locator("#online li")).to_have_count(2)
            await page.screenshot(path=SCREENSHOTS / f"room-{name}.png")
            if device == "phone":
                await page.get_by_text("Rooms and people").click()
                await expect(page.get_by_role("heading", name="Online")).to_be_visible()
                await page.screenshot(path=SCREENSHOTS / f"room-menu-{name}.png")
            await context.close()
    assert len(list(SCREENSHOTS.glob("*.png"))) >= 14
