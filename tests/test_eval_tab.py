"""The Eval tab without a browser: the shipped report (in the repository, figures drawn from its
summaries), which report the tab shows, and the Run button's small evaluation (`QuickEval`) with
a stand-in pipeline that renders scenes, so that the toy judge's verdicts are known."""

import json
import os
import threading
import time

import pytest

from eval.formatting import pct
from surlib.pipeline import Generation
from surlib.studio.quick_eval import QUICK_DIR, QuickEval
from surlib.studio.report import NO_REPORT, report_page
from surlib.studio.shipped_report import (REPORT_FILE, SHIPPED_DIR, SUITES, SUMMARIES_FILE, build, figures,
                                          load_shipped)
from surlib.toy.parse import parse_prompt
from surlib.toy.render import render
from surlib.toy.scene import ACTIONS, COLORS, Scene

ROOT = SHIPPED_DIR.parents[1]


def _overall(summary: dict) -> dict:
    return next(t for t in summary["prompt_test"] if t["category"] == "overall")


# ----------------------------------------------------------------------------- the shipped report
def test_the_shipped_report_is_text_only_small_and_readable():
    files = sorted(p.name for p in SHIPPED_DIR.iterdir())
    assert files == sorted([REPORT_FILE, SUMMARIES_FILE])
    assert sum((SHIPPED_DIR / f).stat().st_size for f in files) < 120_000
    report = load_shipped()
    assert list(report.summaries) == list(SUITES)
    assert "![" not in report.markdown and "## Examples" not in report.markdown
    for name, s in report.summaries.items():
        assert s["complete"] and s["images"] == s["expected_images"] == 168 * 4 * 2
        head = _overall(s)
        # the overview row shows the summary's numbers
        row = next(line for line in report.markdown.splitlines() if line.startswith(f"| `{name}` | 168 × 4 |"))
        assert f"| **{pct(head['mean_difference'], sign=True, unit='')}** [" in row
        assert f"## Suite `{name}`" in report.markdown
    assert report.markdown.count("## Method notes") == 1


def test_readme_quotes_the_shipped_headline():
    s = load_shipped().summaries["toy_heldout"]
    head = _overall(s)
    cell = (f"**{pct(head['mean_difference'], sign=True, unit='')}** [{pct(head['ci_low'], sign=True, unit='')}, "
            f"{pct(head['ci_high'], sign=True, unit='')}]")
    assert cell in (ROOT / "README.md").read_text().replace("−", "-")


def test_shipped_figures_are_drawn_from_the_summaries():
    report = load_shipped()
    figs = figures(report)
    assert [caption for _, caption in figs] == ["accuracy per suite (drawn from summaries.json)",
                                                "image quality per suite (drawn from summaries.json)"]
    assert all(im.mode == "RGB" and im.size[0] > 800 and im.size[1] > 250 for im, _ in figs)
    assert figures(report)[0][0] is figs[0][0]  # drawn once per content


def test_the_tab_shows_the_newest_report(tmp_path):
    runs = tmp_path / "runs"
    text, figs = report_page(runs, SHIPPED_DIR)
    assert text.startswith("*The shipped report (`assets/eval/report.md`") and len(figs) == 2
    assert report_page(runs, tmp_path / "nothing") == (NO_REPORT, [])
    assert report_page(runs) == (NO_REPORT, [])
    (runs / "mine").mkdir(parents=True)
    (runs / "mine" / "report.md").write_text("# my run\n")
    text, figs = report_page(runs, SHIPPED_DIR)
    assert text == f"*Report: `{runs / 'mine' / 'report.md'}`*\n\n# my run\n" and figs == []
    old = load_shipped().generated_at.timestamp() - 60  # a run made before the shipped report
    os.utime(runs / "mine" / "report.md", (old, old))
    assert report_page(runs, SHIPPED_DIR)[0].startswith("*The shipped report")


# ----------------------------------------------------------------------------- the Run button
def _wrong(scene: Scene) -> Scene:
    return Scene(scene.count % 5 + 1, COLORS[(COLORS.index(scene.color) + 1) % len(COLORS)], scene.kind,
                 ACTIONS[(ACTIONS.index(scene.action) + 1) % len(ACTIONS)], scene.background)


class RenderPipe:
    """Stands in for the toy pipeline: the adapter image is the prompt's scene rendered, the
    baseline the same for scenes of an even count and else one wrong in count, colour and action
    (so the baseline is neither all right nor all wrong); `gate` (an Event) holds a call until set."""

    def __init__(self, gate=None, fail=False):
        self.gate, self.fail, self.entered, self.pairs = gate, fail, threading.Event(), 0

    def generate_pairs(self, prompts, seeds, steps=None, guidance=None, negative_prompt=None, **kw):
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        if self.fail:
            raise RuntimeError("stopped by the test")
        out = []
        for p, s in zip(prompts, seeds):
            scene = parse_prompt(p)
            base = scene if scene.count % 2 == 0 else _wrong(scene)
            out.append(Generation(images={"baseline": render(base, s), "adapter": render(scene, s)},
                                  prompt=p, seed=s, steps=steps, guidance=guidance, negative_prompt=None))
            self.pairs += 1
        return out


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("quick") / "runs"
    q = QuickEval(RenderPipe(), "toy", runs, per_category=2)
    steps = []
    report = q.run(lambda fraction, text: steps.append((fraction, text)))
    return q, runs, report, steps


def test_quick_eval_writes_one_report_with_progress(quick_run):
    q, runs, report, steps = quick_run
    assert report == runs / QUICK_DIR / "report.md" and report.is_file()
    summary = json.loads((runs / QUICK_DIR / "summary.json").read_text())
    assert summary["images"] == 12 and summary["complete"] and summary["config"]["suite_name"] == "toy_heldout"
    rows = [json.loads(line) for line in (runs / QUICK_DIR / "suite.jsonl").read_text().splitlines()]
    even = sum(r["expect"]["count"] % 2 == 0 for r in rows) / len(rows)
    acc = {(a["category"], a["variant"]): a["accuracy"] for a in summary["accuracy"]}
    assert len(rows) == 6 and 0 < even < 1
    assert acc[("overall", "adapter")] >= 5 / 6 and abs(acc[("overall", "baseline")] - even) <= 1 / 6
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[-1] >= 0.9 and len(steps) >= 12
    assert steps[0] == (0.0, "loading the toy judge")
    assert "generated and judged 12 of 12 images" in [t for _, t in steps]
    text, figs = report_page(runs, SHIPPED_DIR)  # the newest report is the quick one now
    assert text.startswith(f"*Report: `{report}`*") and "toy_heldout suite" in text
    assert [name for _, name in figs][:3] == ["accuracy.png", "brisque.png", "palette_distance.png"]


def test_a_second_run_replaces_the_first(quick_run):
    q, runs, report, _ = quick_run
    first = report.stat().st_mtime_ns
    (runs / QUICK_DIR / "marker").write_text("from the first run")
    time.sleep(0.01)
    q.run()
    assert sorted(p.name for p in runs.iterdir()) == [".work", QUICK_DIR]
    assert list((runs / ".work").iterdir()) == []
    assert not (runs / QUICK_DIR / "marker").exists() and report.stat().st_mtime_ns > first
    assert len(list((runs / QUICK_DIR / "images").glob("*.png"))) == 12


def test_one_run_at_a_time_and_a_failed_run_leaves_the_last_report(quick_run):
    _, runs, report, _ = quick_run
    before = report.read_text()
    gate = threading.Event()
    q = QuickEval(RenderPipe(gate=gate, fail=True), "toy", runs, per_category=2)
    errors = []
    worker = threading.Thread(target=lambda: errors.append(pytest.raises(RuntimeError, q.run)))
    worker.start()
    assert q.pipe.entered.wait(60)
    with pytest.raises(ValueError, match=r"^An evaluation is already running \(started \d+ s ago\); its report "
                                         r"appears here when it finishes"):
        q.run()
    gate.set()
    worker.join(60)
    assert len(errors) == 1 and "stopped by the test" in str(errors[0].value)
    assert report.read_text() == before and list((runs / ".work").iterdir()) == []
    q.pipe = RenderPipe()  # the lock was released: the next run goes ahead
    q.run()


def test_quick_eval_only_for_the_toy_preset(tmp_path):
    q = QuickEval(object(), "sd15", tmp_path / "runs")
    assert not q.available
    with pytest.raises(ValueError, match="The Run button evaluates the toy preset only; this app serves `sd15`"):
        q.run()
    assert not QuickEval(None, "toy", tmp_path).available
    assert "12 prompts of the `toy_heldout` suite" in QuickEval(object(), "toy", tmp_path).description()


def test_build_from_finished_runs_round_trips_and_refuses_other_weights(quick_run, tmp_path):
    _, runs, _, _ = quick_run
    out = tmp_path / "shipped"
    path = build(str(runs / "{suite}"), out, evaluate=False, suites=(QUICK_DIR,))
    assert path == out / REPORT_FILE
    shipped = load_shipped(out)
    summary = json.loads((runs / QUICK_DIR / "summary.json").read_text())
    assert shipped.summaries[QUICK_DIR]["accuracy"] == summary["accuracy"]
    assert shipped.summaries[QUICK_DIR]["config"]["model_sha256"] == summary["config"]["model_sha256"]
    assert f"## Suite `{QUICK_DIR}`" in shipped.markdown and "![" not in shipped.markdown
    assert len(figures(shipped)) == 2

    summary["config"]["model_sha256"]["adapter"] = "0" * 64
    (runs / QUICK_DIR / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ValueError, match=r"was made with other weights than the shipped ones \(adapter differ\)"):
        build(str(runs / "{suite}"), out, evaluate=False, suites=(QUICK_DIR,))
