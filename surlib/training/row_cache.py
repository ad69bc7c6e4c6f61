"""Rows kept from the frozen encoders (`cache_latents`, `cache_text`), in memory and on disk.

A row's VAE posterior and text embeddings never change while its image and prompts do not, so
they are computed the first time the row is seen. With `row_cache` set they are written, once
every row has been seen, to ``<row_cache>/rows-<key>.pt``; a later run whose key matches (same
rows, transform and frozen weights; losses, steps and adapter may differ, as in an ablation)
starts from the file instead of encoding again.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch

from ..data import dataset_texts

logger = logging.getLogger(__name__)


class RowStore:
    """Per-row tensors from the frozen encoders, computed the first time a row is seen and kept
    on the CPU. Only valid when a row's input never changes. A part that is None (an SD base has
    no pooled text vectors) stays None."""

    def __init__(self):
        self.rows: dict[int, tuple[torch.Tensor | None, ...]] = {}

    def get(self, index: list[int], compute, device) -> tuple[torch.Tensor | None, ...]:
        if any(i not in self.rows for i in index):
            fresh = [None if t is None else t.detach().cpu() for t in compute()]
            for j, i in enumerate(index):
                self.rows[i] = tuple(None if t is None else t[j] for t in fresh)
        return tuple(None if part is None else part.to(device) for part in self._stack(index))

    def stacked(self, n: int) -> tuple[torch.Tensor | None, ...] | None:
        """All rows 0..n-1 as stacked tensors, or None while some row has not been seen."""
        if any(i not in self.rows for i in range(n)):
            return None
        return self._stack(list(range(n)))

    def fill(self, stacked: tuple[torch.Tensor | None, ...]) -> None:
        n = len(next(t for t in stacked if t is not None))
        self.rows = {i: tuple(None if t is None else t[i] for t in stacked) for i in range(n)}

    def _stack(self, index: list[int]) -> tuple[torch.Tensor | None, ...]:
        first = self.rows[index[0]]
        return tuple(None if first[k] is None else torch.stack([self.rows[i][k] for i in index])
                     for k in range(len(first)))


def row_cache_key(ds, frozen, cfg) -> str:
    """Everything a kept row depends on: the rows (image files with size and mtime, both
    prompts, the canonical caption when the data has one), the image transform, and the frozen VAE and text encoder(s) weights. Runs that
    differ only in losses, steps or adapter (ablations) share it."""
    files, prompts = getattr(ds, "_files", None), getattr(ds, "prompts", None)
    root = getattr(ds, "root", None)
    if files is None or prompts is None or root is None:
        raise ValueError("row_cache needs a SURD folder or metadata file as `data` (its files identify "
                         "the rows); rows made on the fly cannot be fingerprinted")
    h = hashlib.sha256(f"{cfg.resolution}|{cfg.center_crop}|{cfg.random_flip}".encode())
    canonicals = getattr(ds, "canonicals", None) or [None] * len(files)
    for name, text, prompt, canonical in zip(files, dataset_texts(ds), prompts, canonicals):
        st = (Path(root) / name).stat()
        tail = "" if canonical is None else f"|{canonical}"
        h.update(f"{name}|{st.st_size}|{st.st_mtime_ns}|{text}|{prompt}{tail}\n".encode())
    for model in (frozen.vae, *frozen.text_encoders):
        for key, value in sorted(model.state_dict().items()):
            h.update(key.encode())
            h.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class KeptRows:
    """A run's two stores (VAE posteriors, text embeddings) and the shared file behind them.

    `file` None: memory only. An existing file fills both stores; a missing one is written by
    `save_when_complete` as soon as all `n` rows are in both stores.
    """

    def __init__(self, n: int, file: Path | None = None):
        self.n = n
        self.latents, self.text = RowStore(), RowStore()
        self.pending: Path | None = None
        if file is not None and file.exists():
            saved = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
            self.latents.fill(saved["latents"])
            self.text.fill(saved["text"])
            logger.info("kept rows loaded from %s", file)
        else:
            self.pending = file

    def save_when_complete(self) -> None:
        if self.pending is None or not len(self.text.rows) == len(self.latents.rows) == self.n:
            return
        path, self.pending = self.pending, None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"latents": self.latents.stacked(self.n), "text": self.text.stacked(self.n)}, tmp)
        os.replace(tmp, path)  # a killed run never leaves a half-written file behind
        logger.info("kept rows saved to %s", path)


def row_file(row_cache: str | Path, ds, frozen, cfg) -> Path:
    """The file under `row_cache` for this run's rows (see `row_cache_key`)."""
    return Path(row_cache) / f"rows-{row_cache_key(ds, frozen, cfg)[:20]}.pt"


__all__ = ["RowStore", "KeptRows", "row_cache_key", "row_file"]
