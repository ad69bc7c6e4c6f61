"""The Eval tab's content: the newest eval report on disk and its figures, else the shipped one.

`python -m eval.run` (and the tab's Run button, `quick_eval`) writes `report.md` with PNG
figures beside it; the tab shows the text and the figures, so image links in the text become
captions and the figures go to a gallery. A fresh install has no runs: then, and whenever the
shipped report (`shipped_report`, in the repository) is newer than every run's, it is shown,
its figures drawn from its summaries.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from .shipped_report import ShippedReport, load_shipped
from .shipped_report import figures as shipped_figures

log = logging.getLogger("surlib.app")

NO_REPORT = (
    "No eval report yet. Make one with\n\n"
    "```bash\npython -m eval.run --preset toy --suite toy --seeds 4 --out runs/toy\n```\n\n"
    "then press **Reload**. The tab shows the newest `runs/*/report.md` "
    "(set `SUR_RUNS_DIR` to look elsewhere) and its figures."
)

_IMG = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _mtime(path: Path) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.timezone.utc)


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


def shipped_page(shipped: ShippedReport, runs_dir: str | Path) -> tuple[str, list]:
    head = (f"*The shipped report (`assets/eval/{shipped.path.name}`, written "
            f"{shipped.generated_at:%Y-%m-%d}): no report under `{runs_dir}` is newer. Press **Run** for a "
            "quick evaluation here, or make a full one with `python -m eval.run` (see the report).*\n\n")
    return head + shipped.markdown, shipped_figures(shipped)


def report_page(runs_dir: str | Path, shipped_dir: str | Path | None = None) -> tuple[str, list]:
    """(markdown, [(RGB image, caption)]) for the Eval tab: the newest run's report, or the shipped
    one (from `shipped_dir`) when it is newer or there is no run; NO_REPORT and [] with neither.
    A figure that cannot be opened is logged and left out, not an error of the page."""
    report = latest_report(runs_dir)
    shipped = load_shipped(shipped_dir) if shipped_dir is not None else None
    if shipped_dir is not None and shipped is None:
        log.warning("the shipped eval report in %s is missing or unreadable", shipped_dir)
    if shipped is not None and (report is None or _mtime(report.path) <= shipped.generated_at):
        return shipped_page(shipped, runs_dir)
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


__all__ = ["EvalReport", "latest_report", "report_page", "shipped_page", "NO_REPORT"]
