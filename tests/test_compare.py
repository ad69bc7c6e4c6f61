"""eval.compare: one row per finished run, numbers taken from each run's summary.json."""

import json

import numpy as np
import pandas as pd
import pytest

from eval import compare
from eval.stats import summarize


def _run(tmp_path, name, adapter_right, suite=None):
    """A run folder whose adapter is right on `adapter_right` of 4 pairs per category (baseline on 1)."""
    rows = []
    for cat in ("counting", "color", "action"):
        for p in range(2):
            for seed in range(2):
                i = 2 * p + seed
                rows.append(dict(prompt_id=f"{cat}-{p}", category=cat, seed=seed, variant="baseline",
                                 correct=i == 0, brisque=50.0 + i))
                rows.append(dict(prompt_id=f"{cat}-{p}", category=cat, seed=seed, variant="adapter",
                                 correct=i < adapter_right, brisque=50.5 + i))
    s = summarize(pd.DataFrame(rows), n_boot=200)
    s["config"] = {"seeds": [0, 1], "steps": 20, "guidance": 5.0, **({"suite_name": suite} if suite else {})}
    (tmp_path / name).mkdir(parents=True)
    (tmp_path / name / "summary.json").write_text(json.dumps(s))
    return tmp_path / name


def test_table_has_a_row_per_run_with_its_numbers(tmp_path, capsys):
    a, b = _run(tmp_path, "full", 4), _run(tmp_path, "no-llm", 1)
    assert compare.main([str(a), str(b), "--out", str(tmp_path / "t.md")]) == 0
    text = (tmp_path / "t.md").read_text()
    full, no_llm = [line for line in text.splitlines() if line.startswith("| full") or line.startswith("| no-llm")]
    assert "| 25.0 → 100.0 |" in full and "| +75.0 |" in full
    assert "| 25.0 → 25.0 |" in no_llm and "| +0.0 |" in no_llm
    assert "brisque Δ (TOST)" in text and "+0.50 (p=0, equivalent ±5)" in full  # TOST p is 0: no spread
    assert "| 0.00391 |" in full  # McNemar p, three significant digits (eval.formatting.pvalue)
    r = compare.row("full", compare.load_summary(a))
    assert r["seeds"] == 2 and r["pairs"] == 12 and np.isclose(r["mean_diff"], 0.75)
    assert r["mcnemar_p"] == pytest.approx(2 * 0.5**9)  # 9 discordant pairs, all for the adapter


def test_a_folder_without_summary_is_named(tmp_path, capsys):
    assert compare.main([str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().out


def test_one_adapter_on_several_suites_side_by_side(tmp_path):
    """Same folder name under two parents (runs/<suite>/ada): rows are told apart, the suite is a
    column, and the prompt-level difference, CI and sign-flip p lead the McNemar secondary."""
    toy = _run(tmp_path / "toy", "ada", 4, suite="toy")
    held = _run(tmp_path / "toy_heldout", "ada", 1, suite="toy_heldout")
    assert compare.main([str(toy), str(held), "--out", str(tmp_path / "t.md")]) == 0
    text = (tmp_path / "t.md").read_text()
    head, _, first, second = text.splitlines()
    cols = [c.strip() for c in head.strip("|").split("|")]
    assert cols[:9] == ["run", "suite", "seeds", "steps", "prompts", "prompt-level Δ (pts, overall)", "95% CI",
                        "sign-flip p", "Wilcoxon p"]
    assert cols.index("sign-flip p") < next(i for i, c in enumerate(cols) if c.startswith("McNemar p"))
    cells = [c.strip() for c in first.strip("|").split("|")]
    assert cells[:6] == ["toy/ada", "toy", "2", "20", "6", "+75.0"]
    s = compare.load_summary(toy)
    overall = s["prompt_test"][-1]
    assert cells[6] == f"[{100 * overall['ci_low']:+.1f}, {100 * overall['ci_high']:+.1f}]"
    assert cells[7] == f"{overall['p_value']:.3g}" and overall["exact"]  # 6 prompts: all 64 sign patterns
    assert overall["p_value"] == pytest.approx(2 / 64)
    cells = [c.strip() for c in second.strip("|").split("|")]
    assert cells[:6] == ["toy_heldout/ada", "toy_heldout", "2", "20", "6", "+0.0"] and cells[7] == "1"


def test_old_summaries_without_the_prompt_test_still_tabulate(tmp_path):
    run = _run(tmp_path, "old", 4)
    s = json.loads((run / "summary.json").read_text())
    del s["prompt_test"]
    (run / "summary.json").write_text(json.dumps(s))
    r = compare.row("old", compare.load_summary(run))
    assert r["prompt_diff"] is None and r["overall_ci"] is not None  # the pair-weighted bootstrap CI
    assert "| – | [" in compare.markdown([r])
    (run / "summary.json").write_text("{not json")
    assert compare.main([str(run)]) == 2


def test_accuracy_figure_draws_a_zero_score_whose_ci_bound_is_a_hair_above_it(tmp_path):
    """A floating-point CI bound of 2.8e-17 over a 0% accuracy made a negative error bar, which
    matplotlib refuses (the Eval tab's Run button hit it on a small run)."""
    from eval.report import accuracy_figure

    rows = [{"category": "counting", "variant": "baseline", "accuracy": 0.0, "ci_low": 2.8e-17, "ci_high": 0.3},
            {"category": "counting", "variant": "adapter", "accuracy": 0.5, "ci_low": 0.2, "ci_high": 0.8}]
    accuracy_figure({"accuracy": rows}, tmp_path / "accuracy.png")
    from PIL import Image

    with Image.open(tmp_path / "accuracy.png") as im:
        assert im.width > 100 and im.height > 100
