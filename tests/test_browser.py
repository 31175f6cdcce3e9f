"""A real browser (Debian's chromium through Playwright) clicks through the app and saves screenshots."""

from __future__ import annotations

import shutil

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which("chromium") and not __import__("os").path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is not installed: apt-get install -y chromium")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def open_page(browser, url, locale="en-US"):
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, locale=locale)
    page.goto(url)
    page.wait_for_selector("#chat-message textarea", timeout=60_000)
    return page


def test_text_tab_streams_and_stops(browser, app_url, artifacts_dir):
    page = open_page(browser, app_url)
    page.fill("#chat-message textarea", "Write a long story about a lighthouse keeper.")
    page.click("#chat-send")
    bot = page.locator("#chatbot .bot, #chatbot [data-testid='bot']").last
    bot.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => { const b = [...document.querySelectorAll('#chatbot .bot, #chatbot [data-testid=\"bot\"]')];"
        " return b.length && b[b.length - 1].innerText.trim().length > 20; }",
        timeout=60_000,
    )
    first = bot.inner_text()
    page.wait_for_timeout(300)
    assert len(bot.inner_text()) >= len(first), "streamed text should keep growing"
    page.click("#chat-stop")
    page.wait_for_timeout(1500)
    stopped = bot.inner_text()
    page.wait_for_timeout(1500)
    assert bot.inner_text() == stopped, "text kept arriving after Stop"
    page.screenshot(path=str(artifacts_dir / "text-tab-chat.png"), full_page=True)

    # The next message is answered: the worker was freed by Stop.
    page.fill("#chat-message textarea", "Say hi.")
    page.click("#chat-send")
    page.wait_for_function(
        "() => document.querySelectorAll('#chatbot .bot, #chatbot [data-testid=\"bot\"]').length >= 2",
        timeout=60_000,
    )
    page.wait_for_selector("#chat-stats:has-text('finish: stop'), #chat-stats:has-text('finish: length')",
                           timeout=120_000)
    page.screenshot(path=str(artifacts_dir / "text-tab-second-reply.png"), full_page=True)


def test_bad_input_shows_a_message_not_a_traceback(browser, app_url, artifacts_dir):
    page = open_page(browser, app_url)
    page.fill("#chat-message textarea", "   ")
    page.click("#chat-send")
    toast = page.locator(".toast-body, [data-testid='toast-body']").first
    toast.wait_for(timeout=30_000)
    assert "empty" in toast.inner_text().lower()
    assert "Traceback" not in page.content()
    page.screenshot(path=str(artifacts_dir / "text-tab-error.png"))


def test_chinese_ui(browser, app_url, artifacts_dir):
    page = open_page(browser, app_url, locale="zh-CN")
    page.wait_for_selector("text=AIGC 工作室", timeout=30_000)
    page.screenshot(path=str(artifacts_dir / "text-tab-zh.png"), full_page=True)
