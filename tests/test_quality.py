"""BRISQUE: ordering on a synthetic natural-looking image, the fast path against piq (and the piq
internals it relies on), range/shape errors, offline weights."""

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eval.brisque import brisque, brisque_scores
from eval.brisque_weights import DEFAULT_SHARED, ENV_WEIGHTS, WEIGHTS_NAME, ensure_brisque_weights
from eval.image_batch import as_unit_batch
from eval.synthetic_image import synthetic_natural_image as natural_image

torch.set_num_threads(1)

SHARED = DEFAULT_SHARED / WEIGHTS_NAME


@pytest.fixture(autouse=True)
def _private_torch_home(tmp_path_factory, monkeypatch):
    """Each test sees its own torch hub cache, so nothing is written to the user's."""
    home = tmp_path_factory.mktemp("torch_home")
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv(ENV_WEIGHTS, raising=False)
    return home


needs_weights = pytest.mark.skipif(not SHARED.is_file(), reason=f"BRISQUE weights not found at {SHARED}")


def gaussian_blur(x: torch.Tensor, sigma: float = 3.0) -> torch.Tensor:
    k = int(4 * sigma) * 2 + 1
    c = torch.arange(k) - k // 2
    g = torch.exp(-c ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    x = F.conv2d(F.pad(x, (k // 2,) * 4, mode="reflect"), g.view(1, 1, 1, k).repeat(3, 1, 1, 1), groups=3)
    return F.conv2d(x, g.view(1, 1, k, 1).repeat(3, 1, 1, 1), groups=3)


def with_noise(x: torch.Tensor, sigma: float = 0.1) -> torch.Tensor:
    return (x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)


@needs_weights
@pytest.mark.parametrize("seed", [0, 1])
def test_clean_scores_better_than_blurred_and_noisy(seed):
    x = natural_image(seed=seed)
    clean, blurred, noisy = brisque(torch.cat([x, gaussian_blur(x), with_noise(x)])).tolist()
    assert clean + 10 < blurred, (clean, blurred)
    assert clean + 10 < noisy, (clean, noisy)


@needs_weights
def test_fast_path_matches_piq():
    torch.manual_seed(0)
    x = natural_image(seed=2)
    odd = torch.rand(1, 3, 97, 131)  # odd sizes: the 2x downscale has position-dependent weights
    for batch in (torch.cat([x, gaussian_blur(x), with_noise(x)]), odd):
        fast, ref = brisque(batch, impl="fast"), brisque(batch, impl="piq")
        assert torch.allclose(fast, ref, atol=0.05), (fast, ref)


def test_piq_internals_of_the_fast_path_are_where_it_expects_them():
    """The fast path imports these private piq names; a piq release that moves or changes them
    must fail here (and in test_fast_path_matches_piq), not silently change BRISQUE scores."""
    import inspect

    import piq
    from piq.brisque import _scale_features, _score_svr
    from piq.functional.resize import get_weight

    from eval import brisque as fast

    assert piq.__version__.startswith("0.8."), piq.__version__
    assert {"kernel", "antialiasing_factor"} <= set(inspect.signature(get_weight).parameters)
    assert _scale_features(torch.zeros(1, 36)).shape == (1, 36)
    svr = inspect.getsource(_score_svr)
    assert f"gamma = {fast._SVR_GAMMA}" in svr and f"rho = {fast._SVR_RHO}" in svr
    defaults = inspect.signature(piq.brisque).parameters
    assert (defaults["kernel_size"].default, defaults["kernel_sigma"].default) == (fast.KERNEL_SIZE, fast.KERNEL_SIGMA)


@needs_weights
def test_uint8_and_pil_inputs_are_scaled():
    from PIL import Image

    x = natural_image(size=128, seed=3)
    u8 = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    ref = brisque(torch.from_numpy(u8).permute(2, 0, 1)[None].float() / 255)
    assert brisque_scores([u8])[0] == pytest.approx(float(ref[0]), abs=1e-4)
    assert brisque_scores([Image.fromarray(u8)])[0] == pytest.approx(float(ref[0]), abs=1e-4)
    # a batch of two sizes is scored per size, in order
    small = u8[:64, :64]
    mixed = brisque_scores([Image.fromarray(small), Image.fromarray(u8)])
    assert mixed[1] == pytest.approx(float(ref[0]), abs=1e-4)
    assert mixed[0] == pytest.approx(brisque_scores([small])[0], abs=1e-4)


def test_0_255_floats_are_refused():
    x = torch.rand(2, 3, 64, 64) * 255
    with pytest.raises(ValueError, match="0-255"):
        brisque(x)
    with pytest.raises(ValueError, match="0-255"):
        as_unit_batch(np.random.rand(2, 64, 64, 3).astype(np.float32) * 255)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        brisque(torch.rand(1, 3, 64, 64) * 2 - 1)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="permute"):
        brisque(torch.rand(1, 64, 64, 3))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        brisque(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match="at least"):
        brisque(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        brisque(torch.full((1, 3, 32, 32), float("nan")))
    with pytest.raises(ValueError, match="channels last"):
        as_unit_batch(np.zeros((2, 3, 64, 64), np.uint8))


@needs_weights
def test_flat_image_scores_nan_instead_of_crashing():
    x = torch.cat([torch.full((1, 3, 64, 64), 0.0), natural_image(size=64)])
    s = brisque(x)
    assert torch.isnan(s[0]) and torch.isfinite(s[1])


def test_missing_weights_name_both_places(tmp_path, _private_torch_home):
    with pytest.raises(FileNotFoundError) as e:
        ensure_brisque_weights(shared=tmp_path / "nowhere")
    msg = str(e.value)
    assert str(_private_torch_home) in msg and str(tmp_path / "nowhere") in msg
    assert ENV_WEIGHTS in msg


@needs_weights
def test_weights_are_verified_and_installed(tmp_path, monkeypatch, _private_torch_home):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / WEIGHTS_NAME).write_bytes(b"not weights")
    monkeypatch.setenv(ENV_WEIGHTS, str(bad))
    with pytest.raises(ValueError, match="sha256"):
        ensure_brisque_weights()
    good = tmp_path / "good"
    good.mkdir()
    shutil.copy(SHARED, good / WEIGHTS_NAME)
    monkeypatch.setenv(ENV_WEIGHTS, str(good / WEIGHTS_NAME))
    path = ensure_brisque_weights()
    assert path == _private_torch_home / "hub" / "checkpoints" / WEIGHTS_NAME and path.is_file()
    monkeypatch.delenv(ENV_WEIGHTS)
    assert ensure_brisque_weights(shared=tmp_path / "nowhere") == path  # found in the cache now
