"""Agreement between two label matrices (n, 14) in the 1 / 0 / -1 / NaN convention.

Per condition: precision / recall / F1 of the positive, negative and uncertain classes (each class
against all other values, blank included), and the 4-way agreement (blank = blank counts as agreeing).
Overall: RaDialog's clinical-efficacy mapping (NaN -> 0, -1 -> 0, then binary positive F1 per
condition, macro-averaged over the 14 conditions; an undefined F1 counts as 0, as in sklearn's
``f1_score(average="macro")``), and the mean 4-way agreement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .conditions import CONDITIONS

CLASSES: dict[str, float] = {"positive": 1.0, "negative": 0.0, "uncertain": -1.0}


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def binary_scores(pred: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """Precision, recall and F1 of boolean predictions ``pred`` against boolean truth ``ref``."""
    tp = int(np.sum(pred & ref))
    n_pred, n_ref = int(pred.sum()), int(ref.sum())
    precision, recall = _ratio(tp, n_pred), _ratio(tp, n_ref)
    f1 = _ratio(2 * tp, n_pred + n_ref)
    return {"precision": precision, "recall": recall, "f1": f1, "support": n_ref, "predicted": n_pred}


def agreement(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-column share of rows where both hold the same value (NaN equals NaN)."""
    same = (pred == ref) | (np.isnan(pred) & np.isnan(ref))
    return same.mean(axis=0) if len(pred) else np.full(pred.shape[1], np.nan)


def _macro(scores: list[dict[str, Any]], key: str) -> float:
    """Mean over conditions, an undefined score counting as 0."""
    return float(np.mean([s[key] or 0.0 for s in scores]))


def _fmt(x: float | None) -> str:
    return "   -" if x is None else f"{x:4.2f}"


def compare_labels(pred: np.ndarray, ref: np.ndarray, conditions: Sequence[str] = CONDITIONS) -> dict[str, Any]:
    """All agreement figures of ``pred`` against the reference ``ref`` (same shape, same row order)."""
    pred, ref = np.asarray(pred, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if pred.shape != ref.shape or pred.ndim != 2 or pred.shape[1] != len(conditions):
        raise ValueError(f"label matrices must both be (n, {len(conditions)}); got {pred.shape} and {ref.shape}")
    agree = agreement(pred, ref)
    per_condition: dict[str, Any] = {}
    ce = []
    for j, name in enumerate(conditions):
        scores = {cls: binary_scores(pred[:, j] == v, ref[:, j] == v) for cls, v in CLASSES.items()}
        per_condition[name] = {**scores, "agreement": float(agree[j])}
        ce.append(scores["positive"])
    return {
        "n": int(len(pred)),
        "per_condition": per_condition,
        "ce_macro_f1": _macro(ce, "f1"),
        "ce_macro_precision": _macro(ce, "precision"),
        "ce_macro_recall": _macro(ce, "recall"),
        "mean_agreement": float(np.mean(agree)),
        "note": "ce_* use RaDialog's mapping (blank and uncertain count as negative); "
                "per-class scores treat every other value, blank included, as the other class",
    }


def f1_table(result: dict[str, Any]) -> str:
    """A fixed-width text table of per-condition F1 (positive / negative / uncertain) and agreement."""
    lines = [f"{'condition':28s} {'F1 pos':>7s} {'F1 neg':>7s} {'F1 unc':>7s} {'agree':>6s} {'n pos':>6s}"]
    for name, row in result["per_condition"].items():
        lines.append(f"{name:28s} {_fmt(row['positive']['f1']):>7s} {_fmt(row['negative']['f1']):>7s} "
                     f"{_fmt(row['uncertain']['f1']):>7s} {row['agreement']:6.2f} {row['positive']['support']:6d}")
    lines.append(f"{'macro F1 (RaDialog CE)':28s} {result['ce_macro_f1']:7.3f}    "
                 f"mean agreement {result['mean_agreement']:.3f}    n={result['n']}")
    return "\n".join(lines)
