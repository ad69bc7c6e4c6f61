"""The Eval tab's content: the newest eval report on disk and its figures.

`python -m eval.run` writes `report.md` with PNG figures beside it; the tab shows the text and
the figures, so image links in the text become captions and the figures go to a gallery.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("surlib.app")

NO_REPORT = (
    "No eval report yet. Make one with\n\n"
    "```bash\npython -m eval.run --preset toy --suite toy --seeds 4 --out runs/toy\n```\n\n"
    "then press **Reload**. The tab shows the newest `runs/*/report.md` "
    "(set `SUR_RUNS_DIR` to look elsewhere) and its figures."
)

_IMG = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


@dataclass
class EvalReport:
    path: Path
    markdown: str
    figures: list[Path]


def latest_report(runs_dir: str | Path, max_figures: int = 24, max_chars: int = 200_000) -> EvalReport | None:
    """The newest `runs_dir/*/report.md` (or `runs_dir/report.md`) with its PNG figures.

    Figures referenced by the markdown come first (in order), then other PNGs of the run folder;
    image links in the text are replaced by a caption, since the page shows the figures itself."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return None
    candidates = [p for p in list(runs_dir.glob("*/report.md")) + [runs_dir / "report.md"] if p.is_file()]
    if not candidates:
        return None
    path = max(candidates, key=lambda p: p.stat().st_mtime)
    text = path.read_text(encoding="utf-8", errors="replace")[:max_chars]
    folder = path.parent
    figures: list[Path] = []
    for _, ref in _IMG.findall(text):
        fig = (folder / ref).resolve()
        if fig.suffix.lower() == ".png" and fig.is_file() and fig.is_relative_to(folder.resolve()) \
                and fig not in figures:
            figures.append(fig)
    for fig in sorted(folder.rglob("*.png")):
        if fig.resolve() not in figures:
            figures.append(fig.resolve())
    text = _IMG.sub(lambda m: f"*(figure: {m.group(1) or Path(m.group(2)).name}, shown below)*", text)
    return EvalReport(path, text, figures[:max_figures])


def report_page(runs_dir: str | Path) -> tuple[str, list]:
    """(markdown, [(RGB image, file name)]) for the Eval tab; NO_REPORT and [] without a report.
    A figure that cannot be opened is logged and left out, not an error of the page."""
    report = latest_report(runs_dir)
    if report is None:
        return NO_REPORT, []
    from PIL import Image

    figures = []
    for path in report.figures:
        try:
            with Image.open(path) as im:
                figures.append((im.convert("RGB"), path.name))
        except OSError as e:
            log.warning("cannot open figure %s: %s", path, e)
    return f"*Report: `{report.path}`*\n\n{report.markdown}", figures


__all__ = ["EvalReport", "latest_report", "report_page", "NO_REPORT"]
