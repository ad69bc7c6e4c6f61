"""The evaluation runner end to end on the tiny preset (random UNet, 64 px, 2 steps), resume after
a crash, the CLI, and the VQA / CLIP judges' plumbing with tiny random models saved and loaded
back through the judges' own loaders."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

from eval.brisque_weights import DEFAULT_SHARED, WEIGHTS_NAME  # noqa: E402
from eval.judges import CLIPColorJudge, Judge, Verdict, make_judge, register_judge  # noqa: E402
from eval.runner import EvalConfig, read_judgments, run_eval  # noqa: E402
from eval.suites import load_suite  # noqa: E402
from surlib.names import CATEGORIES  # noqa: E402

ROWS = [
    {"id": "c1", "category": "counting", "prompt": "three red apples on a table",
     "expect": {"object": "apple", "count": 3},
     "questions": [{"question": "How many apples are there?", "answers": ["3"], "kind": "number"}]},
    {"id": "k1", "category": "color", "prompt": "a blue car in the street",
     "expect": {"object": "car", "color": "blue"},
     "questions": [{"question": "What color is the car?", "answers": ["blue"], "kind": "color"}]},
    {"id": "a1", "category": "action", "prompt": "a man riding a bicycle",
     "expect": {"object": "man", "action": "riding a bicycle"},
     "questions": [{"question": "What is the man doing?", "answers": ["riding bike", "cycling"], "kind": "text"}]},
]


class ParityJudge(Judge):
    """Deterministic stand-in: an image is 'right' when its pixel sum is even."""

    name = "parity"

    def __init__(self):
        self.calls = []

    def judge(self, images, rows):
        self.calls.append(len(images))
        out = []
        for im in images:
            s = int(np.asarray(im, np.int64).sum())
            out.append(Verdict(answer=str(s % 7), correct=s % 2 == 0, details={"sum": s}))
        return out


class CountingPipe:
    """Counts the pairs generated (`calls`) and the batched calls that made them (`batches`)."""

    def __init__(self, pipe):
        self.pipe, self.calls, self.batches = pipe, 0, []

    def generate_pairs(self, prompts, seeds, **kwargs):
        self.calls += len(prompts)
        self.batches.append(len(prompts))
        return self.pipe.generate_pairs(prompts, seeds, **kwargs)


@pytest.fixture(scope="module")
def tiny_pipe():
    from surlib import load_preset

    pipe = load_preset("tiny", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(autouse=True)
def _torch_home(tmp_path_factory, monkeypatch):
    """A private torch hub cache: the BRISQUE weights get installed there, not in the user's."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))


needs_brisque = pytest.mark.skipif(not (DEFAULT_SHARED / WEIGHTS_NAME).is_file(),
                                   reason="BRISQUE weights are not available offline")


@pytest.fixture
def suite_path(tmp_path):
    p = tmp_path / "mini.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return p


def _cfg(out, suite_path, **kw):
    base = dict(out=str(out), suite=str(suite_path), preset="tiny", seeds=[0, 1], steps=2, guidance=7.5,
                judge="parity", n_boot=200, chunk=2, progress=False)
    base.update(kw)
    return EvalConfig(**base)


@needs_brisque
def test_end_to_end_and_resume_after_a_crash(tmp_path, suite_path, tiny_pipe):
    # An uninterrupted run, for reference.
    ref_out = tmp_path / "ref"
    ref = run_eval(_cfg(ref_out, suite_path), pipe=tiny_pipe, judge=ParityJudge())
    for name in ("judgments.jsonl", "results.csv", "summary.json", "report.md", "run_config.json",
                 "suite.jsonl", "figures/accuracy.png", "figures/brisque.png"):
        assert (ref_out / name).is_file(), name
    assert len(list((ref_out / "images").glob("*.png"))) == 12
    rows = read_judgments(ref_out / "judgments.jsonl")
    assert len(rows) == 12 and {r["variant"] for r in rows} == {"baseline", "adapter"}
    assert all(np.isfinite(r["brisque"]) for r in rows)
    assert ref["complete"] and ref["images"] == 12
    assert {a["category"] for a in ref["accuracy"]} == {"counting", "color", "action", "overall"}
    assert "brisque" in ref["quality"] and "TOST p=" in ref["quality"]["brisque"]["conclusion"]
    report = (ref_out / "report.md").read_text()
    for text in ("McNemar", "TOST", "figures/accuracy.png", "figures/brisque.png", "| steps | 2 |", "commit"):
        assert text in report, text

    # A run killed after 3 images, then resumed with the same command.
    out = tmp_path / "run"
    pipe = CountingPipe(tiny_pipe)

    class Boom(RuntimeError):
        pass

    written = []

    def crash(rec):
        written.append(rec)
        if len(written) == 3:
            raise Boom("injected")

    with pytest.raises(Boom):
        run_eval(_cfg(out, suite_path), pipe=pipe, judge=ParityJudge(), after_row=crash)
    assert len(read_judgments(out / "judgments.jsonl")) == 3
    assert pipe.calls == 2  # the first chunk of two pairs was generated
    judge = ParityJudge()
    run_eval(_cfg(out, suite_path), pipe=pipe, judge=judge)
    rows = read_judgments(out / "judgments.jsonl")
    keys = [(r["prompt_id"], r["seed"], r["variant"]) for r in rows]
    assert len(keys) == 12 and len(set(keys)) == 12  # nothing duplicated, nothing missing
    assert pipe.calls == 6  # saved images of the interrupted chunk were reused, not regenerated
    # Each chunk's missing pairs in one batched call: the resumed run's chunks are the half-judged
    # pair plus a new one (only the new one is generated), then two new ones, then the last one.
    assert pipe.batches == [2, 1, 2, 1]
    assert sum(judge.calls) == 9  # only the 9 missing images were judged

    # Same images, same verdicts and scores as the uninterrupted run.
    a = pd.read_csv(ref_out / "results.csv")
    b = pd.read_csv(out / "results.csv")
    cols = ["prompt_id", "seed", "variant", "correct", "brisque"]
    pd.testing.assert_frame_equal(a[cols], b[cols])

    # A third run has nothing to do; a torn last line is cut off and redone.
    with open(out / "judgments.jsonl", "a") as f:
        f.write('{"prompt_id": "a1", "se')
    run_eval(_cfg(out, suite_path), pipe=pipe, judge=ParityJudge())
    assert len(read_judgments(out / "judgments.jsonl")) == 12 and pipe.calls == 6

    # Resuming with another configuration is refused.
    with pytest.raises(ValueError, match="steps: 2 -> 3"):
        run_eval(_cfg(out, suite_path, steps=3), pipe=pipe, judge=ParityJudge())


@needs_brisque
def test_extra_quality_hook_and_limit(tmp_path, suite_path, tiny_pipe):
    calls = []

    def mean_brightness(images):
        calls.append(len(images))
        return [float(np.asarray(im).mean()) for im in images]

    from eval.measures import brisque_measure

    cfg = _cfg(tmp_path / "q", suite_path, seeds=[3], limit=1, categories=["counting", "color"],
               quality_margins={"brightness": 10.0})
    summary = run_eval(cfg, pipe=tiny_pipe, judge=ParityJudge(),
                       quality_fns={"brisque": brisque_measure(cfg), "brightness": mean_brightness})
    assert summary["images"] == 4 and calls == [4]  # one batched call per chunk
    assert summary["quality"]["brightness"]["margin"] == 10.0
    df = pd.read_csv(tmp_path / "q" / "results.csv")
    assert {"brisque", "brightness"} <= set(df.columns) and set(df["category"]) == {"counting", "color"}


@needs_brisque
def test_cli_runs_with_a_registered_judge(tmp_path, suite_path, tiny_pipe, monkeypatch, capsys):
    from eval import run, runner

    register_judge("parity", ParityJudge)
    monkeypatch.setattr(runner, "load_pipeline", lambda cfg, device=None: tiny_pipe)
    out = tmp_path / "cli"
    rc = run.main(["--preset", "tiny", "--suite", str(suite_path), "--seeds", "1", "--steps", "2",
                   "--judge", "parity", "--limit", "1", "--n-boot", "100", "--n-flips", "500", "--out", str(out),
                   "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "report:" in printed and "prompt-level sign-flip p=" in printed
    assert printed.index("prompt-level sign-flip") < printed.index("McNemar")
    cfg = json.loads((out / "run_config.json").read_text())
    assert cfg["seeds"] == [0] and cfg["steps"] == 2 and cfg["judge"] == "parity" and cfg["margin"] == 5.0
    assert cfg["n_flips"] == 500 and json.loads((out / "summary.json").read_text())["sign_flip"]["resamples"] == 500
    assert run.main(["--preset", "tiny", "--suite", "nope", "--out", str(out)]) == 2  # clear error, no trace


@pytest.mark.parametrize("kw, message", [
    (dict(seeds=[]), "at least one seed"),
    (dict(seeds=[1, 1]), "distinct"),
    (dict(chunk=0), "chunk must be >= 1"),
    (dict(gen_batch=0), "gen_batch must be >= 1"),
    (dict(margin=0), "margin must be positive"),
    (dict(n_flips=0), "n_flips and n_boot must be >= 1"),
    (dict(base="some/base"), "either a preset or --base"),
])
def test_bad_configs_are_refused_with_the_reason(tmp_path, suite_path, kw, message):
    with pytest.raises(ValueError, match=message):
        _cfg(tmp_path, suite_path, **kw)


def test_sampling_defaults_come_from_the_preset_unless_given(tmp_path):
    from eval.measures import PALETTE_DISTANCE_MARGIN
    from surlib.presets import PRESETS

    toy = EvalConfig(out=str(tmp_path), preset="toy")
    assert (toy.steps, toy.guidance) == (PRESETS["toy"].default_steps, PRESETS["toy"].default_guidance)
    assert (toy.steps, toy.guidance) != (50, 7.5)
    assert toy.quality == ["brisque", "palette_distance"]
    assert toy.quality_margins == {"palette_distance": PALETTE_DISTANCE_MARGIN}
    for suite in ("toy_heldout", "toy_spells", "toy_canonical"):  # every toy suite is scored on toy renders
        assert EvalConfig(out=str(tmp_path), preset="toy", suite=suite).quality == ["brisque", "palette_distance"]
    sd15 = EvalConfig(out=str(tmp_path), preset="sd15")
    assert (sd15.steps, sd15.guidance) == (50, 7.5)
    hub = EvalConfig(out=str(tmp_path), base="some/sd", adapter="some/adapter")
    assert (hub.steps, hub.guidance, hub.quality) == (50, 7.5, ["brisque"])
    given = EvalConfig(out=str(tmp_path), preset="toy", steps=7, guidance=0.0,
                       quality_margins={"palette_distance": 2.0})
    assert (given.steps, given.guidance, given.quality_margins) == (7, 0.0, {"palette_distance": 2.0})


def test_vqa_judge_needs_questions(tmp_path):
    p = tmp_path / "noq.jsonl"
    p.write_text(json.dumps({k: v for k, v in ROWS[0].items() if k != "questions"}) + "\n")

    class NeedsQuestions(ParityJudge):
        needs_questions = True

    with pytest.raises(ValueError, match="needs a 'questions' list"):
        run_eval(_cfg(tmp_path / "o", p), judge=NeedsQuestions())  # refused before any model loads


# --------------------------------------------------------------------------- judge plumbing

def _tiny_blip(folder):
    from transformers import (BertTokenizer, BlipConfig, BlipForQuestionAnswering, BlipImageProcessor,
                              BlipProcessor)

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"] + (
        "how many are there what color is the doing ? 0 1 2 3 4 5 6 three red blue yes no apple apples car "
        "man riding bike".split())
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]", model_max_length=32)
    text = dict(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_attention_heads=2,
                num_hidden_layers=1, max_position_embeddings=64, encoder_hidden_size=32, pad_token_id=0,
                bos_token_id=words.index("[DEC]"), sep_token_id=words.index("[SEP]"))
    vision = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=1,
                  image_size=32, patch_size=8)
    torch.manual_seed(0)
    model = BlipForQuestionAnswering(BlipConfig(text_config=text, vision_config=vision, projection_dim=32))
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                  tokenizer=tok).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def _tiny_clip(folder):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from surlib.tiny import tiny_clip_tokenizer

    tok = tiny_clip_tokenizer(folder / "tok")
    common = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=1, projection_dim=16)
    text = dict(vocab_size=len(tok), max_position_embeddings=77, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **common)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=dict(image_size=32, patch_size=8, **common),
                                 projection_dim=16))
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                  tokenizer=tok).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(n)]


def test_vqa_judge_plumbing_with_a_tiny_blip(tmp_path, suite_path):
    folder = _tiny_blip(tmp_path / "blip")
    judge = make_judge("vqa", model_id=str(folder), device="cpu", batch_size=2)
    rows = load_suite(suite_path).rows
    verdicts = judge.judge(_images(3), rows)
    assert len(verdicts) == 3
    for v, r in zip(verdicts, rows):
        assert isinstance(v.answer, str) and "[DEC]" not in v.answer
        assert v.details["questions"] == [q.question for q in r.questions]
        assert isinstance(v.correct, bool)
    # the verdict follows the normalised answer
    judge.answer = lambda images, questions: ["three", "Blue.", "he is riding a bike"][:len(images)]
    assert [v.correct for v in judge.judge(_images(3), rows)] == [True, True, True]
    judge.answer = lambda images, questions: ["4", "red", "walking"]
    assert [v.correct for v in judge.judge(_images(3), rows)] == [False, False, False]
    with pytest.raises(ValueError, match="3 rows"):
        judge.judge(_images(2), rows)


def test_clip_color_judge_plumbing_with_a_tiny_clip(tmp_path, suite_path):
    folder = _tiny_clip(tmp_path / "clip")
    judge = CLIPColorJudge(model_id=str(folder), device="cpu")
    assert len(judge.colors) >= 10
    color_rows = [r for r in load_suite(suite_path).rows if r.category == "color"]
    (v,) = judge.judge(_images(1), color_rows)
    assert v.answer in judge.colors and v.correct == (v.answer == "blue")
    assert sum(v.details["probs"].values()) == pytest.approx(1.0, abs=1e-3)
    assert len(set(v.details["probs"].values())) > 1  # the prompts differ per colour
    with pytest.raises(ValueError, match="color rows only"):
        judge.judge(_images(1), [r for r in load_suite(suite_path).rows if r.category == "counting"])
    assert judge.categories == ("color",)


def test_toy_judge_adapter(monkeypatch, suite_path):
    """The adapter around surlib.toy.judge.ToyJudge, with a fake ToyJudge of the agreed API."""
    import sys
    import types

    class FakeToyJudge:
        @classmethod
        def load(cls, path=None, device="cpu"):
            return cls()

        def judge(self, images):
            assert isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4
            return [{"count": 3, "color": "red", "action": "standing", "confidence": {"count": 0.9}},
                    {"count": 1, "color": "blue", "action": "standing"},
                    {"count": 1, "color": "blue", "action": "riding a bicycle"}]

    monkeypatch.setitem(sys.modules, "surlib.toy.judge", types.SimpleNamespace(ToyJudge=FakeToyJudge))
    judge = make_judge("toy")
    verdicts = judge.judge(_images(3), load_suite(suite_path).rows)
    assert [v.correct for v in verdicts] == [True, True, True]
    assert verdicts[0].answer == "3" and verdicts[0].details["predicted"]["color"] == "red"
    assert verdicts[0].details["confidence"] == {"count": 0.9}


def test_toy_judge_on_rendered_toy_scenes(tmp_path):
    """The real toy judge (when its trained weights are in assets/toy) through the adapter, on
    rendered test-split scenes: the rendered images are what a perfect model would draw."""
    from surlib.toy import judge as judge_mod
    from surlib.toy.prompts import simple_prompt
    from surlib.toy.render import render
    from surlib.toy.scene import scenes as toy_scenes

    if not judge_mod.DEFAULT_WEIGHTS.exists():
        pytest.skip("no trained toy judge in assets/toy yet")
    scenes = toy_scenes("test")
    scenes = scenes[::max(1, len(scenes) // 9)][:9]
    rows = [{"id": f"toy-{i}", "category": CATEGORIES[i % 3], "prompt": simple_prompt(sc),
             "expect": sc.to_dict()} for i, sc in enumerate(scenes)]
    p = tmp_path / "toy.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = load_suite(p)
    images = [render(sc, seed=i) for i, sc in enumerate(scenes)]
    verdicts = make_judge("toy").judge(images, suite.rows)
    assert len(verdicts) == 9 and sum(v.correct for v in verdicts) >= 8, [(v.answer, r.target) for v, r in zip(verdicts, suite.rows)]


def test_rank_files_of_several_processes_are_merged_without_duplicates(tmp_path):
    from eval.records import read_run_rows
    from eval.runner import merge_rank_files

    def row(pid, v):
        return json.dumps({"prompt_id": pid, "seed": 0, "variant": v, "correct": True}) + "\n"

    (tmp_path / "judgments.jsonl").write_text(row("a", "baseline") + row("a", "adapter"))
    (tmp_path / "judgments.rank0.jsonl").write_text(row("a", "adapter") + row("b", "baseline"))
    (tmp_path / "judgments.rank1.jsonl").write_text(row("b", "adapter") + '{"prompt_id": "c", "se')  # torn
    assert len(read_run_rows(tmp_path)) == 5
    merge_rank_files(tmp_path)
    rows = read_judgments(tmp_path / "judgments.jsonl")
    assert [(r["prompt_id"], r["variant"]) for r in rows] == [
        ("a", "baseline"), ("a", "adapter"), ("b", "baseline"), ("b", "adapter")]
    assert not list(tmp_path.glob("judgments.rank*.jsonl"))


def test_quality_measures_are_named_by_registration_only(tmp_path, monkeypatch):
    from eval.measures import QUALITY, quality_fns, register_quality

    monkeypatch.setattr("eval.measures.QUALITY", dict(QUALITY))
    cfg = EvalConfig(out=str(tmp_path), preset="tiny", quality=["brisque", "os.path:getsize"])
    with pytest.raises(ValueError, match="unknown quality measure.*os.path:getsize"):
        quality_fns(cfg)
    register_quality("brightness", lambda cfg: lambda images: [float(np.asarray(im).mean()) for im in images])
    fns = quality_fns(EvalConfig(out=str(tmp_path), preset="tiny", quality=["brisque", "brightness"]))
    assert list(fns) == ["brisque", "brightness"]
    assert fns["brightness"]([np.full((4, 4, 3), 10, np.uint8)]) == [10.0]


# --------------------------------------------------------------------------- model hashes, vocabulary

def _brightness(images):
    return [float(np.asarray(im).mean()) for im in images]


def _run_tiny(cfg, pipe):
    return run_eval(cfg, pipe=pipe, judge=ParityJudge(), quality_fns={"bright": _brightness})


def _fake_adapter(folder, weights=b"weights v1"):
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text('{"eta": 1.0}')
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(weights)
    (folder / "README.md").write_text("not a weight file")
    return folder


def _first_run_with_an_adapter(tmp_path, suite_path, pipe):
    """A one-prompt run with a fake adapter folder: (adapter folder, run folder, config, run_config.json)."""
    adapter = _fake_adapter(tmp_path / "adapter")
    out = tmp_path / "run"
    cfg = _cfg(out, suite_path, adapter=str(adapter), seeds=[0], limit=1, categories=["counting"])
    _run_tiny(cfg, pipe)
    return adapter, out, cfg, json.loads((out / "run_config.json").read_text())


def test_resume_is_refused_after_the_adapter_weights_change(tmp_path, suite_path, tiny_pipe):
    from eval import config as config_mod

    adapter, out, cfg, rec = _first_run_with_an_adapter(tmp_path, suite_path, tiny_pipe)
    files = rec["model_files"]["adapter"]["files"]
    assert sorted(files) == ["config.json", "diffusion_pytorch_model.safetensors"]  # README.md is not hashed
    import hashlib
    assert files["diffusion_pytorch_model.safetensors"]["sha256"] == hashlib.sha256(b"weights v1").hexdigest()
    assert rec["model_sha256"]["adapter"] == rec["model_files"]["adapter"]["sha256"]
    assert rec["model_sha256"]["base"] is None  # the tiny preset builds its base in memory
    _run_tiny(cfg, tiny_pipe)  # unchanged: resumes

    (adapter / "README.md").write_text("edited notes")  # not a weight file: still resumes
    _run_tiny(cfg, tiny_pipe)
    (adapter / "diffusion_pytorch_model.safetensors").write_bytes(b"weights v2, retrained")
    with pytest.raises(ValueError) as err:
        _run_tiny(cfg, tiny_pipe)
    msg = str(err.value)
    assert str(adapter / "diffusion_pytorch_model.safetensors") + " (contents changed)" in msg
    assert "config.json" not in msg and "use a new --out folder" in msg and str(out) in msg

    # the hash of an unchanged file is taken from the folder's record (size + mtime), not reread
    config_mod._HASHES.clear()
    (adapter / "diffusion_pytorch_model.safetensors").write_bytes(b"weights v1")
    stat = (adapter / "diffusion_pytorch_model.safetensors").stat()
    old = {"sha256": "recorded", "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    assert config_mod.file_sha256(adapter / "diffusion_pytorch_model.safetensors", old)["sha256"] == "recorded"
    config_mod._HASHES.clear()
    assert config_mod.file_sha256(adapter / "diffusion_pytorch_model.safetensors", {**old, "size": 1})["sha256"] \
        == hashlib.sha256(b"weights v1").hexdigest()


def test_a_folder_from_before_model_hashes_resumes_with_a_warning(tmp_path, suite_path, tiny_pipe):
    adapter, out, cfg, rec = _first_run_with_an_adapter(tmp_path, suite_path, tiny_pipe)
    legacy = {k: v for k, v in rec.items() if k not in ("model_files", "model_sha256")}
    (out / "run_config.json").write_text(json.dumps(legacy))
    with pytest.warns(UserWarning, match="records no model hashes"):
        _run_tiny(cfg, tiny_pipe)
    assert json.loads((out / "run_config.json").read_text())["model_sha256"] == rec["model_sha256"]


def test_toy_preset_hashes_base_adapter_and_judge_apart(tmp_path):
    from eval.config import model_record, model_sources
    from surlib.toy.base_model import ASSETS

    cfg = EvalConfig(out=str(tmp_path), preset="toy")
    src = model_sources(cfg)
    assert src["base"][1] == ASSETS and {"judge", "adapter", "text_encoder"} <= set(src)
    rec = model_record(cfg)
    base = rec["base"]["files"] or {}
    assert not any(rel.startswith("adapter/") or rel.startswith("judge") for rel in base)
    if (ASSETS / "unet" / "config.json").exists():
        assert "unet/config.json" in base
    hub = model_sources(EvalConfig(out=str(tmp_path), base="no-such-org/no-such-model", adapter=str(tmp_path)))
    assert hub["base"][0] == "hub id no-such-org/no-such-model" and hub["base"][1] is None  # the id only


def test_toy_runs_record_unknown_words_and_leave_those_prompts_out_of_accuracy(tmp_path, suite_path, tiny_pipe,
                                                                              monkeypatch):
    """A tiny fake vocabulary check: "bicycle" is outside it, so the action prompt is excluded."""
    monkeypatch.setattr("surlib.toy.prompts.unknown_words",
                        lambda prompt: [w for w in prompt.split() if w in ("bicycle", "street")], raising=False)
    out = tmp_path / "toy"
    cfg = _cfg(out, suite_path, judge="toy", seeds=[0, 1], categories=["counting", "color", "action"])
    summary = _run_tiny(cfg, tiny_pipe)
    rows = read_judgments(out / "judgments.jsonl")
    assert {r["prompt_id"]: tuple(r["unknown_words"]) for r in rows} == {
        "c1": (), "k1": ("street",), "a1": ("bicycle",)}
    uw = summary["unknown_words"]
    assert (uw["prompts_excluded"], uw["prompts_checked"], uw["images_excluded"]) == (2, 3, 8)
    assert uw["prompts"] == {"k1": ["street"], "a1": ["bicycle"]}
    assert {a["category"] for a in summary["accuracy"]} == {"counting", "overall"}
    assert summary["prompt_test"][-1]["prompts"] == 1 and summary["mcnemar"][-1]["pairs"] == 2
    assert summary["quality"]["bright"]["pairs"] == 3  # quality still counts every prompt's images
    report = (out / "report.md").read_text()
    assert "## Prompts outside the toy vocabulary" in report and "| a1 | bicycle |" in report
    assert "2 of 3 prompts have words the toy world never uses" in report
    assert list(pd.read_csv(out / "results.csv")["unknown_words"].fillna("")) .count("bicycle") == 4

    # a judge other than the toy judge: no vocabulary check, nothing left out
    other = run_eval(_cfg(tmp_path / "parity", suite_path), pipe=tiny_pipe, judge=ParityJudge(),
                     quality_fns={"bright": _brightness})
    assert other["unknown_words"] is None and other["prompt_test"][-1]["prompts"] == 3
    assert "unknown_words" not in read_judgments(tmp_path / "parity" / "judgments.jsonl")[0]
