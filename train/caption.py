"""Make simple prompts (BLIP captions) for (image, complex prompt) pairs, in SURD metadata format.

    python -m train.caption --images DIR --model Salesforce/blip-image-captioning-base --out DIR/metadata.jsonl

Complex prompts come from --prompts FILE (.jsonl/.csv/.parquet with file_name, prompt), else the
folder's own metadata file, else <image>.txt files next to the images. Rows that already have a
simple prompt keep it unless --overwrite.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from surlib.captioning import DEFAULT_CAPTIONER, caption_folder  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, required=True, help="folder of images")
    ap.add_argument("--model", default=DEFAULT_CAPTIONER, help="BLIP captioning model (hub id or folder)")
    ap.add_argument("--out", type=Path, help="metadata file to write (default IMAGES/metadata.jsonl)")
    ap.add_argument("--prompts", type=Path, help="file with file_name and prompt (complex prompt) columns")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--num-beams", type=int, default=1)
    ap.add_argument("--device", default=None, help="cuda / cpu (default: CUDA when available)")
    ap.add_argument("--overwrite", action="store_true", help="re-caption rows that already have a simple prompt")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = caption_folder(args.images, model=args.model, out=args.out, prompts=args.prompts,
                                batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                                num_beams=args.num_beams, device=args.device, overwrite=args.overwrite,
                                progress=not args.quiet)
    except (FileNotFoundError, ValueError) as e:
        ap.error(str(e))
    print(report.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
