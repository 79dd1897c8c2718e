"""The audit report: ``reports/audit-summary.json``, ``reports/audit.html`` (one self-contained
file, plots as base64 PNG data URIs, rendered from ``audit_report.html.j2``) and ``reports/audit.md``
(the same tables and examples, without plots).

Contents: per-task pass rates, failure reasons per task, the findings confusion between source
and answer (per finding: positive in both, only in the source, only in the answer), answer
length distributions by verdict, up to ``audit.examples_per_reason`` before/after examples per
failure reason (the first rows by sample id, i.e. a fixed pseudo-random sample), and the audit
against the human review decisions per task (:mod:`.review.agreement`).

Where it is made: by the assemble stage (:func:`report_audit`), not the audit stage. The audit's
labelling is the expensive part and depends only on the answers; the human decisions change
later and more often. Assemble already reads the audit table and the decisions, and reruns when a
decision is added, so the report's "audit vs. human" table is always that of the current
decisions, while the audit stage (and its labelling) stays untouched. The labeler's id and the
reason it was chosen travel in the audit table's Parquet metadata (:data:`LABELER_KEY`,
:data:`LABELER_REASON_KEY`).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ..io import write_json, write_text
from ..labeling.conditions import FINDINGS
from ..workdir import Workdir
from .review.agreement import TABLE_HEADER, audit_vs_human, markdown_table, table_rows
from .verdicts import REASONS, reason_category, summarize

TEMPLATE = "audit_report.html.j2"
HTML, MARKDOWN, SUMMARY = "audit.html", "audit.md", "audit-summary.json"
EXCERPT_CHARS = 700
#: Keys of the audit table's Parquet metadata: the labeler's id and why it was chosen.
LABELER_KEY, LABELER_REASON_KEY = "labeler", "labeler_reason"
HUMAN_LEAD = ("Audit verdicts against the human review decisions (radialog-instruct review). \"fail\" is the "
              "audit's positive call and \"reject\" the reviewer's: precision = of the reviewed rows the audit failed, "
              "the share people rejected; recall = of the rows people rejected, the share the audit failed. The "
              "estimates weight each task × verdict stratum by its size (the review queue samples strata equally).")
NOT_REVIEWED = ("No row has been reviewed yet (radialog-instruct review serve, or review import), so how often the "
                "audit is wrong is not measured.")


# --- plots -------------------------------------------------------------------------------------

def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global backend or state
    return Figure(figsize=(width, height), layout="constrained")


def plot_pass_rates(summary: dict[str, Any]) -> str:
    tasks = sorted(summary["tasks"])
    fig = _figure(7, 0.5 * len(tasks) + 1.2)
    ax = fig.subplots()
    passed = [summary["tasks"][t]["passed"] for t in tasks]
    failed = [summary["tasks"][t]["failed"] for t in tasks]
    ax.barh(tasks, passed, color="#2e7d32", label="pass")
    ax.barh(tasks, failed, left=passed, color="#c62828", label="fail")
    for i, t in enumerate(tasks):
        rate = summary["tasks"][t]["pass_rate"]
        ax.text(passed[i] + failed[i], i, f"  {rate:.0%}" if rate is not None else "", va="center")
    ax.set_xlim(0, max(p + f for p, f in zip(passed, failed)) * 1.15)
    ax.set_xlabel("rows (label: pass rate)")
    ax.set_title("Audit verdicts per task")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    return _png(fig)


def plot_reasons(summary: dict[str, Any]) -> str:
    tasks = sorted(summary["tasks"])
    reasons = [r for r in REASONS if r in summary["reasons"]]
    fig = _figure(7, 0.5 * len(tasks) + 1.5)
    ax = fig.subplots()
    left = np.zeros(len(tasks))
    colors = ["#6d4c41", "#ef6c00", "#8e24aa", "#3949ab", "#c62828", "#00838f", "#f9a825", "#546e7a"]
    for reason, color in zip(REASONS, colors):
        if reason not in reasons:
            continue
        counts = np.array([summary["tasks"][t]["reasons"].get(reason, 0) for t in tasks])
        ax.barh(tasks, counts, left=left, color=color, label=reason)
        left += counts
    ax.set_xlabel("rows with the reason (a row can have several)")
    ax.set_title("Failure reasons per task")
    if reasons:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=4, fontsize="small", frameon=False)
    return _png(fig)


def plot_confusion(summary: dict[str, Any]) -> str:
    columns = ("both", "source_only", "output_only")
    matrix = np.array([[summary["confusion"][f][c] for c in columns] for f in FINDINGS])
    fig = _figure(6.5, 6)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues", aspect="auto")
    ax.set_xticks(range(len(columns)), ["positive in both", "only in source", "only in answer"])
    ax.set_yticks(range(len(FINDINGS)), FINDINGS)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center",
                color="white" if value > matrix.max() / 2 else "black")
    fig.colorbar(image, ax=ax, label="rows")
    ax.set_title("Findings: source study vs. generated answer")
    return _png(fig)


def plot_lengths(frame: pd.DataFrame) -> str:
    tasks = sorted(frame["task"].unique())
    words = frame["output"].fillna("").str.split().str.len()
    verdict = frame["audit"].map(lambda a: a["verdict"])
    fig = _figure(7, 0.6 * len(tasks) + 1.5)
    ax = fig.subplots()
    for offset, (name, color) in enumerate((("pass", "#2e7d32"), ("fail", "#c62828"))):
        data = [words[(frame["task"] == t) & (verdict == name)].to_numpy() for t in tasks]
        positions = np.arange(len(tasks)) + (offset - 0.5) * 0.35
        shown = [(p, d) for p, d in zip(positions, data) if len(d)]
        if shown:
            parts = ax.boxplot([d for _, d in shown], positions=[p for p, _ in shown], widths=0.3, vert=False,
                               patch_artist=True, manage_ticks=False)
            for box in parts["boxes"]:
                box.set_facecolor(color)
                box.set_alpha(0.6)
        ax.plot([], [], color=color, linewidth=8, alpha=0.6, label=name)
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_xlabel("answer length (words)")
    ax.set_title("Answer lengths by verdict")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    return _png(fig)


# --- examples and rendering --------------------------------------------------------------------

def _excerpt(text: str) -> str:
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + " […]"


def examples(frame: pd.DataFrame, per_reason: int,
             before_of: Callable[[list[str]], dict[str, str]]) -> dict[str, list[dict[str, Any]]]:
    """Reason category -> up to ``per_reason`` failing rows (first by sample id), each with what its
    answer was judged against: ``before_of(sample ids)`` (:func:`.audit.before_texts`), asked for
    the shown rows only."""
    ordered = frame.sort_values("sample_id")
    categories = ordered["audit"].map(lambda a: {reason_category(r) for r in a["reasons"]})
    out: dict[str, list[dict[str, Any]]] = {}
    for reason in REASONS:
        hits = ordered[categories.map(lambda found, wanted=reason: wanted in found)]
        if len(hits) and per_reason:
            out[reason] = [{"sample_id": r.sample_id, "task": r.task,
                            "task_mode": r.task_mode if isinstance(r.task_mode, str) else None,
                            "reasons": list(r.audit["reasons"]),
                            "after": _excerpt(str(r.output or ""))} for r in hits.head(per_reason).itertuples()]
    before = before_of(sorted({row["sample_id"] for rows in out.values() for row in rows}))
    for rows in out.values():
        for row in rows:
            row["before"] = _excerpt(before[row["sample_id"]])
    return out


def render_html(frame: pd.DataFrame, summary: dict[str, Any], shown: dict[str, list[dict[str, Any]]]) -> str:
    """The HTML report; ``shown``: :func:`examples`."""
    from jinja2 import Environment, StrictUndefined

    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8"))
    plots = {}
    if len(frame):
        plots = {"pass_rates": plot_pass_rates(summary), "reasons": plot_reasons(summary),
                 "confusion": plot_confusion(summary), "lengths": plot_lengths(frame)}
    return template.render(summary=summary, plots=plots, examples=shown,
                           findings=FINDINGS, reasons=REASONS, human_header=TABLE_HEADER,
                           human_rows=table_rows(summary["audit_vs_human"]) if "audit_vs_human" in summary else None,
                           human_lead=HUMAN_LEAD, not_reviewed=NOT_REVIEWED)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(summary: dict[str, Any], shown: dict[str, list[dict[str, Any]]]) -> str:
    """The markdown report; ``shown``: :func:`examples`."""
    rate = summary["pass_rate"]
    out = ["# Audit of the pseudo labels", "",
           f"{summary['rows']} replay rows audited with labeler `{summary['labeler']}`: {summary['passed']} passed, "
           f"{summary['failed']} failed" + (f" (pass rate {rate:.1%})." if rate is not None else "."), "",
           "Plots: see audit.html.", "", "## Pass rates per task", "",
           "| task | rows | passed | failed | pass rate | reasons |", "|---|---:|---:|---:|---:|---|"]
    for task, info in sorted(summary["tasks"].items()):
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(info["reasons"].items()))
        out.append(f"| {task} | {info['rows']} | {info['passed']} | {info['failed']} | {info['pass_rate']:.1%} "
                   f"| {reasons or '-'} |")
    out += ["", "## Findings: source vs. answer", "",
            "| finding | positive in both | only in source | only in answer |", "|---|---:|---:|---:|"]
    for finding, c in summary["confusion"].items():
        out.append(f"| {finding} | {c['both']} | {c['source_only']} | {c['output_only']} |")
    out += ["", "## Audit vs. human review", ""]
    if summary.get("audit_vs_human", {}).get("all", {}).get("reviewed"):
        out += [HUMAN_LEAD, "", *markdown_table(TABLE_HEADER, table_rows(summary["audit_vs_human"]))]
    else:
        out.append(NOT_REVIEWED)
    out += ["", "## Examples per failure reason", ""]
    for reason, rows in shown.items():
        out += [f"### {reason} ({summary['reasons'][reason]} rows)", ""]
        for row in rows:
            out += [f"- `{row['sample_id']}` {row['task']}{' / ' + row['task_mode'] if row['task_mode'] else ''}: "
                    f"{_md_escape('; '.join(row['reasons']))}",
                    f"  - before: {_md_escape(row['before'])}", f"  - after: {_md_escape(row['after'])}"]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def write_reports(frame: pd.DataFrame, summary: dict[str, Any], per_reason: int,
                  before_of: Callable[[list[str]], dict[str, str]], wd: Workdir) -> None:
    """``frame``: the audited replay rows with their ``audit`` column."""
    shown = examples(frame, per_reason, before_of)
    write_json(summary, wd.report(SUMMARY))
    write_text(render_html(frame, summary, shown), wd.report(HTML))
    write_text(render_markdown(summary, shown), wd.report(MARKDOWN))


def audit_labeler(path: str | Path) -> tuple[str, str]:
    """(labeler id, why it was chosen) from the audit table's metadata."""
    meta = pq.read_schema(path).metadata or {}
    return (meta.get(LABELER_KEY.encode(), b"unknown").decode(),
            meta.get(LABELER_REASON_KEY.encode(), b"unknown").decode())


def report_audit(replay: pd.DataFrame, examples_per_reason: int, before_of: Callable[[list[str]], dict[str, str]],
                 wd: Workdir) -> dict[str, Any]:
    """Summary (with audit vs. human) and the HTML / markdown report of the audited replay rows.

    ``replay``: ``sample_id``, ``task``, ``task_mode``, ``output``, ``audit`` and ``decision`` (the
    human decision that applies to the row's answer, or null); ``examples_per_reason``:
    ``audit.examples_per_reason``; ``before_of``: sample ids -> what each answer is judged against
    (:func:`.audit.before_texts`), asked for the example rows only."""
    labeler, reason = audit_labeler(wd.table("audit"))
    summary = summarize(replay, labeler, reason)
    verdicts = replay["audit"].map(lambda a: a["verdict"])
    summary["audit_vs_human"] = audit_vs_human(pd.DataFrame(
        {"task": replay["task"], "verdict": verdicts, "decision": replay["decision"]}))
    write_reports(replay, summary, examples_per_reason, before_of, wd)
    return summary
