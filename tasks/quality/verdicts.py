"""The audit's vocabulary of failure reasons, and the key figures of an audited frame.

A row's ``audit.reasons`` holds flags (``empty output``, ``truncated``, ``echoed prompt``,
``non-English``) and findings reasons ``<category>: <finding>, <finding>`` (``dropped``, ``added``,
``not added``, ``not removed``); see :mod:`.audit` for the rules behind them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd

from ..labeling.conditions import FINDINGS

EMPTY, TRUNCATED, ECHO, NON_ENGLISH = "empty output", "truncated", "echoed prompt", "non-English"
DROPPED, ADDED, NOT_ADDED, NOT_REMOVED = "dropped", "added", "not added", "not removed"
#: Every reason category, flags first (the order of the report's tables).
REASONS = (EMPTY, TRUNCATED, ECHO, NON_ENGLISH, DROPPED, ADDED, NOT_ADDED, NOT_REMOVED)


def reason_category(reason: str) -> str:
    """``"dropped: Edema"`` -> ``"dropped"``."""
    return reason.split(":", 1)[0]


def _rate(passed: int, rows: int) -> float | None:
    return round(passed / rows, 4) if rows else None


def summarize(frame: pd.DataFrame, labeler: str, labeler_reason: str) -> dict[str, Any]:
    """Key figures of audited rows (``task`` and ``audit`` columns): pass rates overall and per task,
    reason counts, and per finding how often it is positive in both source and answer, only in the
    source, only in the answer."""
    verdicts = frame["audit"].map(lambda a: a["verdict"])
    categories = frame["audit"].map(lambda a: sorted({reason_category(r) for r in a["reasons"]}))
    tasks: dict[str, Any] = {}
    for task, rows in frame.groupby("task").groups.items():
        passed = int((verdicts[rows] == "pass").sum())
        tasks[str(task)] = {"rows": len(rows), "passed": passed, "failed": len(rows) - passed,
                            "pass_rate": _rate(passed, len(rows)),
                            "reasons": dict(Counter(c for cs in categories[rows] for c in cs))}
    confusion = {f: {"both": 0, "source_only": 0, "output_only": 0} for f in FINDINGS}
    for audit in frame["audit"]:
        source, output = set(audit["source_findings"]), set(audit["output_findings"])
        for key, found in (("both", source & output), ("source_only", source - output),
                           ("output_only", output - source)):
            for finding in found:
                confusion[finding][key] += 1
    passed = int((verdicts == "pass").sum())
    return {
        "rows": len(frame), "passed": passed, "failed": len(frame) - passed, "pass_rate": _rate(passed, len(frame)),
        "labeler": labeler, "labeler_reason": labeler_reason, "tasks": tasks,
        "reasons": {c: n for c in REASONS if (n := sum(c in cs for cs in categories))},
        "confusion": confusion,
    }
