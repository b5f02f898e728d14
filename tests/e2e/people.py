"""People in browsers: each one a separate Chromium context, signing in as a person would."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Dialog, Locator, Page
from playwright.async_api import expect as _expect

from tests.support import Inbox

expect = _expect
expect.set_options(timeout=10_000)

CSP_WORDS = ("Content Security Policy", "Content-Security-Policy")

# What the people in these tests read on buttons and labels, by their browser's language.
WORDS = {
    "en-US": {
        "Email": "Email",
        "Send code": "Send code",
        "Code": "Code",
        "Sign in": "Sign in",
        "Rooms": "Rooms",
        "Message": "Message",
    },
    "zh-CN": {
        "Email": "邮箱",
        "Send code": "发送验证码",
        "Code": "验证码",
        "Sign in": "登录",
        "Rooms": "聊天室",
        "Message": "消息",
    },
}


@dataclass(frozen=True)
class Problem:
    kind: str
    url: str
    text: str

    def __str__(self) -> str:
        return f"{self.kind} on {self.url}: {self.text}"


class Cast:
    """Everyone in one test, and every console error, page error, CSP report or dialog they met."""

    def __init__(self, browser: Browser, base_url: str, inbox: Inbox) -> None:
        self.browser = browser
        self.base_url = base_url
        self.inbox = inbox
        self.contexts: list[BrowserContext] = []
        self.problems: list[Problem] = []
        self.expected: list[tuple[re.Pattern[str], str]] = []

    async def context(self, base_url: str | None = None, **options: Any) -> BrowserContext:
        context = await self.browser.new_context(base_url=base_url or self.base_url, **options)
        self.contexts.append(context)
        context.on("page", self.watch)
        return context

    async def person(
        self, email: str, base_url: str | None = None, locale: str = "en-US", **options: Any
    ) -> Person:
        """A signed-in person in a fresh context, looking at the room list."""
        context = await self.context(base_url, locale=locale, **options)
        page = await context.new_page()
        person = Person(self, email, base_url or self.base_url, context, page, WORDS[locale])
        await person.sign_in()
        return person

    async def ada_and_bob_in_general(self, bob_url: str | None = None) -> tuple[Person, Person]:
        """Two signed-in people, both live in #general (Bob's server may be another one)."""
        ada = await self.person("ada@example.org")
        bob = await self.person("bob@example.org", base_url=bob_url)
        await ada.open_room("general")
        await bob.open_room("general")
        return ada, bob

    def watch(self, page: Page) -> None:
        def console(message: ConsoleMessage) -> None:
            text = message.text
            if message.type == "error" or any(word in text for word in CSP_WORDS):
                self.record(Problem(f"console {message.type}", page.url, text))

        async def dialog(dialog: Dialog) -> None:
            self.record(Problem(f"{dialog.type} dialog", page.url, dialog.message))
            await dialog.dismiss()

        page.on("console", console)
        page.on("pageerror", lambda error: self.record(Problem("page error", page.url, str(error))))
        page.on("dialog", dialog)

    def record(self, problem: Problem) -> None:
        if not any(
            pattern.search(problem.text) and url in problem.url for pattern, url in self.expected
        ):
            self.problems.append(problem)

    def expect_console(self, pattern: str, url: str = "") -> None:
        """Errors matching `pattern` on pages whose URL contains `url` are provoked on purpose."""
        self.expected.append((re.compile(pattern), url))

    async def close(self) -> None:
        while self.contexts:
            await self.contexts.pop().close()

    def assert_clean(self) -> None:
        assert not self.problems, "browser reported:\n" + "\n".join(map(str, self.problems))


class Person:
    def __init__(
        self,
        cast: Cast,
        email: str,
        base_url: str,
        context: BrowserContext,
        page: Page,
        words: dict[str, str],
    ) -> None:
        self.cast = cast
        self.words = words
        self.base_url = base_url
        self.email = email
        self.name = email.split("@", 1)[0]
        self.context = context
        self.page = page

    async def sign_in(self) -> None:
        page = self.page
        words = self.words
        await page.goto("/login")
        await page.get_by_label(words["Email"]).fill(self.email)
        before = len(self.cast.inbox.to(self.email))
        await page.get_by_role("button", name=words["Send code"]).click()
        code = await self.cast.inbox.wait_for_code(self.email, after=before)
        await page.get_by_label(words["Code"]).fill(code)
        await page.get_by_role("button", name=words["Sign in"]).click()
        await page.wait_for_url(self.base_url + "/")
        await expect(page.get_by_role("heading", name=words["Rooms"], level=1)).to_be_visible()

    async def open_room(self, name: str) -> None:
        """Follow the room's link from the room list and wait until the room is live."""
        await self.page.get_by_role("main").get_by_role("link", name=name).click()
        await self.page.wait_for_url(re.compile(r"/rooms/[^/?]+$"))
        await self.wait_until_live()

    async def wait_until_live(self) -> None:
        """The socket is open once the server has put this person in the Online list."""
        await expect(self.online.get_by_text(self.name, exact=True)).to_be_visible()

    @property
    def online(self) -> Locator:
        return self.page.locator("#online")

    @property
    def message_box(self) -> Locator:
        return self.page.get_by_role("textbox", name=self.words["Message"])

    @property
    def messages(self) -> Locator:
        return self.page.get_by_role("log").locator("article")

    async def send(self, text: str) -> None:
        """Type and press Enter; wait until the message shows (and the box is cleared)."""
        await self.message_box.fill(text)
        await self.message_box.press("Enter")
        await expect(self.messages.last.locator(".body")).to_have_text(text)
        await expect(self.message_box).to_have_value("")

    async def bodies(self) -> list[str]:
        return await self.messages.locator(".body").all_inner_texts()

    async def sees(self, *texts: str) -> None:
        """Exactly these message bodies, in this order, each once."""
        await expect(self.messages.locator(".body")).to_have_text(list(texts))
