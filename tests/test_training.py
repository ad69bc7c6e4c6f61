"""The trainer: learning, exact resume, outputs, the CLI, the dataset hook, frozen parts."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file
from test_data import make_surd_folder

from surlib import SURAdapter
from surlib.data import RowsDataset
from surlib.training import Frozen, encode_prompts, find_checkpoint, make_config, train
from surlib.training.checkpoints import prune_checkpoints
from surlib.training.loop import _make_adapter

TINY_YAML = Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def surd(tmp_path_factory):
    return make_surd_folder(tmp_path_factory.mktemp("surd") / "data", n=12)


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    """One teacher cache shared by the tests of a dataset (reused because its manifest matches)."""
    return tmp_path_factory.mktemp("features")


@pytest.fixture
def cfg(sd1_base, surd, features, tmp_path):
    def make(**kw):
        base = dict(base=sd1_base, data=str(surd), resolution=32, output_dir=str(tmp_path / "run"),
                    feature_cache=str(features / "surd"), validate_every=0, plot_every=0, progress=False,
                    num_heads=4, ff_dim=64)
        return make_config(TINY_YAML, **{**base, **kw})
    return make


def _weights(folder) -> dict:
    return load_file(str(Path(folder) / "diffusion_pytorch_model.safetensors"))


def test_loss_decreases_on_a_fixed_batch(cfg):
    history = train(cfg(max_rows=4, batch_size=4, max_steps=30, lr=3e-3, llm_weight=1.0, quality_weight=0.1,
                        checkpoint_every=0))
    assert [r["step"] for r in history] == list(range(1, 31))

    def mean(key, rows):
        return sum(r[key] for r in rows) / len(rows)

    for key in ("total", "llm", "quality"):
        assert mean(key, history[-5:]) < mean(key, history[:5]), key
    assert all(r["lr"] == pytest.approx(3e-3) for r in history)


def test_a_gated_residual_adapter_trains_and_is_saved_as_such(cfg, tmp_path):
    """gate and residual reach the adapter the trainer makes, its gate trains (the identity rows
    and the noise loss both reach it) and the saved folder loads back in the same form."""
    train(cfg(max_rows=4, batch_size=4, max_steps=8, lr=3e-3, checkpoint_every=0, residual=True,
              gate="prompt", gate_weight=1.0, spell_fraction=0.5, identity_weight=10.0, quality_weight=0.1))
    saved = SURAdapter.from_pretrained(tmp_path / "run" / "adapter")
    assert (saved.config.residual, saved.config.gate) == (True, "prompt")
    weights = _weights(tmp_path / "run" / "adapter")
    assert weights["gate_score.bias"].item() != 1.0 and weights["gate_score.weight"].abs().max() > 0


def test_resume_continues_exactly(cfg, tmp_path):
    common = dict(batch_size=2, gradient_accumulation_steps=2, checkpoint_every=4, dropout=0.1,
                  random_flip=True, center_crop=False, llm_weight=0.5, quality_weight=0.1, lr=1e-3)
    straight = train(cfg(max_steps=8, output_dir=str(tmp_path / "straight"), **common))
    first = train(cfg(max_steps=4, output_dir=str(tmp_path / "split"), **common))
    assert find_checkpoint(tmp_path / "split", "latest").name == "checkpoint-4"
    resumed = train(cfg(max_steps=8, output_dir=str(tmp_path / "split"), resume="latest", **common))
    assert first == straight[:4]
    assert [r["step"] for r in resumed] == list(range(1, 9))
    for a, b in zip(resumed[4:], straight[4:]):
        for key in ("noise", "llm", "quality", "identity", "total", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), (a["step"], key)
    w_straight, w_resumed = _weights(tmp_path / "straight" / "adapter"), _weights(tmp_path / "split" / "adapter")
    assert w_straight.keys() == w_resumed.keys()
    for k in w_straight:
        assert torch.allclose(w_straight[k], w_resumed[k], atol=1e-6), k
    with open(tmp_path / "split" / "losses.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(1, 9))  # no duplicated rows


def test_cli_writes_adapter_checkpoints_csv_plot_and_validation_grid(sd1_base, surd, features, tmp_path):
    from train.train_adapter import main, parse_config

    out = tmp_path / "cli"
    argv = ["--config", str(TINY_YAML), "--base", sd1_base, "--data", str(surd), "--resolution", "32",
            "--max-steps", "4", "--output-dir", str(out), "--set", "lr=1e-4", "--set", "checkpoint_every=2",
            "--validate-every", "4", "--validation-steps", "1", "--plot-every", "2", "--num-heads", "4",
            "--feature-cache", str(features / "surd"), "--progress", "false"]
    cfg, _ = parse_config(argv)
    assert (cfg.lr, cfg.max_steps, cfg.progress, cfg.checkpoint_every) == (1e-4, 4, False, 2)
    assert main(argv) == 0
    adapter = SURAdapter.from_pretrained(out / "adapter")
    assert adapter.config.text_dim == 32 and adapter.config.llm_dim == 384 and not adapter.training
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-4"]
    ck = out / "checkpoints" / "checkpoint-4"
    for name in ("optimizer.bin", "scheduler.bin", "random_states_0.pkl", "trainer_state.json", "adapter"):
        assert (ck / name).exists(), name
    with open(out / "losses.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "noise", "llm", "quality", "identity", "gate", "total", "lr"] and len(rows) == 4
    assert (out / "losses.png").stat().st_size > 0 and (out / "config.yaml").exists()
    from PIL import Image

    grid = Image.open(out / "validation" / "step-000004.png")
    assert grid.size[0] == 2 * 32  # baseline | adapter, at the base's default size


def test_dataset_object_and_latent_cache(sd1_base, features, tmp_path):
    """A Dataset passed in (rows made in memory, as the toy world does) instead of a folder;
    caching VAE posteriors and text embeddings gives the same run."""
    rng = np.random.default_rng(0)
    rows = [(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), f"{i % 3 + 1} green cats", f"cats, {i % 3 + 1}, green")
            for i in range(6)]
    runs = []
    for cache in (False, True):
        runs.append(train(make_config(
            TINY_YAML, base=sd1_base, output_dir=str(tmp_path / f"rows{cache}"), max_steps=4, batch_size=3,
            resolution=32, num_heads=4, cache_latents=cache, cache_text=cache, checkpoint_every=0, validate_every=0,
            plot_every=0, progress=False, feature_cache=str(features / "rows")), dataset=RowsDataset(rows, resolution=32)))
    assert len(runs[0]) == len(runs[1]) == 4  # two epochs: the second one reads the caches
    for a, b in zip(*runs):
        assert a == pytest.approx(b, rel=1e-5)
    with pytest.raises(ValueError, match="cache_latents"):
        train(make_config(TINY_YAML, base=sd1_base, output_dir=str(tmp_path / "x"), cache_latents=True,
                          random_flip=True, feature_cache=str(features / "rows"), progress=False),
              dataset=RowsDataset(rows, resolution=32, random_flip=True))


def test_row_cache_is_shared_by_runs_on_the_same_data_and_base(cfg, tmp_path):
    """A first run writes the kept rows once all are seen; a second run (another loss mix, as an
    ablation) starts from them and trains exactly as it would have from scratch."""
    rows = tmp_path / "rows"
    kw = dict(max_rows=6, batch_size=3, max_steps=4, checkpoint_every=0, cache_latents=True, cache_text=True)
    train(cfg(output_dir=str(tmp_path / "first"), row_cache=str(rows), quality_weight=0.0, **kw))
    files = list(rows.glob("rows-*.pt"))
    assert len(files) == 1
    saved = torch.load(files[0], weights_only=True)
    assert saved["latents"][0].shape[0] == 6
    simple, mask, complex_embeds, pooled, complex_pooled, canonical, _ = saved["text"]  # the TextBatch fields
    assert simple.shape[0] == complex_embeds.shape[0] == 6  # complex prompt kept too
    assert pooled is None and complex_pooled is None  # an SD base has no pooled vectors
    assert canonical is None  # the data has no canonical column
    stamp = files[0].stat().st_mtime_ns
    shared = train(cfg(output_dir=str(tmp_path / "second"), row_cache=str(rows), **kw))
    alone = train(cfg(output_dir=str(tmp_path / "alone"), **kw))
    assert files[0].stat().st_mtime_ns == stamp and len(list(rows.glob("rows-*.pt"))) == 1
    for a, b in zip(shared, alone):
        assert a == pytest.approx(b, rel=1e-5)
    with pytest.raises(ValueError, match="row_cache stores the rows kept by cache_latents and cache_text"):
        train(cfg(output_dir=str(tmp_path / "x"), row_cache=str(rows), cache_latents=False))


def test_encode_prompts_matches_the_pipeline_and_parts_are_frozen(sd1_base):
    sd = StableDiffusionPipeline.from_pretrained(sd1_base)
    prompts = ["two red robots", "a cat on the grass, masterpiece"]
    ours, mask = encode_prompts(sd.tokenizer, sd.text_encoder, prompts)
    theirs, _ = sd.encode_prompt(prompts, "cpu", 1, False)
    assert torch.equal(ours, theirs) and mask.shape == ours.shape[:2] and mask[0].sum() < mask[1].sum()
    frozen = Frozen.from_pipeline(sd)
    for part in (frozen.unet, frozen.vae, frozen.text_encoder):
        assert not part.training and not any(p.requires_grad for p in part.parameters())
    assert frozen.text_dim == 32 and type(frozen.noise_scheduler).__name__ == "DDPMScheduler"


def test_config_errors_are_clear(tmp_path):
    assert make_config(TINY_YAML, lr="1e-5").lr == 1e-5  # YAML reads 1e-5 as a string; coerced
    with pytest.raises(ValueError, match="unknown config key"):
        make_config(TINY_YAML, learning_rate=1e-4)
    with pytest.raises(ValueError, match="expects int"):
        make_config(TINY_YAML, max_steps="many")
    with pytest.raises(ValueError, match="nothing would train"):
        make_config(TINY_YAML, official_detached=True, llm_weight=0, quality_weight=0)
    with pytest.raises(ValueError, match="no training data"):
        train(make_config(TINY_YAML, dataset_factory=None, output_dir=str(tmp_path / "o"), progress=False))
    with pytest.raises(FileNotFoundError, match="not a training checkpoint"):
        find_checkpoint(tmp_path, str(tmp_path))
    assert find_checkpoint(tmp_path, "latest") is None
    loose = make_config(TINY_YAML, resume="none", validation_seeds=3, max_steps="1e3", output_dir=2024)
    assert (loose.resume, loose.validation_seeds, loose.max_steps, loose.output_dir) == (None, [3], 1000, "2024")
    with pytest.raises(ValueError, match="'lr' expects float, got True"):
        make_config(TINY_YAML, lr=True)
    with pytest.raises(ValueError, match="'base' cannot be null"):
        make_config(TINY_YAML, base=None)
    with pytest.raises(ValueError, match="canonical_fraction needs canonical_column"):
        make_config(TINY_YAML, canonical_fraction=0.25)
    with pytest.raises(ValueError, match=r"spell_fraction \+ canonical_fraction must be <= 1"):
        make_config(TINY_YAML, canonical_column="canonical", spell_fraction=0.6, canonical_fraction=0.6)
    with pytest.raises(ValueError, match="identity_weight applies to spell and canonical rows"):
        make_config(TINY_YAML, identity_weight=1.0, spell_fraction=0.0)
    with pytest.raises(ValueError, match="gate must be token, prompt or null, got 'sentence'"):
        make_config(TINY_YAML, gate="sentence", identity_weight=1.0, spell_fraction=0.5)
    with pytest.raises(ValueError, match="a gate learns where to close from the identity rows"):
        make_config(TINY_YAML, gate="token")
    with pytest.raises(ValueError, match="gate_weight trains a prompt gate: set gate: prompt"):
        make_config(TINY_YAML, gate="token", gate_weight=1.0, identity_weight=1.0, spell_fraction=0.5)


def test_canonical_rows_train_from_their_column_and_are_kept_with_the_rows(cfg, surd, tmp_path):
    """canonical_column: the folder's captions are encoded, kept in the row file (whose key they
    change) and trained on; a column the data lacks, or a dataset without them, is refused."""
    import json

    root = tmp_path / "canon"
    root.mkdir()
    rows = [json.loads(line) for line in (Path(surd) / "metadata.jsonl").read_text().splitlines()][:6]
    for r in rows:
        (root / r["file_name"]).write_bytes((Path(surd) / r["file_name"]).read_bytes())
        r["canonical"] = r["text"].replace("robots", "red robots")
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    kw = dict(data=str(root), batch_size=3, max_steps=2, checkpoint_every=0, cache_latents=True, cache_text=True,
              feature_cache=str(tmp_path / "features"), identity_weight=1.0)
    plain = train(cfg(output_dir=str(tmp_path / "plain"), row_cache=str(tmp_path / "rows"), spell_fraction=0.5, **kw))
    canon = train(cfg(output_dir=str(tmp_path / "with"), row_cache=str(tmp_path / "rows"), spell_fraction=0.25,
                      canonical_column="canonical", canonical_fraction=0.75, **kw))
    files = sorted((tmp_path / "rows").glob("rows-*.pt"), key=lambda f: f.stat().st_mtime_ns)
    assert len(files) == 2  # the canonical captions are part of the key
    kept = torch.load(files[1], weights_only=True)["text"]
    assert kept[5].shape == kept[0].shape and not torch.equal(kept[5], kept[0])  # canonical != simple
    assert all(r["identity"] > 0 for r in canon) and plain[0]["noise"] != canon[0]["noise"]
    with pytest.raises(ValueError, match=r"no column\(s\) \['kanon'\]"):
        train(cfg(output_dir=str(tmp_path / "x"), canonical_column="kanon", canonical_fraction=0.5, **kw))
    with pytest.raises(ValueError, match="items have no 'canonical' key"):
        train(cfg(output_dir=str(tmp_path / "y"), canonical_column="canonical", canonical_fraction=0.5,
                  **{**kw, "data": None}), dataset=RowsDataset([(np.zeros((32, 32, 3), np.uint8), "a", "b")] * 3,
                                                               resolution=32))


def test_latest_checkpoint_and_pruning_skip_unfinished_folders(tmp_path):
    ckdir = tmp_path / "checkpoints"
    for name in ("checkpoint-2", "checkpoint-10", "checkpoint-4", ".tmp-checkpoint-12", "checkpoint-x"):
        (ckdir / name).mkdir(parents=True)
        (ckdir / name / "trainer_state.json").write_text("{}")
    (ckdir / "checkpoint-6").mkdir()  # no trainer_state.json: torn, never "latest"
    assert find_checkpoint(tmp_path, "latest").name == "checkpoint-10"
    prune_checkpoints(tmp_path, 2)
    assert sorted(p.name for p in ckdir.iterdir()) == [".tmp-checkpoint-12", "checkpoint-10", "checkpoint-6",
                                                       "checkpoint-x"]


def test_continue_from_a_saved_adapter_checks_both_widths(adapter_folder):
    cfg = make_config(TINY_YAML, adapter=adapter_folder)
    assert _make_adapter(cfg, text_dim=32, llm_dim=16).config.eta == 0.25  # the saved one, as saved
    with pytest.raises(ValueError, match="llm_dim 16"):
        _make_adapter(cfg, text_dim=32, llm_dim=384)
    with pytest.raises(ValueError, match="does not match"):
        _make_adapter(cfg, text_dim=48, llm_dim=16)
    fresh = _make_adapter(make_config(TINY_YAML), text_dim=32, llm_dim=384)
    assert (fresh.config.text_dim, fresh.config.llm_dim, fresh.config.num_layers) == (32, 384, 1)
    assert fresh.config.residual is False
    assert _make_adapter(make_config(TINY_YAML, residual=True), text_dim=32, llm_dim=384).config.residual is True
    with pytest.raises(ValueError, match="trained with residual=False but the config says residual=True"):
        _make_adapter(make_config(TINY_YAML, adapter=adapter_folder, residual=True), text_dim=32, llm_dim=16)
    gated = _make_adapter(make_config(TINY_YAML, residual=True, gate="prompt", spell_fraction=0.5,
                                      identity_weight=1.0), text_dim=32, llm_dim=384)
    assert gated.config.gate == "prompt" and gated.gate_score.weight.shape == (1, 32)
    with pytest.raises(ValueError, match='trained with gate=None but the config says gate=prompt: set gate: null'):
        _make_adapter(make_config(TINY_YAML, adapter=adapter_folder, gate="prompt", spell_fraction=0.5,
                                  identity_weight=1.0), text_dim=32, llm_dim=16)
