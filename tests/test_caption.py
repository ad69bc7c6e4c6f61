"""The captioning command: a tiny random BLIP, saved and loaded the way the command loads models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from surlib.data import SURDataset

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"] + "a an the of photo cat cats dog red blue two on grass".split()


@pytest.fixture(scope="module")
def blip_folder(tmp_path_factory):
    """Tiny random BlipForConditionalGeneration + BlipProcessor (local BertTokenizer, BlipImageProcessor)."""
    from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                              BlipProcessor)

    folder = tmp_path_factory.mktemp("blip")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]")
    processor = BlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer)
    torch.manual_seed(0)
    config = BlipConfig(
        text_config=dict(vocab_size=len(VOCAB), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=64, bos_token_id=5, pad_token_id=0,
                         sep_token_id=3, eos_token_id=3),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=32,
    )
    BlipForConditionalGeneration(config).eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


def _images(folder, n=5):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_caption_command_writes_surd_metadata(blip_folder, tmp_path):
    from train.caption import main

    images = _images(tmp_path / "imgs")
    rows = [{"file_name": f"img{i}.png", "prompt": f"masterpiece, cat {i}, 8k", "source": "lexica"} for i in range(5)]
    rows[1]["text"] = "a caption that is kept"
    rows.append({"file_name": "gone.png", "prompt": "dog, 8k"})  # image missing
    (images / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = images / "metadata.jsonl"
    assert main(["--images", str(images), "--model", blip_folder, "--out", str(out), "--batch-size", "2",
                 "--max-new-tokens", "5", "--device", "cpu", "--quiet"]) == 0
    written = _read(out)
    assert [r["file_name"] for r in written] == [f"img{i}.png" for i in range(5)] + ["gone.png"]
    assert all(list(r)[:3] == ["file_name", "text", "prompt"] for r in written)
    assert written[1]["text"] == "a caption that is kept"
    assert all(isinstance(r["text"], str) and r["text"] for r in written[:5])
    assert written[5]["text"] == "" and written[0]["source"] == "lexica" and written[2]["prompt"] == "masterpiece, cat 2, 8k"
    ds = SURDataset(images, resolution=16)  # what the trainer reads; the missing image is skipped
    assert len(ds) == 5 and ds.report.counts == {"missing_image": 1}


def test_caption_from_sidecar_prompts_to_another_folder(blip_folder, tmp_path):
    from surlib.captioning import caption_folder, load_captioner

    images = _images(tmp_path / "imgs", n=3)
    for i in range(3):
        (images / f"img{i}.txt").write_text(f"red cat {i}, best quality\n")
    (images / "broken.png").write_bytes(b"not an image")
    captioner = load_captioner(blip_folder, device="cpu")
    report = caption_folder(images, out=tmp_path / "meta" / "metadata.jsonl", captioner=captioner, batch_size=8,
                            max_new_tokens=4, progress=False)
    assert (report.rows, report.captioned, report.bad_images, report.no_prompt) == (4, 3, ["broken.png"], 1)
    written = _read(tmp_path / "meta" / "metadata.jsonl")
    assert written[1]["file_name"] == "../imgs/img0.png" and written[1]["prompt"] == "red cat 0, best quality"
    with pytest.raises(FileNotFoundError):
        caption_folder(tmp_path / "missing", captioner=captioner)
