"""How far the audit can be trusted: its verdicts against the human decisions, per task.

Over the audited rows that have a human decision (the one that applies to the row's current answer,
:func:`.decisions.for_rows`), with "fail" as the audit's positive call and "reject" as the human's:

* ``tp`` audit fail and human reject, ``fp`` fail / accept, ``fn`` pass / reject, ``tn`` pass / accept;
* ``agreement`` = (tp + tn) / reviewed; ``precision`` = tp / (tp + fp): of the rows the audit
  fails, the share people reject too; ``recall`` = tp / (tp + fn): of the rows people reject, the
  share the audit catches. A rate whose denominator is 0 is null.

The review queue samples every task × verdict stratum equally, so reviewed rows over-represent
the smaller verdict and the raw recall and agreement describe the sample, not the data set.
``estimated`` weights each stratum by its size (rejection rate among its reviewed rows × its rows);
it is null while a stratum with rows has no reviewed row, and it assumes the reviewed rows of a
stratum are a random sample of it, which the queue ensures.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .decisions import ACCEPT, REJECT

FAIL, PASS = "fail", "pass"


def _rate(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _estimated(frame: pd.DataFrame) -> dict[str, float | None]:
    """Stratum-weighted precision, recall and agreement (strata: task × verdict)."""
    rejects = {FAIL: 0.0, PASS: 0.0}
    rows = {FAIL: 0, PASS: 0}
    for (_, verdict), stratum in frame.groupby(["task", "verdict"]):
        reviewed = stratum["decision"].notna()
        if not reviewed.any():
            return {"precision": None, "recall": None, "agreement": None}
        rejects[verdict] += len(stratum) * float((stratum["decision"] == REJECT).sum()) / float(reviewed.sum())
        rows[verdict] += len(stratum)
    total = rows[FAIL] + rows[PASS]
    return {"precision": _rate(rejects[FAIL], rows[FAIL]), "recall": _rate(rejects[FAIL], rejects[FAIL] + rejects[PASS]),
            "agreement": _rate(rejects[FAIL] + rows[PASS] - rejects[PASS], total)}


def _figures(frame: pd.DataFrame) -> dict[str, Any]:
    reviewed = frame[frame["decision"].notna()]
    fail, reject = reviewed["verdict"] == FAIL, reviewed["decision"] == REJECT
    tp, fp = int((fail & reject).sum()), int((fail & ~reject).sum())
    fn, tn = int((~fail & reject).sum()), int((~fail & ~reject).sum())
    return {"rows": int(len(frame)), "reviewed": int(len(reviewed)), "accepted": int((reviewed["decision"] == ACCEPT).sum()),
            "rejected": int(reject.sum()), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "agreement": _rate(tp + tn, len(reviewed)), "precision": _rate(tp, tp + fp), "recall": _rate(tp, tp + fn),
            "estimated": _estimated(frame)}


def audit_vs_human(frame: pd.DataFrame) -> dict[str, Any]:
    """``frame``: one row per audited row with ``task``, ``verdict`` (pass / fail) and ``decision``
    (accept / reject / null). Returns the figures overall (``all``) and per task."""
    frame = frame[["task", "verdict", "decision"]].astype(object)
    return {"all": _figures(frame),
            "tasks": {str(task): _figures(rows) for task, rows in frame.groupby("task", sort=True)}}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """Rows of the audit-vs-human table (per task, then all): task, reviewed / audited, human
    accepted / rejected, agreement, precision and recall with their counts, the estimates."""
    out = []
    for name, f in [*sorted(result["tasks"].items()), ("all", result["all"])]:
        est = f["estimated"]
        out.append([name, f"{f['reviewed']} / {f['rows']}", f"{f['accepted']} / {f['rejected']}",
                    f"{_pct(f['agreement'])} ({f['tp'] + f['tn']}/{f['reviewed']})",
                    f"{_pct(f['precision'])} ({f['tp']}/{f['tp'] + f['fp']})",
                    f"{_pct(f['recall'])} ({f['tp']}/{f['tp'] + f['fn']})",
                    f"{_pct(est['precision'])} / {_pct(est['recall'])} / {_pct(est['agreement'])}"])
    return out


def markdown_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *["| " + " | ".join(str(c) for c in r) + " |" for r in rows]]


TABLE_HEADER = ["task", "reviewed / audited", "human accepted / rejected", "agreement", "precision of fail",
                "recall of fail", "estimated precision / recall / agreement"]


def card_lines(result: dict[str, Any] | None, applied: dict[str, Any] | None) -> list[str]:
    """The dataset card's statement on human review (markdown lines).

    ``result``: :func:`audit_vs_human`; ``applied``: the manifest's ``review`` figures."""
    if not result or not result["all"]["reviewed"]:
        return ["### Audit vs. human review", "",
                "No pseudo label of this release was reviewed by a person, so how often the automatic audit is "
                "wrong is not measured.", ""]
    a, applied = result["all"], applied or {}
    lines = ["### Audit vs. human review", "",
             f"People reviewed {a['reviewed']} of the {a['rows']} audited pseudo labels (`radialog-instruct review`): "
             f"{a['accepted']} accepted, {a['rejected']} rejected. A human decision overrides the audit: "
             f"{applied.get('accepted_failed', 0)} rows the audit failed were released because a reviewer accepted "
             f"them, and {applied.get('rejected', 0)} rejected rows were excluded. Against the reviewers, the audit's "
             f"\"fail\" has a precision of {_pct(a['precision'])} and a recall of {_pct(a['recall'])} "
             f"(agreement {_pct(a['agreement'])}); the estimates weight the review sample by the size of each "
             "task × verdict stratum.", "", *markdown_table(TABLE_HEADER, table_rows(result)), ""]
    return lines
