"""Simple prompts for (image, complex prompt) pairs from a BLIP captioning model.

SURD's simple prompts are BLIP captions of the images; this makes the same for new data and
writes SURD metadata rows ``{"file_name", "text", "prompt", ...}`` (extra columns kept).

Where the complex prompts come from, first match wins: a ``prompts`` file (.jsonl/.csv/.parquet
with file_name and prompt), the image folder's own metadata file, or a ``<image stem>.txt``
next to each image. Rows that already have a simple prompt are kept unless ``overwrite``; rows
whose image is missing or unreadable keep an empty ``text`` and are counted in the report (the
training loader skips them, with counts, before training).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image
from tqdm.auto import tqdm

from .data import _clean_str, find_metadata, read_table

logger = logging.getLogger(__name__)

DEFAULT_CAPTIONER = "Salesforce/blip-image-captioning-base"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def load_captioner(model: str = DEFAULT_CAPTIONER, device: str | torch.device | None = None,
                   dtype: torch.dtype | None = None):
    """(BlipForConditionalGeneration in eval mode, BlipProcessor) from a hub id or folder."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from .devices import default_device

    device = torch.device(device) if device is not None else default_device()
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    processor = BlipProcessor.from_pretrained(model)
    net = BlipForConditionalGeneration.from_pretrained(model).to(device=device, dtype=dtype).eval()
    return net, processor


@torch.no_grad()
def caption_images(images: Sequence[Image.Image], model, processor, max_new_tokens: int = 40,
                   num_beams: int = 1) -> list[str]:
    """One caption per image (a batch)."""
    inputs = processor(images=[im.convert("RGB") for im in images], return_tensors="pt")
    pixel_values = inputs["pixel_values"].to(device=model.device, dtype=model.dtype)
    out = model.generate(pixel_values=pixel_values, max_new_tokens=max_new_tokens, num_beams=num_beams)
    return [t.strip() for t in processor.batch_decode(out, skip_special_tokens=True)]


@dataclass
class CaptionReport:
    out: Path
    rows: int
    captioned: int
    kept: int
    bad_images: list[str] = field(default_factory=list)
    no_prompt: int = 0

    def summary(self) -> str:
        s = f"{self.out}: {self.rows} rows, {self.captioned} captioned, {self.kept} kept their caption"
        if self.bad_images:
            s += f", {len(self.bad_images)} missing/unreadable images (e.g. {', '.join(self.bad_images[:3])})"
        if self.no_prompt:
            s += f", {self.no_prompt} without a complex prompt"
        return s


def _gather_rows(images_dir: Path, prompts: str | Path | None) -> tuple[list[dict], Path]:
    """Rows with file_name relative to the returned root folder."""
    if prompts is not None:
        table = read_table(prompts)
        return table.to_dict("records"), Path(prompts).parent
    try:
        meta = find_metadata(images_dir)
    except FileNotFoundError:
        meta = None
    if meta is not None:
        return read_table(meta).to_dict("records"), meta.parent
    rows = []
    for p in sorted(images_dir.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            side = p.with_suffix(".txt")
            rows.append({"file_name": p.name, "prompt": side.read_text(encoding="utf-8").strip() if side.exists() else ""})
    if not rows:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) and no metadata in {images_dir}")
    return rows, images_dir


def _load_image(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception:  # noqa: BLE001 - reported, never fatal
        return None


def write_jsonl(rows: list[dict], path: Path) -> None:
    """Atomically write metadata rows (NaN-free JSON)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            clean = {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
            f.write(json.dumps(clean, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)


def caption_folder(images: str | Path, model: str = DEFAULT_CAPTIONER, out: str | Path | None = None,
                   prompts: str | Path | None = None, batch_size: int = 16, max_new_tokens: int = 40,
                   num_beams: int = 1, device=None, overwrite: bool = False, progress: bool = True,
                   captioner=None) -> CaptionReport:
    """Caption the images of a folder and write SURD metadata to `out` (default images/metadata.jsonl).

    `captioner` = (model, processor) already loaded; otherwise `model` is loaded with
    `load_captioner`."""
    images_dir = Path(images)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {images_dir}")
    out = Path(out) if out else images_dir / "metadata.jsonl"
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    rows, root = _gather_rows(images_dir, prompts)
    for row in rows:
        for key in ("file_name", "text", "prompt"):
            row[key] = _clean_str(row.get(key))
    todo = [i for i, r in enumerate(rows) if overwrite or not r["text"]]
    bad: list[str] = []
    if todo:
        net, processor = captioner if captioner is not None else load_captioner(model, device=device)
        batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
        for batch in tqdm(batches, desc="captioning", unit="batch", disable=not progress):
            ok, imgs = [], []
            for i in batch:
                im = _load_image(root / rows[i]["file_name"]) if rows[i]["file_name"] else None
                if im is None:
                    bad.append(rows[i]["file_name"] or "<no file name>")
                    rows[i]["text"] = ""
                else:
                    ok.append(i)
                    imgs.append(im)
            if imgs:
                for i, text in zip(ok, caption_images(imgs, net, processor, max_new_tokens, num_beams)):
                    rows[i]["text"] = text
    for row in rows:  # file names relative to the metadata file, as an imagefolder expects
        if row["file_name"]:
            row["file_name"] = Path(os.path.relpath((root / row["file_name"]).resolve(), out.parent.resolve())).as_posix()
    ordered = [{"file_name": r["file_name"], "text": r["text"], "prompt": r["prompt"],
                **{k: v for k, v in r.items() if k not in ("file_name", "text", "prompt")}} for r in rows]
    write_jsonl(ordered, out)
    report = CaptionReport(out=out, rows=len(rows), captioned=len(todo) - len(bad), kept=len(rows) - len(todo),
                           bad_images=bad, no_prompt=sum(1 for r in rows if not r["prompt"]))
    (logger.warning if bad or report.no_prompt else logger.info)(report.summary())
    return report


__all__ = ["load_captioner", "caption_images", "caption_folder", "CaptionReport", "DEFAULT_CAPTIONER", "write_jsonl"]
