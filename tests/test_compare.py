"""eval.compare: one row per finished run, numbers taken from each run's summary.json."""

import json

import numpy as np
import pandas as pd
import pytest

from eval import compare
from eval.stats import summarize


def _run(tmp_path, name, adapter_right):
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
    s["config"] = {"seeds": [0, 1], "steps": 20, "guidance": 5.0}
    (tmp_path / name).mkdir()
    (tmp_path / name / "summary.json").write_text(json.dumps(s))
    return tmp_path / name


def test_table_has_a_row_per_run_with_its_numbers(tmp_path, capsys):
    a, b = _run(tmp_path, "full", 4), _run(tmp_path, "no-llm", 1)
    assert compare.main([str(a), str(b), "--out", str(tmp_path / "t.md")]) == 0
    text = (tmp_path / "t.md").read_text()
    full, no_llm = [line for line in text.splitlines() if line.startswith("| full") or line.startswith("| no-llm")]
    assert "| 25.0 → 100.0 |" in full and "| +75.0 |" in full
    assert "| 25.0 → 25.0 |" in no_llm and "| +0.0 |" in no_llm
    assert "brisque Δ (TOST)" in text and "+0.50 (p < 0.0001, equivalent ±5)" in full  # TOST p is 0: no spread
    assert "| 0.00391 |" in full  # McNemar p, three significant digits (eval.formatting.pvalue)
    r = compare.row("full", compare.load_summary(a))
    assert r["seeds"] == 2 and r["pairs"] == 12 and np.isclose(r["mean_diff"], 0.75)
    assert r["mcnemar_p"] == pytest.approx(2 * 0.5**9)  # 9 discordant pairs, all for the adapter


def test_a_folder_without_summary_is_named(tmp_path, capsys):
    assert compare.main([str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().out
