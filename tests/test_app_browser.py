"""One real browser (Playwright + Debian's Chromium) clicks through Compare and Vote.

Chromium: `apt-get install -y chromium` (→ /usr/bin/chromium, or set SUR_CHROMIUM). Without it the
test is skipped with a reason, except under CI=true, where a missing browser is a failure.
"""

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
from conftest import launch_test_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHROMIUM = os.environ.get("SUR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
TIMEOUT_MS = 120_000  # two shared CPU cores: generous


def _require_browser():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as e:
        missing = f"the playwright Python package is not installed ({e})"
    else:
        if Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK):
            return
        missing = f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    if IN_CI:
        pytest.fail(f"CI=true but {missing}")
    pytest.skip(missing)


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    _require_browser()
    demo, studio, cfg = launch_test_app(tmp_path_factory.mktemp("app_browser"), [
        {"id": "toy-9", "simple": "three green birds", "category": "count"}])
    yield studio, f"http://127.0.0.1:{cfg.server_port}/"
    demo.close()
    studio.store.close()


@pytest.mark.timeout(400)
def test_click_generate_then_vote_in_chromium(app_server):
    from playwright.sync_api import expect, sync_playwright

    studio, url = app_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            page.goto(url)

            # Compare: one click, two images
            page.locator("#compare-prompt textarea").fill("two red cats")
            page.locator("#compare-steps input").fill("1")
            page.locator("#generate-btn").click()
            expect(page.locator("#img-baseline img[src*='file=']")).to_be_visible()
            expect(page.locator("#img-adapter img[src*='file=']")).to_be_visible()
            expect(page.locator("#timing")).to_contain_text("Generated both images")
            srcs = {page.locator(f"#{k} img[src*='file=']").get_attribute("src")
                    for k in ("img-baseline", "img-adapter")}
            assert len(srcs) == 2

            # Vote: a blind pair, a vote, the reveal
            page.get_by_role("tab", name="Vote").click()
            page.locator("#new-pair-btn").click()
            expect(page.locator("#img-left img[src*='file=']")).to_be_visible()
            expect(page.locator("#img-right img[src*='file=']")).to_be_visible()
            expect(page.locator("#vote-left")).to_be_enabled()
            expect(page.locator("#battle-prompt")).to_contain_text("three green birds")
            expect(page.locator("#battle-prompt")).not_to_contain_text("adapter")
            page.locator("#vote-left").click()
            expect(page.locator("#reveal")).to_contain_text("vote stored")
            expect(page.locator("#vote-left")).to_be_disabled()
            reveal = page.locator("#reveal").inner_text()
        finally:
            browser.close()

    votes = studio.store.votes()
    assert len(votes) == 1
    vote = votes[0]
    assert vote["choice"] == "left" and vote["prompt"] == "three green birds" and vote["prompt_id"] == "toy-9"
    left_label = "SUR-adapter" if vote["adapter_side"] == "left" else "baseline"
    assert f"Left was {left_label}" in reveal
