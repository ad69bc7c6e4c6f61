"""Training data in the SURD layout: (image, simple prompt, complex prompt) rows.

The released SURD is an HF "imagefolder": images plus ``metadata.jsonl`` rows
``{"file_name", "text" (simple prompt), "prompt" (complex prompt)}``; extra columns are kept.
The same columns are read from ``metadata.csv`` / ``metadata.parquet`` or any such file.

Bad rows (no file name, missing or unreadable image, empty prompt, duplicate file) are found
*before* training, reported once with a count per reason, and dropped, so an epoch never
crashes half-way. Item ``i`` of a dataset is row ``i`` of the *clean* table; the LLM feature
cache is keyed by that index (never by caption text, which collides on duplicates).

Augmentation (random crop, random flip) is drawn from a generator seeded by
``(seed, epoch, index)``, not from the global RNG, so a resumed run sees exactly the images an
uninterrupted run would, with or without loader worker processes.

A dataset for the trainer is any map-style ``torch.utils.data.Dataset`` whose items are
``dict(pixel_values=(3, H, W) float in [-1, 1], text=str, prompt=str, index=int)`` (plus
``canonical=str`` for the trainer's `canonical_column`) with ``index`` equal to the item's
position; ``RowsDataset`` wraps in-memory or on-the-fly rows (e.g. the toy world's renders)
into one.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

logger = logging.getLogger(__name__)

METADATA_NAMES = ("metadata.jsonl", "metadata.csv", "metadata.parquet")
REASONS = ("missing_file_name", "missing_image", "unreadable_image", "empty_text", "empty_prompt",
           "empty_canonical", "duplicate_file")
IMAGE_CHECKS = ("full", "header", "exists")
_SEED_MOD = 2**63 - 1  # torch generator seeds are 64-bit


# --------------------------------------------------------------------------- metadata files
def find_metadata(source: str | Path, split: str = "train") -> Path:
    """The metadata file of a folder (``metadata.{jsonl,csv,parquet}``, or in ``<split>/``) or the file itself."""
    source = Path(source)
    if source.is_file():
        return source
    if not source.is_dir():
        raise FileNotFoundError(f"training data not found: {source} is neither a folder nor a file")
    for folder in (source, source / split):
        for name in METADATA_NAMES:
            if (folder / name).is_file():
                return folder / name
    raise FileNotFoundError(
        f"no metadata file in {source} (looked for {', '.join(METADATA_NAMES)} there and in {split}/); "
        "an imagefolder needs metadata.jsonl rows {\"file_name\", \"text\", \"prompt\"}"
    )


def read_table(path: str | Path) -> pd.DataFrame:
    """A metadata file (.jsonl / .json lines / .csv / .parquet) as a DataFrame, strings kept as strings."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        rows = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: not a JSON object ({e.msg})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
                rows.append(row)
        return pd.DataFrame(rows)
    if suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if suffix == ".parquet":
        try:
            return pd.read_parquet(path)
        except ImportError as e:
            raise ImportError(f"reading {path} needs pyarrow or fastparquet (`pip install pyarrow`)") from e
    raise ValueError(f"unsupported metadata format {suffix!r} ({path}); use .jsonl, .csv or .parquet")


def _clean_str(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


# --------------------------------------------------------------------------- bad rows
@dataclass
class DataReport:
    """What was dropped and why: counts per reason, and a few example file names per reason."""

    total: int
    kept: int
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return self.total - self.kept

    def summary(self) -> str:
        if not self.dropped:
            return f"all {self.total} rows usable"
        parts = ", ".join(f"{k}: {v} (e.g. {', '.join(self.examples.get(k, [])[:3])})"
                          for k, v in self.counts.items() if v)
        return f"skipped {self.dropped} of {self.total} rows - {parts}; {self.kept} rows remain"


def _image_ok(path: Path, check: str) -> str | None:
    """None if the image is usable, else the reason."""
    if not path.is_file():
        return "missing_image"
    if check == "exists":
        return None
    try:
        with Image.open(path) as im:
            if check == "header":
                im.verify()
            else:
                im.convert("RGB").load()
    except Exception:  # noqa: BLE001 - any decoder error means the row cannot be trained on
        return "unreadable_image"
    return None


def clean_rows(frame: pd.DataFrame, root: Path, image_column: str = "file_name", text_column: str = "text",
               prompt_column: str = "prompt", check_images: str = "full", num_threads: int = 4,
               canonical_column: str | None = None) -> tuple[pd.DataFrame, DataReport]:
    """Drop unusable rows; returns the clean table (fresh 0..n-1 index) and the report.
    `canonical_column` (optional): a column that must be non-empty too (the trainer's
    `canonical_column`)."""
    if check_images not in IMAGE_CHECKS:
        raise ValueError(f"check_images must be one of {IMAGE_CHECKS}, got {check_images!r}")
    columns = (image_column, text_column, prompt_column) + ((canonical_column,) if canonical_column else ())
    missing_cols = [c for c in columns if c not in frame.columns]
    if missing_cols:
        raise ValueError(
            f"metadata has no column(s) {missing_cols}; found {list(frame.columns)}. SURD rows are "
            f"{{\"file_name\", \"text\" (simple prompt), \"prompt\" (complex prompt)}}; other names can be "
            "set with image_column / text_column / prompt_column / canonical_column"
        )
    frame = frame.copy()
    for col in columns:
        frame[col] = [_clean_str(v) for v in frame[col]]
    canonicals = frame[canonical_column] if canonical_column else ["-"] * len(frame)
    reasons: list[str | None] = [None] * len(frame)
    seen: set[str] = set()
    to_check: list[int] = []
    for i, (name, text, prompt, canonical) in enumerate(zip(frame[image_column], frame[text_column],
                                                           frame[prompt_column], canonicals)):
        if not name:
            reasons[i] = "missing_file_name"
        elif name in seen:
            reasons[i] = "duplicate_file"
        else:
            seen.add(name)
            reasons[i] = ("empty_text" if not text else "empty_prompt" if not prompt
                          else "empty_canonical" if not canonical else None)
            to_check.append(i)
    names = frame[image_column].tolist()
    with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
        results = pool.map(lambda i: _image_ok(root / names[i], check_images), to_check)
        for i, reason in zip(to_check, results):
            reasons[i] = reason or reasons[i]  # a missing or broken image is the first reason given
    counts = Counter(r for r in reasons if r)
    examples: dict[str, list[str]] = {}
    for name, r in zip(names, reasons):
        if r and len(examples.setdefault(r, [])) < 5:
            examples[r].append(name or "<no file name>")
    keep = [r is None for r in reasons]
    clean = frame[keep].reset_index(drop=True)
    report = DataReport(total=len(frame), kept=len(clean),
                        counts={k: counts[k] for k in REASONS if counts.get(k)}, examples=examples)
    return clean, report


# --------------------------------------------------------------------------- transforms
class ImageTransform:
    """Resize (shorter side), center or random crop, optional random flip, to [-1, 1] tensor.

    Randomness comes from the generator passed in, so the same (seed, epoch, index) always
    gives the same picture.
    """

    def __init__(self, resolution: int = 512, center_crop: bool = True, random_flip: bool = False):
        if resolution < 8:
            raise ValueError(f"resolution must be at least 8, got {resolution}")
        self.resolution, self.center_crop, self.random_flip = int(resolution), bool(center_crop), bool(random_flip)

    @property
    def deterministic(self) -> bool:
        return self.center_crop and not self.random_flip

    def __call__(self, image, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(image, generator).pixel_values

    def apply(self, image, generator: torch.Generator | None = None) -> "TransformedImage":
        """The tensor plus where it came from: the image's size before resizing and the top-left
        corner of the crop in the resized image, both (row, column) as SDXL's size conditioning
        takes them (after a flip, the corner of the flipped crop)."""
        image = to_pil(image)
        original = (image.height, image.width)
        res = self.resolution
        image = TF.resize(image, res, interpolation=InterpolationMode.BILINEAR, antialias=True)
        w, h = image.size
        if self.center_crop:
            top, left = int(round((h - res) / 2.0)), int(round((w - res) / 2.0))  # as TF.center_crop
            image = TF.center_crop(image, [res, res])
        else:
            top = int(torch.randint(0, h - res + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - res + 1, (1,), generator=generator))
            image = TF.crop(image, top, left, res, res)
        if self.random_flip and float(torch.rand((), generator=generator)) < 0.5:
            image = TF.hflip(image)
            left = w - res - left
        return TransformedImage(TF.normalize(TF.to_tensor(image), [0.5], [0.5]), original, (top, left))


class TransformedImage(NamedTuple):
    pixel_values: torch.Tensor
    original_size: tuple[int, int]
    crop_top_left: tuple[int, int]


def to_pil(image) -> Image.Image:
    """PIL RGB from a PIL image, a uint8 (H, W, 3) array, or a uint8 / [0, 1] float (3, H, W) tensor."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 3 and t.shape[0] in (1, 3):
            t = t.permute(1, 2, 0)
        image = t.numpy()
        if image.dtype != np.uint8:
            image = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8 (H, W, 3); got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image arrays must be (H, W, 3); got shape {arr.shape}")
    return Image.fromarray(arr[..., :3] if arr.shape[-1] != 1 else np.repeat(arr, 3, -1))


class _Augmented(Dataset):
    """Shared part: per-sample augmentation seeded by (seed, epoch, index)."""

    def __init__(self, transform: ImageTransform, seed: int = 0):
        self.transform, self.seed, self.epoch = transform, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _generator(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index) % _SEED_MOD)

    def _item(self, index: int, image, text: str, prompt: str, canonical: str | None = None) -> dict[str, Any]:
        done = self.transform.apply(image, self._generator(index))
        item = {"pixel_values": done.pixel_values, "text": text, "prompt": prompt, "index": index,
                "original_size": done.original_size, "crop_top_left": done.crop_top_left}
        if canonical is not None:
            item["canonical"] = canonical
        return item


class SURDataset(_Augmented):
    """SURD-format rows from a folder or metadata file, bad rows reported and dropped up front.

    `canonical_column`: an extra column whose text each item also carries as ``canonical`` (a
    caption the base already renders right, e.g. the toy data's; the trainer's identity rows)."""

    def __init__(self, source: str | Path, resolution: int = 512, center_crop: bool = True,
                 random_flip: bool = False, image_column: str = "file_name", text_column: str = "text",
                 prompt_column: str = "prompt", image_root: str | Path | None = None,
                 check_images: str = "full", split: str = "train", seed: int = 0, max_rows: int | None = None,
                 canonical_column: str | None = None):
        super().__init__(ImageTransform(resolution, center_crop, random_flip), seed)
        self.metadata_path = find_metadata(source, split)
        self.root = Path(image_root) if image_root else self.metadata_path.parent
        frame = read_table(self.metadata_path)
        if max_rows is not None:
            frame = frame.iloc[: int(max_rows)]
        self.image_column, self.text_column, self.prompt_column = image_column, text_column, prompt_column
        self.frame, self.report = clean_rows(frame, self.root, image_column, text_column, prompt_column, check_images,
                                             canonical_column=canonical_column)
        msg = f"{self.metadata_path}: {self.report.summary()}"
        (logger.warning if self.report.dropped else logger.info)(msg)
        if not len(self.frame):
            raise ValueError(f"{self.metadata_path}: no usable rows ({self.report.summary()})")
        self.texts: list[str] = self.frame[text_column].tolist()
        self.prompts: list[str] = self.frame[prompt_column].tolist()
        self.canonicals: list[str] | None = self.frame[canonical_column].tolist() if canonical_column else None
        self._files: list[str] = self.frame[image_column].tolist()

    def __len__(self) -> int:
        return len(self.frame)

    def row(self, index: int) -> dict[str, Any]:
        """The full metadata row (extra columns included) of clean item `index`."""
        return self.frame.iloc[index].to_dict()

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.root / self._files[index]
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
        except Exception as e:
            raise RuntimeError(f"image {path} became unreadable after the data check: {e}") from e
        canonical = self.canonicals[index] if self.canonicals is not None else None
        return self._item(index, image, self.texts[index], self.prompts[index], canonical)


class RowsDataset(_Augmented):
    """Rows held in memory or made on the fly, as a trainer dataset.

    ``rows`` is any sequence (``len`` and ``rows[i]``) whose items are ``(image, text, prompt)``
    tuples or dicts with those keys; ``image`` is a PIL image or a uint8 ``(H, W, 3)`` array.
    A lazy sequence that renders in ``__getitem__`` works (e.g. the toy world's renderer). Pass
    ``texts`` when reading a row is expensive: the LLM feature cache needs every simple prompt.
    """

    def __init__(self, rows: Sequence, resolution: int = 64, center_crop: bool = True, random_flip: bool = False,
                 seed: int = 0, texts: Sequence[str] | None = None):
        super().__init__(ImageTransform(resolution, center_crop, random_flip), seed)
        self.rows = rows
        if texts is None:
            texts = [self._unpack(rows[i])[1] for i in range(len(rows))]
        if len(texts) != len(rows):
            raise ValueError(f"{len(texts)} texts for {len(rows)} rows")
        self.texts = [str(t) for t in texts]

    @staticmethod
    def _unpack(row) -> tuple[Any, str, str]:
        if isinstance(row, dict):
            try:
                return row["image"], row["text"], row["prompt"]
            except KeyError as e:
                raise KeyError(f"row dicts need keys image, text, prompt; missing {e}") from None
        image, text, prompt = row
        return image, text, prompt

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, text, prompt = self._unpack(self.rows[index])
        return self._item(index, image, str(text), str(prompt))


# --------------------------------------------------------------------------- loading helpers
def collate(items: list[dict]) -> dict[str, Any]:
    """Stack pixel values and indices; keep texts and prompts (and canonical captions, when every
    item has one) as lists. `original_size` and `crop_top_left` (SDXL's size conditioning) become
    (B, 2) tensors when every item has them."""
    batch = {
        "pixel_values": torch.stack([it["pixel_values"] for it in items]).contiguous(),
        "text": [it["text"] for it in items],
        "prompt": [it["prompt"] for it in items],
        "index": torch.tensor([int(it["index"]) for it in items], dtype=torch.long),
    }
    for key in ("original_size", "crop_top_left"):
        if all(key in it for it in items):
            batch[key] = torch.tensor([list(it[key]) for it in items], dtype=torch.long)
    if all("canonical" in it for it in items):
        batch["canonical"] = [it["canonical"] for it in items]
    return batch


def dataset_texts(dataset: Dataset) -> list[str]:
    """Every simple prompt in item order (``dataset.texts`` when present, else read item by item)."""
    texts = getattr(dataset, "texts", None)
    if texts is not None:
        return [str(t) for t in texts]
    logger.warning("dataset has no `texts` attribute: reading every item once to collect simple prompts")
    return [str(dataset[i]["text"]) for i in range(len(dataset))]


def check_item(dataset: Dataset, canonical_column: str | None = None) -> None:
    """Refuse a dataset whose items do not follow the trainer's contract (checked on item 0);
    with `canonical_column` set, its items must carry their ``canonical`` caption too."""
    if len(dataset) == 0:
        raise ValueError("the training dataset is empty")
    item = dataset[0]
    if not isinstance(item, dict):
        raise TypeError(f"dataset items must be dicts, got {type(item).__name__}")
    missing = [k for k in ("pixel_values", "text", "prompt", "index") if k not in item]
    if missing:
        raise KeyError(f"dataset items need pixel_values, text, prompt, index; missing {missing}")
    px = item["pixel_values"]
    if not isinstance(px, torch.Tensor) or px.ndim != 3 or px.shape[0] != 3:
        raise ValueError(f"pixel_values must be a (3, H, W) tensor, got {getattr(px, 'shape', type(px))}")
    lo, hi = float(px.min()), float(px.max())
    if lo < -1.01 or hi > 1.01:
        raise ValueError(f"pixel_values must be in [-1, 1], got range [{lo:.3g}, {hi:.3g}] "
                         "(a [0, 255] or [0, 1] image was not normalised)")
    if int(item["index"]) != 0:
        raise ValueError(f"item 0 has index {item['index']}: `index` must be the item's position")
    if canonical_column and "canonical" not in item:
        raise ValueError(f"canonical_column is {canonical_column!r} but the dataset's items have no "
                         "'canonical' key (a folder's metadata column is read; a dataset passed in must add it)")


def synthetic_rows(n: int = 16, size: int = 64, seed: int = 0) -> list[tuple[np.ndarray, str, str]]:
    """Plumbing-only rows for smoke runs (train/configs/tiny.yaml): random-noise images with
    templated prompts. Nothing to learn from the pictures; real data is SURD or the toy world."""
    rng = np.random.default_rng(seed)
    colors, kinds = ("red", "green", "blue", "yellow"), ("robots", "cats", "people")
    rows = []
    for i in range(int(n)):
        count, color, kind = i % 5 + 1, colors[i % len(colors)], kinds[i % len(kinds)]
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        rows.append((image, f"{count} {color} {kind} standing on the grass",
                     f"masterpiece, {count} {kind}, {color}, standing, grass background, best quality"))
    return rows


def make_dataset(source: str | Path | Sequence | Dataset, **kwargs) -> Dataset:
    """A trainer dataset from a folder / metadata file, a Dataset, or a sequence of rows."""
    if isinstance(source, Dataset):
        return source
    if isinstance(source, (str, Path)):
        return SURDataset(source, **kwargs)
    if hasattr(source, "__len__") and hasattr(source, "__getitem__"):
        keep = {k: kwargs[k] for k in ("resolution", "center_crop", "random_flip", "seed") if k in kwargs}
        return RowsDataset(source, **keep)
    raise TypeError(f"cannot make a training dataset from {type(source).__name__}")


__all__ = ["SURDataset", "RowsDataset", "synthetic_rows", "ImageTransform", "DataReport", "clean_rows",
           "collate", "dataset_texts", "check_item", "find_metadata", "read_table", "make_dataset", "to_pil"]
