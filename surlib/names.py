"""Names shared by the library, the evaluation and the studio, defined once.

Light on purpose (standard library only): the vote store, the suites and the statistics all
use them.
"""

from pathlib import Path

# Where the shipped prompt suites live (assets/suites/<name>.jsonl).
SUITES_DIR = Path(__file__).resolve().parents[1] / "assets" / "suites"

# The two halves of a paired generation: the base model alone, and with the adapter.
VARIANTS = ("baseline", "adapter")

# The paper's three prompt categories, and the scene attribute each one is judged on.
CATEGORY_ATTRIBUTE = {"counting": "count", "color": "color", "action": "action"}
CATEGORIES = tuple(CATEGORY_ATTRIBUTE)

# The row that pools every category in summaries and reports.
OVERALL = "overall"
