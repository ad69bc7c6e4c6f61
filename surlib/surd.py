"""The SURD release (hub dataset `zhongshsh/SURD`) as training data, with its teacher vectors.

The release has two files:

* `SURD.zip`: an HF imagefolder, images plus `metadata.jsonl` rows
  `{"file_name", "text": simple prompt, "prompt": complex prompt}`. Extracted, it is exactly what
  `surlib.data.SURDataset` reads (bad rows reported and dropped there); `surd_dataset` only finds
  the metadata file when the archive was unpacked one or two folders deeper.
* `39.pt`: a `torch.save`d dict {simple prompt: LLaMA-13B vector}, the raw output of decoder
  block 39 of 40 averaged over tokens, which the official trainer loads from
  `prompt2vec/13B/39.pt` and indexes by caption. `released_teacher_cache` turns it into the
  row-indexed `FeatureCache` the trainer reads (`teacher_vectors: path/to/39.pt` in the training
  config), so the 26 GB teacher is never loaded. Rows whose simple prompt has no vector are
  counted, reported once, and left out of the dataset (row indices stay 0..n-1).

Vectors are 1-D `(width,)` or `(1, width)`; one width for all, else the file is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch.utils.data import Dataset, Subset

from .data import SURDataset, dataset_texts, find_metadata
from .feature_cache import FeatureCache, dataset_fingerprint

logger = logging.getLogger(__name__)

SURD_REPO = "zhongshsh/SURD"     # hub dataset: SURD.zip and 39.pt
RELEASED_VECTORS = "39.pt"       # LLaMA-13B, block 39 of 40, mean over tokens, 5120-d


def find_surd_metadata(folder: str | Path) -> Path:
    """The metadata file of an extracted SURD.zip: in `folder` (or its `train/`), else the one
    `metadata.jsonl` one or two folders down (`unzip` keeps the archive's top folder)."""
    try:
        return find_metadata(folder)
    except FileNotFoundError:
        deeper = sorted(Path(folder).glob("*/metadata.jsonl")) + sorted(Path(folder).glob("*/*/metadata.jsonl"))
        if len(deeper) == 1:
            return deeper[0]
        if deeper:
            raise FileNotFoundError(f"several SURD metadata files under {folder}: "
                                    f"{', '.join(map(str, deeper))}; pass the folder of one") from None
        raise


def surd_dataset(folder: str | Path, **kwargs) -> SURDataset:
    """An extracted SURD.zip as a trainer dataset (kwargs go to `SURDataset`)."""
    return SURDataset(find_surd_metadata(folder), **kwargs)


def load_released_vectors(path: str | Path) -> dict[str, torch.Tensor]:
    """`39.pt` as {simple prompt: float32 vector (width,)}; refuses anything else, naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no teacher vectors at {path} (SURD's {RELEASED_VECTORS} from the hub dataset "
                                f"{SURD_REPO}: a dict {{simple prompt: tensor}})")
    try:
        # weights_only: a dict of strings and tensors needs no arbitrary unpickling.
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt, truncated or not a torch file: one message
        raise ValueError(f"cannot read teacher vectors {path}: corrupt, truncated, or not a torch.save file "
                         f"({type(e).__name__}: {e})") from e
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError(f"{path} holds {type(raw).__name__ if raw is not None else None}"
                         f"{' (empty)' if isinstance(raw, Mapping) else ''}, not a dict {{simple prompt: tensor}}")
    vectors: dict[str, torch.Tensor] = {}
    widths: dict[int, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: expected {{simple prompt (str): tensor}}, found a "
                             f"{type(key).__name__} key with a {type(value).__name__} value ({key!r})")
        if value.ndim == 2 and value.shape[0] == 1:
            value = value[0]
        if value.ndim != 1:
            raise ValueError(f"{path}: the vector of {key!r} has shape {tuple(value.shape)}; "
                             "accepted are (width,) and (1, width)")
        widths.setdefault(int(value.shape[0]), key)
        vectors[key] = value.float()
    if len(widths) > 1:
        examples = "; ".join(f"{w} (e.g. {k!r})" for w, k in sorted(widths.items()))
        raise ValueError(f"{path}: the vectors have different widths: {examples}; one teacher gives one width")
    return vectors


def match_vectors(texts: Sequence[str], vectors: Mapping[str, torch.Tensor]) -> list[torch.Tensor | None]:
    """Each simple prompt's vector, or None. Exact text first, then with surrounding whitespace
    stripped on both sides (the metadata reader strips prompts; the release's keys are raw)."""
    stripped: dict[str, torch.Tensor] = {}
    for key, value in vectors.items():
        stripped.setdefault(key.strip(), value)
    return [vectors.get(t, stripped.get(str(t).strip())) for t in texts]


class RowSubset(Subset):
    """The kept rows of a dataset, re-indexed 0..n-1 (the trainer's contract: `index` = position).

    It carries what the trainer reads from a dataset (`texts`, `set_epoch`, the image
    `transform`, and for the row cache `prompts`, `_files` and `root`), restricted to the kept rows."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]):
        super().__init__(dataset, [int(i) for i in indices])
        texts = dataset_texts(dataset)
        self.texts = [texts[i] for i in self.indices]
        for name in ("prompts", "_files"):
            if getattr(dataset, name, None) is not None:
                setattr(self, name, [getattr(dataset, name)[i] for i in self.indices])
        for name in ("transform", "root"):
            if hasattr(dataset, name):
                setattr(self, name, getattr(dataset, name))

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[self.indices[index]], "index": int(index)}

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        # torch's Subset fetches batches through this, bypassing __getitem__: keep the re-indexing.
        return [self[i] for i in indices]


def released_teacher_cache(dataset: Dataset, path: str | Path) -> tuple[Dataset, FeatureCache]:
    """(the rows that have a vector, their `FeatureCache`), from released vectors at `path`.

    Row i of the returned cache belongs to item i of the returned dataset: `dataset` itself when
    every row matched, else a `RowSubset`. Unmatched rows are reported in one log line (count and
    an example); none matching is an error."""
    vectors = load_released_vectors(path)
    texts = dataset_texts(dataset)
    matched = match_vectors(texts, vectors)
    keep = [i for i, v in enumerate(matched) if v is not None]
    missing = len(texts) - len(keep)
    if not keep:
        raise ValueError(f"none of the {len(texts)} simple prompts has a vector in {path} "
                         f"(e.g. {texts[0]!r}); the file holds {len(vectors)} vectors for other prompts, "
                         f"e.g. {next(iter(vectors))!r}")
    if missing:
        example = next(texts[i] for i, v in enumerate(matched) if v is None)
        logger.warning("teacher vectors %s: %d of %d rows have no vector for their simple prompt (e.g. %r); "
                       "those rows are skipped, %d remain", path, missing, len(texts), example, len(keep))
        dataset = RowSubset(dataset, keep)
    features = torch.stack([matched[i] for i in keep])
    kept_texts = [texts[i] for i in keep]
    manifest = {"model": f"released vectors {Path(path).name}", "source": str(path), "layer": None,
                "pooling": "mean", "width": int(features.shape[1]), "count": len(keep),
                "fingerprint": dataset_fingerprint(kept_texts), "skipped_rows": missing, "complete": True}
    return dataset, FeatureCache(features, manifest)


__all__ = ["surd_dataset", "find_surd_metadata", "load_released_vectors", "match_vectors", "RowSubset",
           "released_teacher_cache", "SURD_REPO", "RELEASED_VECTORS"]
