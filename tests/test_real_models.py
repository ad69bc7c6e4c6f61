"""Real models without the network: the paper's preset and its released checkpoint, the SURD
release's teacher vectors, the base-mismatch warning.

The hub is faked: `list_files` / `download` serve files made here, in the release's formats
(an official `Adapter` state dict saved with torch.save; `39.pt` = {simple prompt: tensor}).
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
from PIL import Image
from test_convert import official_state_dict

import surlib.convert as convert
import surlib.presets as presets
from surlib import SURAdapter, SURPipeline, load_preset
from surlib.convert import (PAPER_BASE, PAPER_ETA, PAPER_REPO, paper_adapter, paper_adapter_folder,
                            pick_checkpoint)
from surlib.data import collate
from surlib.pipeline import base_aliases
from surlib.surd import RowSubset, load_released_vectors, released_teacher_cache, surd_dataset

TINY_YAML = Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny.yaml"


class FakeHub:
    """A hub repo made of local files: `list_files(repo)` and `download(repo, filename)`."""

    def __init__(self, root: Path, files: dict[str, object]):
        self.root, self.calls = root, []
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                torch.save(content, path)
        self.files = sorted(files)

    def list_files(self, repo_id):
        self.calls.append(("list", repo_id))
        return list(self.files) + ["README.md", ".gitattributes"]

    def download(self, repo_id, filename):
        self.calls.append(("download", repo_id, filename))
        return str(self.root / filename)


def _fail(error):
    def call(*args, **kwargs):
        raise error
    return call


# ----------------------------------------------------------------------------------- the checkpoint
def test_paper_adapter_is_found_converted_once_and_reused(tmp_path):
    hub = FakeHub(tmp_path / "hub", {"fp16/test_adapterw0.3/adapter_checkpoint1000.pt": official_state_dict()})
    cache = tmp_path / "cache"
    adapter = paper_adapter(PAPER_REPO, cache, list_files=hub.list_files, download=hub.download)
    assert adapter.config.eta == 0.3  # read from the checkpoint's path, as the official demo does
    assert adapter.config.base_model == PAPER_BASE and adapter.config.text_dim == 32 and not adapter.training
    assert [c[0] for c in hub.calls] == ["list", "download"]
    folder = paper_adapter_folder(PAPER_REPO, cache, list_files=_fail(AssertionError("listed again")),
                                  download=_fail(AssertionError("downloaded again")))
    assert (folder / "config.json").is_file()
    source = json.loads((folder / "source.json").read_text())
    assert source["file"] == "fp16/test_adapterw0.3/adapter_checkpoint1000.pt" and source["eta"] == 0.3
    again = paper_adapter(PAPER_REPO, cache, eta=0.2, list_files=_fail(AssertionError), download=_fail(AssertionError))
    assert again.config.eta == 0.2  # overridable, without converting again
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in adapter.state_dict().items())
    with pytest.raises(ValueError, match="eta must be in"):
        paper_adapter(PAPER_REPO, cache, eta=2.0)


def test_eta_defaults_to_the_documented_value_when_the_path_does_not_say(tmp_path):
    hub = FakeHub(tmp_path / "hub", {"adapter.pt": official_state_dict()})
    adapter = paper_adapter(PAPER_REPO, tmp_path / "c", list_files=hub.list_files, download=hub.download)
    assert adapter.config.eta == PAPER_ETA == 0.1


def test_the_checkpoint_is_chosen_from_the_listing():
    assert pick_checkpoint(["README.md", "x_adapterw0.1/adapter_checkpoint1000.pt"]) == \
        "x_adapterw0.1/adapter_checkpoint1000.pt"
    assert pick_checkpoint(["a/adapter_checkpoint500.pt", "a/adapter_checkpoint1000.pt", "optimizer.bin"]) == \
        "a/adapter_checkpoint1000.pt"
    assert pick_checkpoint(["a/adapter_checkpoint500.pt", "a/adapter.pt"]) == "a/adapter.pt"  # the final one
    assert pick_checkpoint(["weights.safetensors", "config.json"]) == "weights.safetensors"
    with pytest.raises(FileNotFoundError, match="no adapter checkpoint"):
        pick_checkpoint(["README.md"])
    with pytest.raises(ValueError, match="filename="):
        pick_checkpoint(["adapter_a.pt", "adapter_b.pt"])


def test_offline_or_missing_downloads_fail_fast_with_what_to_set(tmp_path):
    files = ["adapterw0.1/adapter_checkpoint1000.pt"]
    with pytest.raises(FileNotFoundError) as info:
        paper_adapter_folder(PAPER_REPO, tmp_path, list_files=lambda repo: files,
                             download=_fail(LocalEntryNotFoundError("not in the local cache")))
    message = str(info.value)
    for part in (PAPER_REPO, files[0], "SUR_ADAPTER", "allow downloads"):
        assert part in message
    with pytest.raises(FileNotFoundError, match=f"{PAPER_REPO}.*SUR_ADAPTER"):
        paper_adapter_folder(PAPER_REPO, tmp_path, list_files=_fail(OfflineModeIsEnabled("offline")),
                             download=_fail(AssertionError("no download after a failed listing")))
    # The real huggingface_hub functions, with HF_HUB_OFFLINE=1 (conftest): refused at once.
    with pytest.raises(FileNotFoundError, match="SUR_ADAPTER"):
        paper_adapter_folder(PAPER_REPO, tmp_path / "real")
    assert not (tmp_path / "adapters").exists() and not (tmp_path / "real" / "adapters").exists()


def test_offline_listing_falls_back_to_the_local_hub_cache(tmp_path, monkeypatch):
    """A repo fetched earlier (`hf download`) is listed from its cached snapshot when offline."""
    import huggingface_hub

    snap = tmp_path / "snapshot"
    (snap / "adapterw0.1").mkdir(parents=True)
    (snap / "adapterw0.1" / "adapter.pt").write_bytes(b"x")
    (snap / "README.md").write_text("x")
    monkeypatch.setattr(huggingface_hub, "list_repo_files", _fail(OfflineModeIsEnabled("offline")))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, local_files_only: str(snap))
    assert convert.hub_files(PAPER_REPO) == ["README.md", "adapterw0.1/adapter.pt"]
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _fail(LocalEntryNotFoundError("not cached")))
    with pytest.raises(OfflineModeIsEnabled):  # not cached either: the hub's own answer
        convert.hub_files(PAPER_REPO)


def test_a_truncated_checkpoint_is_refused_and_nothing_is_cached(tmp_path):
    good = tmp_path / "good.pt"
    torch.save(official_state_dict(), good)
    data = good.read_bytes()
    hub = FakeHub(tmp_path / "hub", {"adapterw0.1/adapter.pt": data[: len(data) // 2]})
    with pytest.raises(ValueError, match="corrupt or truncated"):
        paper_adapter_folder(PAPER_REPO, tmp_path / "cache", list_files=hub.list_files, download=hub.download)
    assert not list((tmp_path / "cache").rglob("config.json"))  # never a half-made adapter
    with pytest.raises(ValueError, match="corrupt or truncated"):
        convert.load_official_adapter(hub.root / "adapterw0.1" / "adapter.pt")


def test_sur_paper_preset_end_to_end_on_a_tiny_base(monkeypatch, sd1_base, tmp_path, caplog):
    """The preset's whole path with the hub faked and the tiny base standing in for Realistic Vision:
    the adapter still records Realistic Vision, so the pairing is warned about."""
    hub = FakeHub(tmp_path / "hub", {"adapterw0.1/adapter_checkpoint1000.pt": official_state_dict()})
    monkeypatch.setattr(presets, "PAPER_BASE", sd1_base)
    monkeypatch.setattr(presets, "paper_adapter", functools.partial(
        convert.paper_adapter, list_files=hub.list_files, download=hub.download))
    monkeypatch.delenv("SUR_ADAPTER", raising=False)
    assert presets.PRESETS["sur-paper"].base == PAPER_BASE
    with caplog.at_level(logging.WARNING, logger="surlib.pipeline"):
        pipe = load_preset("sur-paper", device="cpu", safety_checker=False, eta=0.2, cache_dir=str(tmp_path / "c"))
    assert pipe.adapter.config.eta == 0.2 and pipe.adapter.config.base_model == PAPER_BASE
    assert PAPER_BASE in caplog.text and sd1_base in caplog.text
    pipe.set_progress_bar_config(disable=True)
    gen = pipe.generate_pair("a cat", seed=0, steps=1, output_type="np")
    assert gen.adapter.shape == (32, 32, 3)


def test_sur_paper_takes_a_local_official_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "runwayml_fp16" / "test_adapterw0.4" / "adapter_checkpoint1000.pt"
    path.parent.mkdir(parents=True)
    torch.save(official_state_dict(), path)
    monkeypatch.setattr(presets, "paper_adapter", _fail(AssertionError("no download for a local adapter")))
    with pytest.warns(UserWarning, match="llm_proj"):
        ada = presets._paper_or_local_adapter(str(path), None)
    assert ada.config.eta == 0.4 and ada.config.base_model == PAPER_BASE
    ada.save_pretrained(tmp_path / "ours")
    monkeypatch.setenv("SUR_ADAPTER", str(tmp_path / "ours"))
    assert presets._paper_or_local_adapter(None, 0.05).config.eta == 0.05


# ----------------------------------------------------------------------------------- base mismatch
def test_an_adapter_paired_with_another_base_is_warned_about(sd1_pipe, sd1_base, new_adapter, caplog):
    with caplog.at_level(logging.WARNING, logger="surlib.pipeline"):
        SURPipeline(sd1_pipe.sd, new_adapter(base_model=PAPER_BASE))
    warned = [r for r in caplog.records if r.name == "surlib.pipeline"]
    assert len(warned) == 1 and PAPER_BASE in warned[0].getMessage() and sd1_base in warned[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="surlib.pipeline"):
        SURPipeline(sd1_pipe.sd, new_adapter(base_model=sd1_base + "/"))  # the same base
        SURPipeline(sd1_pipe.sd, new_adapter())                           # base not recorded
    assert not [r for r in caplog.records if r.name == "surlib.pipeline"]
    with pytest.raises(ValueError, match="does not match"):  # another width stays an error
        SURPipeline(sd1_pipe.sd, new_adapter(48, base_model=sd1_base))


def test_base_names_are_compared_by_hub_id():
    snapshot = "/root/.cache/huggingface/hub/models--SG161222--Realistic_Vision_V2.0/snapshots/abc123"
    assert base_aliases(PAPER_BASE) & base_aliases(snapshot)
    assert base_aliases("sd15") & base_aliases("stable-diffusion-v1-5/stable-diffusion-v1-5")  # a preset name
    assert not base_aliases(PAPER_BASE) & base_aliases("stable-diffusion-v1-5/stable-diffusion-v1-5")


# ----------------------------------------------------------------------------------- SURD release
CAPTIONS = ["two red robots standing", "a cat on a blue sofa", "three green apples", "one yellow bird flying",
            "a dog running on the beach"]
WIDTH = 24


def make_surd_release(root: Path, missing: int = 2) -> tuple[Path, Path]:
    """An extracted SURD.zip (`SURD/` with PNGs + metadata.jsonl) and a 39.pt lacking one caption;
    vectors saved both as (width,) and as (1, width), as the release may hold either."""
    folder = root / "SURD"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i, text in enumerate(CAPTIONS):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
        rows.append({"file_name": f"{i:04d}.png", "text": text, "prompt": f"masterpiece, {text}, best quality, 8k"})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    gen = torch.Generator().manual_seed(0)
    vectors = {t: torch.randn(WIDTH if i % 2 else (1, WIDTH), generator=gen).half()
               for i, t in enumerate(CAPTIONS) if i != missing}
    vectors["a prompt of another release row"] = torch.randn(WIDTH, generator=gen)
    torch.save(vectors, root / "39.pt")
    return folder, root / "39.pt"


def test_released_vectors_become_a_row_indexed_cache(tmp_path, caplog):
    folder, pt = make_surd_release(tmp_path, missing=2)
    ds = surd_dataset(tmp_path, resolution=32)  # finds SURD/metadata.jsonl one folder down
    assert len(ds) == 5
    with caplog.at_level(logging.WARNING, logger="surlib.surd"):
        kept, cache = released_teacher_cache(ds, pt)
    warned = [r.getMessage() for r in caplog.records if r.name == "surlib.surd"]
    assert len(warned) == 1 and "1 of 5 rows" in warned[0] and CAPTIONS[2] in warned[0]
    assert isinstance(kept, RowSubset) and len(kept) == len(cache) == 4 and cache.width == WIDTH
    raw = torch.load(pt, weights_only=True)
    loader = torch.utils.data.DataLoader(kept, batch_size=4, collate_fn=collate)
    batch = next(iter(loader))
    assert batch["index"].tolist() == [0, 1, 2, 3]  # re-indexed, through the DataLoader too
    for i, text in enumerate(batch["text"]):
        assert text != CAPTIONS[2]
        torch.testing.assert_close(cache.lookup(torch.tensor([i]))[0], raw[text].float().flatten())
    assert kept.texts == [t for t in CAPTIONS if t != CAPTIONS[2]] and len(kept.prompts) == 4


def test_released_vectors_are_checked(tmp_path):
    gen = torch.Generator().manual_seed(1)
    torch.save({"a": torch.randn(8, generator=gen), "b": torch.randn(1, 6, generator=gen)}, tmp_path / "mixed.pt")
    with pytest.raises(ValueError, match="different widths"):
        load_released_vectors(tmp_path / "mixed.pt")
    torch.save({"a": torch.randn(2, 8, generator=gen)}, tmp_path / "shape.pt")
    with pytest.raises(ValueError, match=r"\(width,\) and \(1, width\)"):
        load_released_vectors(tmp_path / "shape.pt")
    torch.save([torch.zeros(3)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a dict"):
        load_released_vectors(tmp_path / "list.pt")
    data = (tmp_path / "mixed.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_released_vectors(tmp_path / "cut.pt")
    with pytest.raises(FileNotFoundError, match="39.pt"):
        load_released_vectors(tmp_path / "nope.pt")


def test_training_with_the_released_vectors(sd1_base, tmp_path, caplog, monkeypatch):
    from surlib.teacher import LLMFeatureExtractor
    from surlib.training import make_config, train

    folder, pt = make_surd_release(tmp_path, missing=4)
    monkeypatch.setattr(LLMFeatureExtractor, "from_settings", _fail(AssertionError("no teacher model")))
    with caplog.at_level(logging.WARNING, logger="surlib.surd"):
        history = train(make_config(
            TINY_YAML, base=sd1_base, data=str(folder), teacher_vectors=str(pt), resolution=32, max_steps=3,
            batch_size=2, llm_weight=1.0, num_heads=4, ff_dim=64, output_dir=str(tmp_path / "run"),
            checkpoint_every=0, validate_every=0, plot_every=0, progress=False))
    assert [r["step"] for r in history] == [1, 2, 3] and all(r["llm"] > 0 for r in history)
    warned = [r.getMessage() for r in caplog.records if r.name == "surlib.surd"]
    assert len(warned) == 1 and "1 of 5 rows" in warned[0] and CAPTIONS[4] in warned[0]
    adapter = SURAdapter.from_pretrained(tmp_path / "run" / "adapter")
    assert adapter.config.llm_dim == WIDTH and adapter.config.text_dim == 32
