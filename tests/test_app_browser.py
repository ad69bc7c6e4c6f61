"""One real browser (Playwright + Debian's Chromium) clicks through Compare and Vote.

Chromium: `apt-get install -y chromium` (→ /usr/bin/chromium, or set SUR_CHROMIUM). Without it the
test is skipped with a reason, except under CI=true, where a missing browser is a failure.
"""

import os
import shutil
from contextlib import contextmanager
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


@contextmanager
def chromium_page(**page_options):
    """A headless Chromium page (`page_options` for `new_page`, e.g. a viewport) with the suite's
    timeouts; the browser is closed on the way out."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(**page_options)
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            yield page
        finally:
            browser.close()


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
    from playwright.sync_api import expect

    studio, url = app_server
    with chromium_page() as page:
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

    votes = studio.store.votes()
    assert len(votes) == 1
    vote = votes[0]
    assert vote["choice"] == "left" and vote["prompt"] == "three green birds" and vote["prompt_id"] == "toy-9"
    left_label = "SUR-adapter" if vote["adapter_side"] == "left" else "baseline"
    assert f"Left was {left_label}" in reveal


# ----------------------------------------------------------------------------- Compare and Eval, toy preset
@pytest.fixture(scope="module")
def toy_server(tmp_path_factory):
    """The default model (toy preset, its shipped suites) served in this process."""
    _require_browser()
    import torch

    import app
    from conftest import free_port
    from surlib.studio.settings import AppConfig

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("app_browser_toy")
    cfg = AppConfig(preset="toy", data_dir=tmp / "data", runs_dir=tmp / "runs", server_name="127.0.0.1",
                    server_port=free_port())
    demo, studio = app.create_app(cfg)
    kwargs = app.launch_kwargs(cfg)
    kwargs.update(prevent_thread_lock=True, quiet=True)
    demo.launch(**kwargs)
    yield studio, cfg, f"http://127.0.0.1:{cfg.server_port}/"
    demo.close()
    studio.store.close()


def _png(page, locator):
    """(pixels, size) of the file an <img> shows, fetched the way a download gets it."""
    import io

    from PIL import Image

    body = page.request.get(locator.get_attribute("src")).body()
    with Image.open(io.BytesIO(body)) as im:
        return im.convert("RGB").tobytes(), im.size


def _box(locator):
    box = locator.bounding_box()
    return round(box["width"]), round(box["height"])


@pytest.mark.timeout(600)
def test_compare_controls_and_eval_tab_in_chromium(toy_server):
    from playwright.sync_api import expect

    studio, cfg, url = toy_server
    with chromium_page(viewport={"width": 1280, "height": 1000}) as page:
        page.goto(url)
        prompt = page.locator("#compare-prompt textarea")

        # the vocabulary in view, and the words the toy model does not know marked as typed
        expect(page.locator("#vocabulary-text")).to_contain_text("What the toy model knows")
        prompt.fill("three white kittens playing on a green carpet")
        expect(page.locator("#prompt-hint")).to_contain_text("2 words the toy model never saw: playing, carpet")
        marked = page.locator("#prompt-marks .textfield .text:not(.unlabeled)")
        expect(marked).to_have_count(2)
        assert [t.strip() for t in marked.all_inner_texts()] == ["playing", "carpet"]

        # a prompt of the toy grammar, in its synonyms: three images in one pass, the third labelled
        # with the spell, and the adapter's gate open
        prompt.fill("three crimson robots leaping against a white wall")
        expect(page.locator("#prompt-hint")).to_contain_text("Every word of this prompt is in the toy world")
        page.locator("#generate-btn").click()
        expect(page.locator("#timing")).to_contain_text("Generated all three images")
        expect(page.locator("#timing")).to_contain_text("adapter strength eta 0.1")
        expect(page.locator("#timing")).to_contain_text("The adapter's gate is open (0.80")
        expect(page.locator("#img-spell img")).to_be_visible()
        expect(page.locator("#spell-note")).to_contain_text(
            "masterpiece, 3 robots, red, jumping, white background, best quality")
        expect(page.locator("#img-spell label")).to_contain_text(
            "Base model given the spell: masterpiece, 3 robots, red, jumping, white background, best quality")
        imgs = {k: page.locator(f"#{k} img") for k in ("img-baseline", "img-adapter", "img-spell")}
        boxes = {k: _box(v) for k, v in imgs.items()}
        assert len(set(boxes.values())) == 1 and min(boxes["img-baseline"]) >= 256, boxes
        files = {k: _png(page, v) for k, v in imgs.items()}
        assert {size for _, size in files.values()} == {(64, 64)}  # served at its own pixels
        assert files["img-baseline"][0] != files["img-adapter"][0] != files["img-spell"][0]
        assert page.evaluate("getComputedStyle(document.querySelector('#img-baseline img')).imageRendering") \
            == "pixelated"

        # eta 0: the adapter image is the baseline, pixel for pixel
        eta = page.locator("#compare-eta input[type='number']")
        eta.fill("0")
        eta.press("Enter")
        page.locator("#generate-btn").click()
        expect(page.locator("#timing")).to_contain_text("adapter strength eta 0)")
        base, ada = _png(page, imgs["img-baseline"]), _png(page, imgs["img-adapter"])
        assert base == ada and base[0] == files["img-baseline"][0]  # same seed: the same baseline

        # the same scene in the words the base already reads: the gate closes, the images agree
        eta.fill("0.1")
        eta.press("Enter")
        prompt.fill("three red robots jumping against a white wall")
        page.locator("#generate-btn").click()
        expect(page.locator("#timing")).to_contain_text("The adapter's gate is closed for this prompt")
        assert _png(page, imgs["img-baseline"]) == _png(page, imgs["img-adapter"])

        # no spell: no third image, and a note why
        prompt.fill("two red cats sitting")
        page.locator("#generate-btn").click()
        expect(page.locator("#spell-note")).to_contain_text("No spell: it is not a sentence of the toy grammar")
        expect(page.locator("#img-spell")).to_be_hidden()

        # Vote shows its pair in the same boxes
        page.get_by_role("tab", name="Vote").first.click()
        page.locator("#new-pair-btn").click()
        expect(page.locator("#img-left img[src*='file=']")).to_be_visible()
        expect(page.locator("#img-right img[src*='file=']")).to_be_visible()
        assert _box(page.locator("#img-left img")) == _box(page.locator("#img-right img")) == \
            boxes["img-baseline"]

        # Eval: the shipped report on a fresh install, then a quick run with its own report
        page.get_by_role("tab", name="Eval").first.click()
        expect(page.locator("#eval-report")).to_contain_text("Shipped evaluation: the toy SUR-adapter")
        page.locator("#eval-run").click()
        expect(page.locator("#eval-report")).to_contain_text("SUR-adapter evaluation: toy_heldout suite",
                                                             timeout=300_000)
    assert (cfg.runs_dir / "quick-eval" / "report.md").is_file()
