"""Chromium votes on a blind pair and answers the per-image checks that appear after the vote;
the vote goes out on Gradio's plain POST route (outside the queue) and both land in the database.

Chromium: `apt-get install -y chromium` (or SUR_CHROMIUM); skipped without it unless CI=true,
as in tests/test_app_browser.py.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
from studio_server import FakePipe, serve  # noqa: E402
from test_app_browser import _require_browser, chromium_page  # noqa: E402


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    _require_browser()
    demo, studio, cfg, url = serve(tmp_path_factory.mktemp("browser_vote"), pipe=FakePipe(),
                                   rows=[{"id": "toy-9", "simple": "three green birds", "category": "counting"}])
    yield studio, url
    demo.close()
    studio.store.close()


@pytest.mark.timeout(300)
def test_vote_then_check_each_image(app_server):
    from playwright.sync_api import expect

    studio, url = app_server
    posts = []
    with chromium_page() as page:
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
        page.goto(url)
        page.get_by_role("tab", name="Vote").click()
        expect(page.locator("#checks").first).to_be_hidden()
        page.locator("#new-pair-btn").click()
        expect(page.locator("#vote-left")).to_be_enabled()
        expect(page.locator("#battle-prompt")).to_contain_text("three green birds")
        before = len(posts)
        page.locator("#vote-left").click()
        expect(page.locator("#reveal")).to_contain_text("vote stored")
        expect(page.locator("#checks").first).to_be_visible()
        vote_posts = posts[before:]
        page.locator("#check-left-count label", has_text="yes").click()
        page.locator("#check-right-color label", has_text="no").click()
        page.locator("#check-right-action label", has_text="unsure").click()
        page.locator("#save-checks").click()
        expect(page.locator("#checks-saved")).to_contain_text("Checks saved (3 answers)")
        expect(page.locator("#save-checks")).to_be_disabled()

    assert any("/gradio_api/run/predict" in u for u in vote_posts)  # the vote skipped the queue
    assert not any("/queue/join" in u for u in vote_posts)
    (vote,) = studio.store.votes()
    assert vote["choice"] == "left" and vote["prompt"] == "three green birds"
    human = {(r["side"], r["attribute"], r["verdict"]) for r in studio.checks.of_battle(vote["battle_id"])
             if r["source"] == "human"}
    assert human == {("left", "count", "yes"), ("right", "color", "no"), ("right", "action", "unsure")}
