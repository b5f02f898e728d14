"""Chinese and English in real browsers: Chromium with locale zh-CN and en-US."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.people import Cast, Person, expect
from tests.e2e.test_look_and_access import DEVICES, SCREENSHOTS, serious_axe_violations

pytestmark = pytest.mark.e2e


def clock_readings(zone: str) -> set[str]:
    """HH:mm now in `zone`, and a minute either side (the test may straddle a minute)."""
    now = datetime.now(ZoneInfo(zone))
    return {(now + timedelta(minutes=delta)).strftime("%H:%M") for delta in (-1, 0, 1)}


async def time_of(person: Person, body: str) -> tuple[str, str]:
    """(shown time, hover title) of the message with this body."""
    time = person.messages.filter(has_text=body).locator("time")
    return await time.inner_text(), await time.get_attribute("title") or ""


async def choose(person: Person, language: str, zone: str, saved: str) -> None:
    """Settings -> Language and Time zone -> Save, as a person does it."""
    page = person.page
    await page.get_by_role("link", name=re.compile("^(Settings|设置)$")).click()
    await page.get_by_label(re.compile("^(Language|语言)$")).select_option(language)
    await page.get_by_label(re.compile("^(Time zone|时区)$")).select_option(zone)
    await page.get_by_role("button", name=re.compile("^(Save|保存)$")).click()
    await expect(page.get_by_role("status")).to_have_text(saved)


async def test_a_chinese_browser_gets_everything_in_chinese(cast: Cast) -> None:
    li = await cast.person("li@example.org", locale="zh-CN")
    page = li.page
    await expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
    mail = cast.inbox.to("li@example.org")[-1]
    assert str(mail["Subject"]).endswith("是您的登录验证码")
    await page.get_by_label("聊天室名称").fill("技术讨论")
    await page.get_by_role("button", name="创建聊天室").click()
    await page.wait_for_url(re.compile(r"/rooms/%E6%8A%80%E6%9C%AF%E8%AE%A8%E8%AE%BA$"))
    await li.wait_until_live()
    await expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("技术讨论"))
    await li.send("我们明天讨论数据库迁移")
    shown, title = await time_of(li, "我们明天讨论数据库迁移")
    assert shown in clock_readings("UTC") and "协调世界时" in title  # UTC until she picks
    await expect(page.get_by_role("log")).to_have_attribute("aria-label", "技术讨论 中的对话")


async def test_two_languages_in_one_room_and_a_switch_of_language_and_zone(cast: Cast) -> None:
    li = await cast.person("li@example.org", locale="zh-CN")
    bob = await cast.person("bob@example.org", locale="en-US")
    await choose(li, "zh_Hans", "Asia/Shanghai", "已保存。")
    await li.page.goto("/")
    await li.open_room("general")
    await bob.open_room("general")
    await expect(li.page.get_by_role("log")).to_contain_text("bob 加入了")

    await bob.send("Morning, Li!")
    await li.send("早上好，Bob！")
    for person, body in ((li, "Morning, Li!"), (bob, "早上好，Bob！")):
        await expect(person.messages.filter(has_text=body)).to_have_count(1)
    shown, title = await time_of(li, "Morning, Li!")
    assert shown in clock_readings("Asia/Shanghai") and "中国标准时间" in title
    shown, title = await time_of(bob, "早上好，Bob！")
    assert shown in clock_readings("UTC") and "Coordinated Universal Time" in title

    # Bob moves to Chinese and New York time: the next page and his live messages follow.
    await choose(bob, "zh_Hans", "America/New_York", "已保存。")
    await expect(bob.page.locator("html")).to_have_attribute("lang", "zh-Hans")
    await bob.page.goto("/rooms/general")
    bob.words = {**bob.words, "Message": "消息"}
    await bob.wait_until_live()
    await li.send("现在几点？")
    await expect(bob.messages.filter(has_text="现在几点？")).to_have_count(1)
    shown, title = await time_of(bob, "现在几点？")
    assert shown in clock_readings("America/New_York") and "北美东部" in title


async def test_chinese_pages_pass_axe_and_are_photographed(cast: Cast) -> None:
    li = await cast.person("li@example.org", locale="zh-CN")
    await li.page.get_by_label("聊天室名称").fill("技术讨论")
    await li.page.get_by_role("button", name="创建聊天室").click()
    await li.wait_until_live()
    await li.send("大家好！这是第一条消息。")
    signed_in = await li.context.storage_state()
    found: dict[str, list[str]] = {}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for scheme, device in (("light", "desktop"), ("dark", "phone")):
        guest = await (
            await cast.context(
                locale="zh-CN", bypass_csp=True, color_scheme=scheme, **DEVICES[device]
            )
        ).new_page()
        await guest.goto("/login")
        await expect(guest.get_by_role("heading", name="登录")).to_be_visible()
        found[f"login {scheme}"] = await serious_axe_violations(guest)
        await guest.screenshot(path=SCREENSHOTS / f"zh-login-{device}-{scheme}.png")
        context = await cast.context(
            locale="zh-CN",
            bypass_csp=True,
            color_scheme=scheme,
            storage_state=signed_in,
            **DEVICES[device],
        )
        page = await context.new_page()
        for name, path in (("rooms", "/"), ("settings", "/settings"), ("room", "/rooms/技术讨论")):
            await page.goto(path)
            if name == "room":
                await expect(page.get_by_role("log").locator("article")).to_have_count(1)
            found[f"{name} {scheme}"] = await serious_axe_violations(page)
            await page.screenshot(path=SCREENSHOTS / f"zh-{name}-{device}-{scheme}.png")
        await context.close()
    assert found == {key: [] for key in found}
