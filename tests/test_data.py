"""SURD-format data: folders and tables, bad rows, seeded augmentation, the sampler, the dataset hook."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from surlib.data import RowsDataset, SURDataset, check_item, collate, read_table
from surlib.training.sampler import EpochSampler

COLORS = ("red", "green", "blue", "yellow")


def make_surd_folder(root: Path, n: int = 12, size: tuple[int, int] = (40, 48), seed: int = 0,
                     extra_rows: list[dict] | None = None) -> Path:
    """n small random PNGs plus metadata.jsonl rows {file_name, text, prompt, extra columns}."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / f"{i:03d}.png")
        c, k = COLORS[i % len(COLORS)], i % 3 + 1
        rows.append({"file_name": f"{i:03d}.png", "text": f"{k} {c} robots standing",
                     "prompt": f"masterpiece, {k} robots, {c}, standing, best quality", "count": k})
    rows += extra_rows or []
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_imagefolder_items_and_extra_columns(tmp_path):
    ds = SURDataset(make_surd_folder(tmp_path / "d", n=5), resolution=32)
    assert len(ds) == 5 and ds.report.dropped == 0
    item = ds[3]
    assert item["pixel_values"].shape == (3, 32, 32)
    assert -1.0 <= float(item["pixel_values"].min()) and float(item["pixel_values"].max()) <= 1.0
    assert item["index"] == 3 and item["text"] == "1 yellow robots standing" and item["prompt"].startswith("masterpiece")
    assert ds.row(3)["count"] == 1  # extra columns are kept
    batch = collate([ds[i] for i in range(4)])
    assert batch["pixel_values"].shape == (4, 3, 32, 32) and batch["index"].tolist() == [0, 1, 2, 3]
    assert ds.texts == [ds[i]["text"] for i in range(5)]


def test_a_canonical_column_is_carried_by_items_and_batches_and_checked(tmp_path, caplog):
    """The trainer's identity rows read a caption column next to text and prompt."""
    root = make_surd_folder(tmp_path / "d", n=4)
    rows = [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]
    for i, r in enumerate(rows):
        r["canonical"] = "" if i == 2 else f"{r['count']} red robots standing"
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plain = SURDataset(root, resolution=32)
    assert "canonical" not in plain[0] and "canonical" not in collate([plain[0], plain[1]]) and len(plain) == 4
    ds = SURDataset(root, resolution=32, canonical_column="canonical")
    assert len(ds) == 3 and ds.report.counts == {"empty_canonical": 1}  # the empty caption's row is dropped
    assert ds.canonicals == ["1 red robots standing", "2 red robots standing", "1 red robots standing"]
    assert ds[2]["canonical"] == "1 red robots standing" and ds[2]["text"] == "1 yellow robots standing"
    assert collate([ds[0], ds[1]])["canonical"] == ["1 red robots standing", "2 red robots standing"]
    with pytest.raises(ValueError, match=r"no column\(s\) \['plain'\].*canonical_column"):
        SURDataset(root, resolution=32, canonical_column="plain")


def test_csv_and_parquet_give_the_same_rows(tmp_path):
    folder = make_surd_folder(tmp_path / "d", n=4)
    frame = read_table(folder / "metadata.jsonl")
    frame.to_csv(tmp_path / "meta.csv", index=False)
    from_csv = SURDataset(tmp_path / "meta.csv", resolution=16, image_root=folder)
    ref = SURDataset(folder, resolution=16)
    assert from_csv.texts == ref.texts and from_csv.prompts == ref.prompts
    assert torch.equal(from_csv[2]["pixel_values"], ref[2]["pixel_values"])
    pytest.importorskip("pyarrow")
    frame.to_parquet(folder / "meta.parquet")
    assert SURDataset(folder / "meta.parquet", resolution=16).texts == ref.texts


def test_bad_rows_are_reported_once_with_counts_and_skipped(tmp_path, caplog):
    folder = tmp_path / "d"
    bad = [
        {"file_name": "nope.png", "text": "a cat", "prompt": "cat, 8k"},                # missing image
        {"file_name": "broken.png", "text": "a dog", "prompt": "dog, 8k"},              # unreadable
        {"file_name": "000.png", "text": "dup", "prompt": "dup, 8k"},                   # duplicate file
        {"file_name": "extra1.png", "text": "   ", "prompt": "x, 8k"},                  # empty simple prompt
        {"file_name": "extra2.png", "text": "a fox", "prompt": ""},                     # empty complex prompt
        {"file_name": "extra3.png", "text": "a hen"},                                   # no complex prompt
        {"file_name": "", "text": "a cow", "prompt": "cow, 8k"},                        # no file name
    ]
    make_surd_folder(folder, n=6, extra_rows=bad)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    for name in ("extra1.png", "extra2.png", "extra3.png"):
        Image.new("RGB", (8, 8)).save(folder / name)
    with caplog.at_level(logging.INFO, logger="surlib.data"):
        ds = SURDataset(folder, resolution=16)
    assert ds.report.counts == {"missing_file_name": 1, "missing_image": 1, "unreadable_image": 1,
                                "empty_text": 1, "empty_prompt": 2, "duplicate_file": 1}
    assert len(ds) == 6 and ds.report.kept == 6 and ds.report.total == 13
    reports = [r for r in caplog.records if "skipped 7 of 13 rows" in r.getMessage()]
    assert len(reports) == 1 and reports[0].levelno == logging.WARNING
    assert "unreadable_image: 1 (e.g. broken.png)" in reports[0].getMessage()
    assert [ds[i]["index"] for i in range(len(ds))] == list(range(6))  # a full pass never crashes
    assert ds.texts[0] == "1 red robots standing"  # the first of the duplicates is kept


def test_no_usable_rows_and_missing_columns_are_clear_errors(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "x.png", "caption": "a"}) + "\n")
    with pytest.raises(ValueError, match="no column"):
        SURDataset(folder)
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "x.png", "text": "a", "prompt": "b"}) + "\n")
    with pytest.raises(ValueError, match="no usable rows"):
        SURDataset(folder)
    with pytest.raises(FileNotFoundError, match="no metadata"):
        SURDataset(tmp_path)


def test_augmentation_is_seeded_by_seed_epoch_and_index(tmp_path):
    folder = make_surd_folder(tmp_path / "d", n=4, size=(40, 56))
    ds = SURDataset(folder, resolution=32, center_crop=False, random_flip=True, seed=1)
    first = [ds[i]["pixel_values"] for i in range(4)]
    assert all(torch.equal(a, ds[i]["pixel_values"]) for i, a in enumerate(first))  # same epoch, same picture
    seen_other = False
    for epoch in range(1, 6):
        ds.set_epoch(epoch)
        seen_other |= any(not torch.equal(a, ds[i]["pixel_values"]) for i, a in enumerate(first))
    assert seen_other
    other_seed = SURDataset(folder, resolution=32, center_crop=False, random_flip=True, seed=2)
    assert any(not torch.equal(a, other_seed[i]["pixel_values"]) for i, a in enumerate(first))
    fixed = SURDataset(folder, resolution=32)
    assert fixed.transform.deterministic and not ds.transform.deterministic


def test_epoch_sampler_resumes_mid_epoch_and_shards():
    s = EpochSampler(10, batch_size=3, seed=4)
    assert s.batches_per_epoch == 3 and len(list(s)) == 9  # last partial batch dropped
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start_batch=2)
    assert list(s) == full[6:]
    s.set_epoch(3)
    assert list(s) != full
    ranks = [list(EpochSampler(10, batch_size=2, seed=4, world=2, rank=r)) for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1]) and len(ranks[0]) == len(ranks[1]) == 4


def test_rows_dataset_from_arrays_and_item_checks():
    rng = np.random.default_rng(0)
    rows = [(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8), f"{i} cats", f"cats, {i}") for i in range(3)]
    ds = RowsDataset(rows, resolution=16)
    check_item(ds)
    assert ds[2]["pixel_values"].shape == (3, 16, 16) and ds.texts == ["0 cats", "1 cats", "2 cats"]
    dict_rows = RowsDataset([{"image": r[0], "text": r[1], "prompt": r[2]} for r in rows], resolution=16)
    assert torch.equal(dict_rows[1]["pixel_values"], ds[1]["pixel_values"])

    class Unnormalised(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return {"pixel_values": torch.full((3, 8, 8), 200.0), "text": "a", "prompt": "b", "index": i}

    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        check_item(Unnormalised())
    with pytest.raises(ValueError, match="uint8"):
        RowsDataset([(np.zeros((8, 8, 3), dtype=np.float64), "a", "b")], resolution=8)[0]


def test_metadata_frame_is_read_with_strings(tmp_path):
    (tmp_path / "m.csv").write_text("file_name,text,prompt\n1.png,,\n")
    frame = read_table(tmp_path / "m.csv")
    assert isinstance(frame, pd.DataFrame) and frame.loc[0, "text"] == "" and frame.loc[0, "file_name"] == "1.png"
    (tmp_path / "m.jsonl").write_text("[1, 2]\n")
    with pytest.raises(ValueError, match="JSON object"):
        read_table(tmp_path / "m.jsonl")
