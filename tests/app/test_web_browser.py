"""The web chat in a real headless Chromium (Debian's `chromium`, driven by Python Playwright): ask the seed
question, see the cited passage highlighted in the sources panel, upload an article and get it cited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

import qa
from qa.settings import Settings
from tests.app.test_web import NEW_ARTICLE, SEED_QUESTION, start_server
from tests.helpers import DATA, ROOT, SEEDS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"  # apt-get install chromium (.ci/run does)
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def web_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    index_dir = tmp_path_factory.mktemp("web-browser") / "index"
    qa.Assistant(Settings(index_dir=index_dir, backend="extractive")).index([SEEDS, DATA / "articles"])
    url, app = start_server(index_dir)
    try:
        yield url
    finally:
        app.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh user data dir
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


def ask(page: Page, question: str) -> None:
    box = page.locator("#question textarea")
    box.fill(question)
    box.press("Enter")


def test_seed_question_cited_passage_upload_and_abstention(web_url: str, browser: BrowserContext, tmp_path: Path):
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(web_url)
    expect(page.locator("#index-stats")).to_contain_text("8 articles")

    ask(page, SEED_QUESTION)
    answer = page.locator("#chat [data-testid='bot']").last
    expect(answer).to_contain_text("one-sided")
    expect(answer.locator("sup").first).to_have_text("[1]")
    cited = page.locator("#sources mark", has_text="no representatives of the Syrian government")
    expect(cited).to_be_visible()
    expect(page.locator("#sources")).to_contain_text("Russia Stays Away From Paris Meeting on Syria")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-chat.png"), full_page=True)

    page.get_by_role("button", name="Who won the 2010 World Cup?").click()  # an example question
    expect(page.locator("#chat [data-testid='bot']").last).to_contain_text("The articles don't say.")
    expect(page.locator("#sources")).to_contain_text("No indexed passage was found to answer it")
    page.locator("#chat [data-testid='bot']").first.click()  # an earlier answer shows its sources again
    expect(cited).to_be_visible()

    article = tmp_path / "tarnholm.txt"
    article.write_text(NEW_ARTICLE, encoding="utf-8")
    page.locator("#upload input[type=file]").set_input_files(str(article))
    expect(page.locator("#upload-report")).to_contain_text("added 1")
    expect(page.locator("#index-stats")).to_contain_text("9 articles")
    ask(page, "How long is the glass footbridge in Tarnholm?")
    expect(page.locator("#sources mark", has_text="412 metres")).to_be_visible()
    expect(page.locator("#sources")).to_contain_text("tarnholm.txt")
    page.screenshot(path=str(ARTIFACTS / "web-chat-upload.png"), full_page=True)


def test_index_stats_follow_articles_another_writer_adds(browser: BrowserContext, tmp_path: Path):
    index_dir = tmp_path / "index"
    qa.Assistant(Settings(index_dir=index_dir, backend="extractive")).index([SEEDS])
    url, app = start_server(index_dir)
    try:
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        expect(page.locator("#index-stats")).to_contain_text("1 article ·")
        article = tmp_path / "tarnholm.txt"
        article.write_text(NEW_ARTICLE, encoding="utf-8")
        writer = qa.Assistant(Settings(index_dir=index_dir, backend="extractive"))  # like `qa watch` elsewhere
        assert len(writer.index([article]).added) == 1
        expect(page.locator("#index-stats")).to_contain_text("2 articles", timeout=20_000)  # no reload, no click
    finally:
        app.close()
