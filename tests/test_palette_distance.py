"""The toy world's quality measure ranks what BRISQUE cannot: clean renders best, then blur and
noise, stronger degradations worse."""

import numpy as np
import pytest
import torch

from eval.palette_distance import palette_distance, toy_palette
from eval.toy_quality_check import _u8, degradations
from surlib.toy.dataset import rows_to_images, sample_rows
from surlib.toy.render import COLOR_RGB


def _renders(n=40, seed=7):
    return rows_to_images(sample_rows("test", n, seed))


def test_palette_holds_object_and_background_colours():
    pal = toy_palette()
    for rgb in COLOR_RGB.values():
        assert torch.cdist(torch.tensor([rgb]) / 255.0, pal, compute_mode="donot_use_mm_for_euclid_dist").min() < 1e-6
    flat = torch.tensor([[1.0, 1.0, 1.0], [200 / 255] * 3])
    assert torch.cdist(flat, pal, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values.max() < 1e-6


def test_clean_renders_score_low_and_degradations_rank_in_order():
    x = torch.from_numpy(_renders()).permute(0, 3, 1, 2).float() / 255
    s = {k: np.asarray(palette_distance(_u8(v))) for k, v in degradations(x).items()}
    assert s["clean"].mean() < 2.0
    for name in ("blur sigma 1", "blur sigma 2", "noise sd 0.05", "noise sd 0.15"):
        assert np.all(s[name] > s["clean"]), name
    assert s["blur sigma 2"].mean() > s["blur sigma 1"].mean()
    assert s["noise sd 0.15"].mean() > s["noise sd 0.05"].mean()


def test_a_flat_palette_image_scores_zero_and_inputs_are_checked():
    img = np.zeros((64, 64, 3), np.uint8)
    img[:] = COLOR_RGB["blue"]
    img[:32] = 255
    assert palette_distance(img) == pytest.approx([0.0], abs=1e-4)
    a = _renders(3)
    assert np.allclose(palette_distance(a), palette_distance(list(a)))
    assert len(palette_distance(a)) == 3
    with pytest.raises(ValueError, match=r"\(N, 64, 64, 3\)"):
        palette_distance(np.zeros((2, 32, 32, 3), np.uint8))
