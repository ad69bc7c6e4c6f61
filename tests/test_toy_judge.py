"""The toy-world judge: shipped weights, accuracy on held-out renders, input handling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from surlib.toy.dataset import rows_to_images, sample_rows
from surlib.toy.judge import (
    DEFAULT_WEIGHTS,
    HEADS,
    ToyJudge,
    degrade,
    judge_accuracy,
    to_tensor,
)
from surlib.toy.render import render, render_array
from surlib.toy.scene import Scene


@pytest.fixture(scope="module")
def judge() -> ToyJudge:
    return ToyJudge.load()


@pytest.fixture(scope="module")
def heldout():
    rows = sample_rows("test", 300, seed=777)  # test-split combinations: unseen in training
    return rows_to_images(rows), [r.scene for r in rows]


def test_shipped_weights_are_small_and_documented():
    assert DEFAULT_WEIGHTS.exists()
    assert DEFAULT_WEIGHTS.stat().st_size <= 5_000_000
    meta = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert meta["heads"] == {k: list(v) for k, v in HEADS.items()}
    for attr in HEADS:
        assert meta["metrics"]["test_clean"][attr] >= 0.98


def test_accuracy_on_heldout_renders(judge, heldout):
    images, scenes = heldout
    acc = judge_accuracy(judge, images, scenes)
    assert acc["n"] == 300
    for attr in ("count", "color", "action", "kind"):
        assert acc[attr] >= 0.97, acc


def test_accuracy_on_degraded_heldout_renders(judge, heldout):
    """Blur/noise/colour-jittered renders stand in for generated images."""
    images, scenes = heldout
    x = degrade(to_tensor(images), torch.Generator().manual_seed(5), strength=1.0, p=1.0)
    acc = judge_accuracy(judge, x.permute(0, 2, 3, 1).numpy(), scenes)
    for attr in ("count", "color", "action"):
        assert acc[attr] >= 0.9, acc


def test_judge_reads_pil_uint8_float_and_single_images_alike(judge):
    rows = sample_rows("validation", 6, seed=2)
    arr = rows_to_images(rows)
    pils = [Image.fromarray(a) for a in arr]
    strip = lambda preds: [{k: p[k] for k in HEADS} for p in preds]  # noqa: E731
    ref = strip(judge.judge(arr))
    assert len(ref) == 6
    assert strip(judge.judge(pils)) == ref
    assert strip(judge.judge(arr.astype(np.float32) / 255.0)) == ref
    assert strip(judge.judge(torch.from_numpy(arr))) == ref
    assert strip(judge.judge(pils[0])) == ref[:1]
    assert strip(judge.judge(arr[0])) == ref[:1]
    assert strip(judge.judge(pils[1].convert("RGBA"))) == ref[1:2]
    p = judge.judge(arr)[0]
    assert isinstance(p["count"], int) and p["color"] in HEADS["color"]
    assert set(p["confidence"]) == set(HEADS) and all(0 < v <= 1 for v in p["confidence"].values())
    assert judge.judge([]) == []


@pytest.mark.parametrize("bad", [
    np.zeros((64, 64), np.uint8),
    np.zeros((2, 3, 64, 64), np.uint8),   # channel-first
    np.zeros((2, 32, 32, 3), np.uint8),
    np.zeros((1, 64, 64, 4), np.uint8),
    np.zeros((1, 1, 64, 64, 3), np.uint8),
])
def test_wrong_shapes_raise_naming_the_expected_shape(judge, bad):
    with pytest.raises(ValueError, match=r"\(N, 64, 64, 3\)"):
        judge.judge(bad)


def test_wrong_pil_size_and_dtype_raise(judge):
    with pytest.raises(ValueError, match=r"64, 64, 3"):
        judge.judge(Image.new("RGB", (128, 128)))
    with pytest.raises(ValueError, match="float"):
        judge.judge(np.zeros((1, 64, 64, 3), bool))


def test_score(judge):
    s = Scene(3, "green", "robot", "sitting", "sky")
    img = render(s, 11)
    sc = judge.score(img, s)
    assert sc == {"count": True, "color": True, "action": True, "kind": True}
    wrong = judge.score(img, Scene(2, "red", "robot", "lying", "sky"))
    assert wrong["count"] is False and wrong["color"] is False and wrong["action"] is False
    with pytest.raises(ValueError):
        judge.score(np.stack([render_array(s, 1)] * 2), s)


def test_judge_accuracy_checks_lengths(judge):
    s = Scene(1, "red", "person", "standing")
    with pytest.raises(ValueError, match="scenes"):
        judge_accuracy(judge, render_array(s, 0), [s, s])
    acc = judge_accuracy(judge, render_array(s, 0), [s])
    assert set(acc) == {"count", "color", "action", "kind", "all", "n"}


def test_save_load_round_trip(judge, tmp_path):
    path = tmp_path / "j.safetensors"
    judge.save(path)
    again = ToyJudge.load(path)
    x = rows_to_images(sample_rows("test", 4, seed=0))
    before, after = judge.logits(x), again.logits(x)
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in HEADS)
    with pytest.raises(FileNotFoundError):
        ToyJudge.load(tmp_path / "missing.safetensors")


def test_degrade_is_seeded_and_keeps_range():
    x = to_tensor(rows_to_images(sample_rows("train", 4, seed=0)))
    a = degrade(x, torch.Generator().manual_seed(1))
    b = degrade(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert not torch.equal(a, x)
