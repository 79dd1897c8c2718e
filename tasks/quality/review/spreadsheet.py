"""``review import`` / ``review export``: the decisions as CSV, for people who review in a spreadsheet.

Import reads a CSV with a header row holding ``sample_id`` and ``decision`` (accept / reject,
any case), optionally ``note`` and ``reviewer``; other columns are ignored, so an exported sheet
with its decision column filled in imports as it is. A row with an empty decision is skipped (not
reviewed), and so is a row whose decision and note equal the decision that already applies
(unchanged). Every other row must name an audited replay row of the work dir and a valid
decision; when the sheet has a ``request_hash`` column (export writes one) that is not empty, it
must still be the row's current answer. Problems are collected over the whole file and reported
by line number; a file with any problem imports nothing. The rows are appended in file order (a
later line about the same sample wins) with the time of the import, the audit's verdict of the
moment and ``origin`` ``csv:<file name>``.

Export writes every audited replay row (or only the decided ones) with the decision that applies
to it, and the context a reviewer needs: :data:`EXPORT_COLUMNS`. Text cells that a spreadsheet
would run as a formula (starting with ``=``, ``+``, ``-`` or ``@``) get a leading ``'`` in the
exported answer and reasons columns; import never reads those columns.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ...errors import InputError
from ...io import atomic_path
from ...workdir import Workdir
from .decisions import ACCEPT, DECISIONS, REJECT, append_decisions, for_rows, new_decisions, read_decisions
from .replay import ANSWER, audit_table, replay_rows

REQUIRED = ("sample_id", "decision")
EXPORT_COLUMNS = ("sample_id", "decision", "note", "reviewer", "decided_at", "task", "task_mode", "split",
                  "audit_verdict", "audit_reasons", ANSWER, "request_hash")
#: Problems named in the one-line error before "and N more".
SHOWN_PROBLEMS = 10


def _rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (first line number, row) of each record; cells stripped, header lower-cased."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [h.strip().lower() for h in next(reader, [])]
            rows, line = [], reader.line_num
            for record in reader:
                if any(cell.strip() for cell in record):
                    rows.append((line + 1, {h: (record[i].strip() if i < len(record) else "")
                                            for i, h in enumerate(header)}))
                line = reader.line_num
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise InputError(path, f"not a readable UTF-8 CSV ({err})") from None
    return header, rows


def import_csv(path: str | Path, wd: Workdir, *, reviewer: str | None) -> dict[str, Any]:
    """Check the whole file, then append its decisions; returns what was imported and skipped."""
    path = Path(path)
    header, rows = _rows(path)
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(path, f"no column {', '.join(missing)} in the header",
                         expected="a header row with sample_id,decision and optionally note,reviewer")
    audit = audit_table(wd)
    ids = pa.array([r["sample_id"] for _, r in rows], pa.string())
    at = pc.index_in(ids, value_set=audit.column("sample_id"))
    hashes = audit.column("request_hash").take(at)
    verdicts = pc.struct_field(audit.column("audit").combine_chunks(), "verdict").take(at)
    applied = for_rows(read_decisions(wd), ids, hashes)
    #: (decision, note) that applies to a sample after the lines so far (for "unchanged")
    notes = [n or "" for n in applied.column("note").to_pylist()]
    state = dict(zip(ids.to_pylist(), zip(applied.column("decision").to_pylist(), notes)))
    problems: list[str] = []
    keep: list[int] = []
    blank = unchanged = 0
    for i, (line, row) in enumerate(rows):
        decision = row["decision"].lower()
        if not decision:
            blank += 1
            continue
        if not at[i].is_valid:
            problems.append(f"line {line}: unknown sample id {row['sample_id']!r} (not an audited replay row)")
        if decision not in DECISIONS:
            problems.append(f"line {line}: decision {row['decision']!r} is not accept or reject")
        elif at[i].is_valid and row.get("request_hash") and row["request_hash"] != hashes[i].as_py():
            problems.append(f"line {line}: the answer of {row['sample_id']} changed since the sheet was made "
                            "(request_hash differs)")
        elif state.get(row["sample_id"]) == (decision, row.get("note", "")):
            unchanged += 1
        else:
            keep.append(i)
            state[row["sample_id"]] = (decision, row.get("note", ""))
    if problems:
        more = f"; and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        raise InputError(path, f"{len(problems)} bad row(s), nothing imported: "
                         + "; ".join(problems[:SHOWN_PROBLEMS]) + more,
                         expected="sample ids of audited replay rows and decisions accept or reject")
    chosen = [rows[i][1] for i in keep]
    table = new_decisions([r["sample_id"] for r in chosen], [hashes[i].as_py() for i in keep],
                          [r["decision"].lower() for r in chosen], [r.get("note", "") for r in chosen],
                          [r.get("reviewer") or reviewer for r in chosen], [verdicts[i].as_py() for i in keep],
                          origin=f"csv:{path.name}")
    total = append_decisions(wd, table) if keep else read_decisions(wd).num_rows
    made = [r["decision"].lower() for r in chosen]
    return {"file": str(path), "rows": len(rows), "imported": len(keep), "accepted": made.count(ACCEPT),
            "rejected": made.count(REJECT), "skipped_blank": blank, "skipped_unchanged": unchanged,
            "decisions_in_store": total}


def _formula_safe(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    risky = pc.fill_null(pc.match_substring_regex(column, r"^[=+\-@]"), False)
    return pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column)


def export_table(wd: Workdir, *, decided_only: bool = False) -> pa.Table:
    """The rows of the export sheet (:data:`EXPORT_COLUMNS`), in the review app's order."""
    rows = replay_rows(wd)
    applied = for_rows(read_decisions(wd), rows.column("sample_id"), rows.column("request_hash"))
    reasons = pc.binary_join(pc.struct_field(rows.column("audit").combine_chunks(), "reasons"), "; ")
    table = pa.table({
        "sample_id": rows.column("sample_id"), "decision": applied.column("decision"), "note": applied.column("note"),
        "reviewer": applied.column("reviewer"),
        "decided_at": pc.strftime(applied.column("decided_at"), format="%Y-%m-%dT%H:%M:%SZ"),
        "task": rows.column("task"), "task_mode": rows.column("task_mode"), "split": rows.column("split"),
        "audit_verdict": rows.column("verdict"), "audit_reasons": _formula_safe(reasons),
        ANSWER: _formula_safe(rows.column(ANSWER)), "request_hash": rows.column("request_hash"),
    })
    return table.filter(applied.column("decision").is_valid()) if decided_only else table


def export_csv(wd: Workdir, out: str | Path, *, decided_only: bool = False) -> dict[str, Any]:
    table = export_table(wd, decided_only=decided_only)
    with atomic_path(out) as tmp:
        pacsv.write_csv(table, tmp, write_options=pacsv.WriteOptions(quoting_style="needed"))
    decided = int(pc.sum(table.column("decision").is_valid()).as_py() or 0)
    return {"file": str(out), "rows": table.num_rows, "decided": decided}
