"""Browser fixtures: the app as a real hypercorn server, Chromium through Playwright, people.

Every page of every test is watched for console errors, uncaught exceptions, CSP violations
and dialogs; a test that caused any of them fails in its teardown.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright

from tests.conftest import SECRET
from tests.e2e.people import Cast
from tests.e2e.processes import crash
from tests.servers import AppServer
from tests.support import GENEROUS_LIMITS, SmtpServer

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NO_CHROMIUM = (
    "BROWSER TESTS SKIPPED: no Chromium found. Run `apt-get install chromium` "
    "(or set CHAT_TEST_CHROMIUM=/path/to/chromium)."
)
_skipped_for_chromium: list[str] = []


def chromium_path() -> str | None:
    """CHAT_TEST_CHROMIUM if set, else Debian's /usr/bin/chromium or one on PATH."""
    wanted = os.environ.get("CHAT_TEST_CHROMIUM")
    if wanted:
        return wanted if os.access(wanted, os.X_OK) else None
    for candidate in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        found = shutil.which(candidate)
        if found:
            return found
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if chromium_path() is not None:
        return
    skip = pytest.mark.skip(reason=NO_CHROMIUM)
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)
            _skipped_for_chromium.append(item.nodeid)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _skipped_for_chromium:
        terminalreporter.write_line(
            f"{NO_CHROMIUM} ({len(_skipped_for_chromium)} tests)", red=True, bold=True
        )


def server_settings(redis_url: str, smtp_url: str) -> dict[str, Any]:
    return {
        "REDIS_URL": redis_url,
        "SMTP_URL": smtp_url,
        "SECRET_KEY": SECRET,
        "COOKIE_SECURE": False,
        "ADMIN_EMAILS": "admin@example.org",  # tests/e2e/test_admin.py
        **GENEROUS_LIMITS,
    }


@pytest.fixture(scope="session")
def e2e_settings(redis_server: str, smtp_server: SmtpServer) -> dict[str, Any]:
    return server_settings(redis_server, smtp_server.url)


@pytest.fixture(scope="session")
def app_server(e2e_settings: dict[str, Any]) -> Iterator[AppServer]:
    """One hypercorn process for the browser tests (the production entry and hypercorn.toml)."""
    server = AppServer(e2e_settings)
    server.start()
    yield server
    crash(server)  # stop() would wait out hypercorn's 5 s graceful timeout (see the report)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    if executable is None:
        pytest.skip(NO_CHROMIUM)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def cast(
    browser: Browser, app_server: AppServer, redis_url: str, smtp_server: SmtpServer
) -> AsyncIterator[Cast]:
    """People with their own browser contexts, on an emptied Redis and archive; checked for
    errors after."""
    await asyncio.to_thread(app_server.forget_history)
    people = Cast(browser, app_server.url, smtp_server.inbox)
    try:
        yield people
    finally:
        await people.close()
    people.assert_clean()
