"""The audit's vocabulary of failure reasons, and the key figures of an audited frame.

A row's ``audit.reasons`` holds flags (``empty output``, ``truncated``, ``echoed prompt``,
``non-English``) and findings reasons ``<category>: <finding>, <finding>`` (``dropped``, ``added``,
``not added``, ``not removed``); see :mod:`.audit` for the rules behind them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from ..labeling.conditions import FINDINGS

EMPTY, TRUNCATED, ECHO, NON_ENGLISH = "empty output", "truncated", "echoed prompt", "non-English"
DROPPED, ADDED, NOT_ADDED, NOT_REMOVED = "dropped", "added", "not added", "not removed"
#: Every reason category, flags first (the order of the report's tables).
REASONS = (EMPTY, TRUNCATED, ECHO, NON_ENGLISH, DROPPED, ADDED, NOT_ADDED, NOT_REMOVED)


#: CheXpert's label hierarchy: a child finding is a more specific form of its parent ("atelectasis"
#: is an opacity), so a rewrite naming the child keeps the parent, and one naming the parent of a
#: source child adds nothing.
CHILDREN: dict[str, tuple[str, ...]] = {
    "Lung Opacity": ("Edema", "Consolidation", "Pneumonia", "Lung Lesion", "Atelectasis"),
    "Enlarged Cardiomediastinum": ("Cardiomegaly",),
}
_IMPLIES = np.zeros((len(FINDINGS), len(FINDINGS)), dtype=np.int64)  # [child, parent]
for _parent, _children in CHILDREN.items():
    for _child in _children:
        _IMPLIES[FINDINGS.index(_child), FINDINGS.index(_parent)] = 1


def implied_parents(findings: np.ndarray) -> np.ndarray:
    """(n, 13) parents of the findings in the (n, 13) FINDINGS-ordered mask ``findings``."""
    return (np.asarray(findings, dtype=np.int64) @ _IMPLIES) > 0


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
