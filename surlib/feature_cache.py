"""The teacher's vectors of a dataset, computed once and kept on disk, row i = item i.

Shards are safetensors files keyed by ROW INDEX, never by caption text (the official cache, a
dict keyed by caption, collided on duplicate captions). A manifest records model, layer, pooling,
dtype, max_length, width, the dataset fingerprint (hash of the simple prompts in order) and the
count, and what a layer's vector is (`layer_output`: the raw block output, see surlib.teacher);
a cache whose manifest differs is rebuilt, never reused. Shards are written atomically, so an
interrupted extraction resumes with only the missing shards.

`FeatureCache` is also what the trainer gets from vectors computed elsewhere: `surlib.surd`
builds one from the SURD release's `39.pt`.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .teacher import MINILM_ID, LLMFeatureExtractor

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CACHE_FORMAT = 1
LAYER_OUTPUT = "block"  # the raw output of the chosen block, taken by a forward hook


def dataset_fingerprint(texts: Sequence[str]) -> str:
    """sha256 of the simple prompts in order (so any change of rows, order or text shows)."""
    h = hashlib.sha256()
    for t in texts:
        b = str(t).encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


@dataclass
class FeatureCache:
    """Teacher vectors of a dataset, row i = item i; `lookup(index)` for a batch."""

    features: torch.Tensor
    manifest: dict[str, Any]

    @property
    def width(self) -> int:
        return int(self.features.shape[1])

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def lookup(self, index: torch.Tensor) -> torch.Tensor:
        return self.features[index.cpu()]


def _shard_path(cache_dir: Path, k: int) -> Path:
    return cache_dir / f"shard-{k:05d}.safetensors"


def _read_manifest(cache_dir: Path) -> dict | None:
    try:
        return json.loads((cache_dir / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _differences(have: dict | None, want: dict) -> list[str]:
    if have is None:
        return ["no manifest"]
    if "layer_output" not in have and _same_without_hook(have):
        have = {**have, "layer_output": LAYER_OUTPUT}
    return [f"{k}: {have.get(k)!r} -> {v!r}" for k, v in want.items() if have.get(k) != v]


def _same_without_hook(manifest: dict) -> bool:
    """Caches written before `layer_output` existed read `hidden_states[layer + 1]`: the same raw
    block output for every block but a decoder's last one, where HF applies the final norm. They
    are kept for a block counted from the start and for MiniLM (an encoder: no final norm, so its
    last state is its last block's output); a layer counted from the end of another model is
    rebuilt."""
    return int(manifest.get("layer", -1)) >= 0 or manifest.get("model") == MINILM_ID


def _clear(cache_dir: Path) -> None:
    for p in list(cache_dir.glob("shard-*.safetensors")) + list(cache_dir.glob("*.tmp")):
        p.unlink()
    (cache_dir / MANIFEST).unlink(missing_ok=True)


def _shard_ok(path: Path, lo: int, hi: int, width: int | None) -> bool:
    try:
        t = load_file(str(path))
    except Exception:  # noqa: BLE001 - a torn or foreign file is simply recomputed
        return False
    idx, feats = t.get("indices"), t.get("features")
    return (idx is not None and feats is not None and torch.equal(idx, torch.arange(lo, hi))
            and feats.shape[0] == hi - lo and (width is None or feats.shape[1] == width))


def _expected(texts: Sequence[str], settings: dict, shard_size: int) -> dict:
    return {**{k: settings[k] for k in ("model", "layer", "pooling", "dtype", "max_length")},
            "fingerprint": dataset_fingerprint(texts), "count": len(texts), "shard_size": int(shard_size),
            "format": CACHE_FORMAT, "layer_output": LAYER_OUTPUT}


def load_feature_cache(cache_dir: str | Path, expected: dict | None = None) -> FeatureCache:
    """A complete cache; raises if it is incomplete or its manifest differs from `expected`."""
    cache_dir = Path(cache_dir)
    manifest = _read_manifest(cache_dir)
    if manifest is None or not manifest.get("complete"):
        raise FileNotFoundError(f"no complete LLM feature cache in {cache_dir}")
    if expected is not None:
        diff = _differences(manifest, expected)
        if diff:
            raise ValueError(f"LLM feature cache {cache_dir} does not match: {'; '.join(diff)}")
    n, size = manifest["count"], manifest["shard_size"]
    parts = [load_file(str(_shard_path(cache_dir, k)))["features"] for k in range(math.ceil(n / size))]
    features = torch.cat(parts) if parts else torch.zeros(0, manifest["width"])
    if features.shape != (n, manifest["width"]):
        raise ValueError(f"LLM feature cache {cache_dir} is corrupt: {tuple(features.shape)} != {(n, manifest['width'])}")
    return FeatureCache(features.float(), manifest)


def build_feature_cache(texts: Sequence[str], extractor: Callable, cache_dir: str | Path, shard_size: int = 1024,
                        progress: bool = True) -> FeatureCache:
    """Compute (or finish) the cache for `texts` with `extractor`.

    `extractor` is an `LLMFeatureExtractor` or anything with ``settings()``, ``width`` and
    ``__call__(texts) -> (n, width)``. Shards already on disk for the same manifest are kept.
    """
    texts = [str(t) for t in texts]
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    want = {**_expected(texts, extractor.settings(), shard_size), "width": int(extractor.width)}
    have = _read_manifest(cache_dir)
    diff = _differences(have, want)
    if diff:
        if have is not None:
            logger.warning("LLM feature cache %s is stale (%s): rebuilding", cache_dir, "; ".join(diff))
        _clear(cache_dir)
        _write_json(cache_dir / MANIFEST, {**want, "complete": False})
    elif have.get("complete"):
        return load_feature_cache(cache_dir, want)
    n = len(texts)
    shards = range(math.ceil(n / shard_size))
    todo = [k for k in shards if not _shard_ok(_shard_path(cache_dir, k), k * shard_size,
                                                min(n, (k + 1) * shard_size), want["width"])]
    if len(todo) < len(shards):
        logger.info("LLM feature cache %s: resuming, %d of %d shards left", cache_dir, len(todo), len(shards))
    for k in tqdm(todo, desc="LLM feature shards", unit="shard", disable=not progress):
        lo, hi = k * shard_size, min(n, (k + 1) * shard_size)
        feats = extractor(texts[lo:hi]).float().cpu().contiguous()
        if feats.shape != (hi - lo, want["width"]):
            raise ValueError(f"extractor returned {tuple(feats.shape)} for {hi - lo} texts of width {want['width']}")
        path = _shard_path(cache_dir, k)
        tmp = path.with_suffix(".tmp")
        save_file({"features": feats, "indices": torch.arange(lo, hi)}, str(tmp))
        os.replace(tmp, path)
    _write_json(cache_dir / MANIFEST, {**want, "complete": True})
    return load_feature_cache(cache_dir, want)


def ensure_feature_cache(texts: Sequence[str], cache_dir: str | Path, settings: dict[str, Any],
                         device=None, batch_size: int = 32, shard_size: int = 1024,
                         progress: bool = True) -> FeatureCache:
    """The cache for `texts` and teacher `settings` (see `teacher_settings`): reused when its
    manifest matches, otherwise the teacher is loaded, features extracted, and the model freed."""
    texts = [str(t) for t in texts]
    want = _expected(texts, settings, shard_size)
    manifest = _read_manifest(Path(cache_dir))
    if manifest is not None and manifest.get("complete") and not _differences(manifest, want):
        logger.info("LLM feature cache %s matches: reusing %d vectors", cache_dir, len(texts))
        return load_feature_cache(cache_dir, want)
    extractor = LLMFeatureExtractor.from_settings(settings, device=device, batch_size=batch_size)
    try:
        return build_feature_cache(texts, extractor, cache_dir, shard_size=shard_size, progress=progress)
    finally:
        del extractor
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


__all__ = ["FeatureCache", "dataset_fingerprint", "build_feature_cache", "load_feature_cache", "ensure_feature_cache"]
