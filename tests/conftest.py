"""Shared fixtures: tiny random Stable Diffusion bases on disk, loaded the way users load them.

Everything here is offline and CPU-only. Session-scoped fixtures build each base once (a few
hundred milliseconds); tests that change a pipeline (scheduler, dtype) load their own copy with
`load_pipe` instead of mutating the shared ones.
"""

from __future__ import annotations

import os

# Before anything imports huggingface_hub / transformers: tests must never reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402

# The test machines share a couple of CPU cores between several people; the tiny models gain
# nothing from more threads. SURLIB_TEST_THREADS overrides.
torch.set_num_threads(int(os.environ.get("SURLIB_TEST_THREADS", "1")))

from surlib import SURAdapter, SURPipeline  # noqa: E402
from surlib.tiny import build_tiny_sd  # noqa: E402

SD1_WIDTH = 32  # tiny SD-1-style text width (CLIP hidden size)
SD2_WIDTH = 48  # tiny SD-2-style text width: deliberately different from SD1_WIDTH
TINY_ADAPTER = dict(llm_dim=16, num_heads=4, ff_dim=64)


def make_adapter(text_dim: int = SD1_WIDTH, eta: float = 0.25, init_seed: int = 0, trained: bool = True,
                 **kwargs) -> SURAdapter:
    """A tiny adapter; `trained=True` gives `fc` non-zero weights, as after training (a fresh
    adapter's `fc` is zero, so its output is just (1 - eta) * x)."""
    adapter = SURAdapter(text_dim=text_dim, eta=eta, init_seed=init_seed, **{**TINY_ADAPTER, **kwargs})
    if trained:
        gen = torch.Generator().manual_seed(1000 + init_seed)
        with torch.no_grad():
            adapter.fc.weight.copy_(torch.randn(adapter.fc.weight.shape, generator=gen) * 0.5)
            adapter.fc.bias.copy_(torch.randn(adapter.fc.bias.shape, generator=gen) * 0.5)
    return adapter


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session")
def sd1_base(tiny_root) -> str:
    """Folder of a tiny SD-1-style pipeline (CLIP width 32, PNDM, epsilon prediction)."""
    folder = tiny_root / "sd1"
    build_tiny_sd(tiny_root / "sd1_work", text_dim=SD1_WIDTH, seed=0).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def sd2_base(tiny_root) -> str:
    """Folder of a tiny SD-2-style pipeline (width 48, linear projections, v-prediction DDIM)."""
    folder = tiny_root / "sd2"
    build_tiny_sd(tiny_root / "sd2_work", text_dim=SD2_WIDTH, sd2_style=True, seed=1).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def sd1_base_with_checker(tiny_root) -> str:
    """The SD-1-style base plus a tiny random safety checker and feature extractor on disk, so
    that loading with and without the checker can be told apart without a real checker model."""
    from diffusers import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
                         vocab_size=100),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    sd = build_tiny_sd(tiny_root / "sd1_checker_work", text_dim=SD1_WIDTH, seed=0)
    components = {**sd.components, "safety_checker": StableDiffusionSafetyChecker(config).eval(),
                  "feature_extractor": CLIPImageProcessor(size={"shortest_edge": 32},
                                                          crop_size={"height": 32, "width": 32})}
    folder = tiny_root / "sd1_checker"
    StableDiffusionPipeline(**components, requires_safety_checker=True).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def adapter_folder(tiny_root) -> str:
    """A saved 32-wide adapter with trained-looking (non-zero) `fc` and eta 0.25."""
    folder = tiny_root / "adapter32"
    make_adapter(SD1_WIDTH, eta=0.25, init_seed=3).save_pretrained(folder)
    return str(folder)


def _load(base, adapter, **kwargs) -> SURPipeline:
    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("safety_checker", False)
    pipe = SURPipeline.from_pretrained(base, adapter=adapter, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def load_pipe():
    """`load_pipe(base, adapter, **kw)`: a fresh SURPipeline via the users' loader (CPU, no checker)."""
    return _load


@pytest.fixture(scope="session")
def sd1_pipe(sd1_base, adapter_folder) -> SURPipeline:
    """Shared SD-1-style pipeline, adapter loaded from its folder. Do not mutate it."""
    return _load(sd1_base, adapter_folder)


@pytest.fixture(scope="session")
def sd1_euler_pipe(sd1_base, adapter_folder) -> SURPipeline:
    """Its own copy of the SD-1-style pipeline with the stochastic Euler-ancestral scheduler."""
    from diffusers import EulerAncestralDiscreteScheduler

    pipe = _load(sd1_base, adapter_folder)
    pipe.sd.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.sd.scheduler.config)
    return pipe


@pytest.fixture(scope="session")
def sd2_pipe(sd2_base) -> SURPipeline:
    """Shared SD-2-style pipeline with a 48-wide trained-looking adapter passed as an instance."""
    return _load(sd2_base, make_adapter(SD2_WIDTH, eta=0.25, init_seed=5))


@pytest.fixture(params=["sd1-pndm", "sd1-euler-ancestral", "sd2-ddim-v"])
def any_pipe(request) -> SURPipeline:
    """The three scheduler/model combinations: deterministic PNDM, stochastic Euler-ancestral,
    and DDIM with v-prediction on the SD-2-style base."""
    name = {"sd1-pndm": "sd1_pipe", "sd1-euler-ancestral": "sd1_euler_pipe", "sd2-ddim-v": "sd2_pipe"}
    return request.getfixturevalue(name[request.param])


@pytest.fixture(scope="session")
def new_adapter():
    """`new_adapter(text_dim=32, eta=0.25, init_seed=0, trained=True, **kw)`: see `make_adapter`."""
    return make_adapter


def free_port() -> int:
    """A localhost port nobody listens on now, for app servers started by tests."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_test_app(tmp, suite_rows, **settings):
    """Start app.py's Blocks in this process on the tiny preset; returns (demo, studio, cfg)."""
    import json

    import torch

    torch.set_num_threads(1)
    import app
    from surlib.studio.settings import AppConfig

    suites = tmp / "suites"
    suites.mkdir()
    (suites / "toy.jsonl").write_text("".join(json.dumps(r) + "\n" for r in suite_rows))
    cfg = AppConfig(preset="tiny", data_dir=tmp / "data", runs_dir=tmp / "runs", suites_dir=suites, steps=1,
                    server_name="127.0.0.1", server_port=free_port(), **settings)
    demo, studio = app.create_app(cfg)
    kwargs = app.launch_kwargs(cfg)
    kwargs.update(prevent_thread_lock=True, quiet=True)
    demo.launch(**kwargs)
    return demo, studio, cfg
