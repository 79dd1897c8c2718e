"""``radialog-instruct review serve``: a local web app to read every audited replay row and decide.

Stack: FastAPI (routes, JSON bodies checked by pydantic) served by uvicorn, pages rendered on the
server from Jinja2 templates, and one small vanilla-JS file for the keyboard and the saves, plus
one CSS file. All of it is already installed with the project (FastAPI and uvicorn come with
Prefect's server, Jinja2 renders the audit report) and actively maintained; there is no build step,
no JS framework, no account and nothing fetched from the network: templates and static files are
package data.

Pages: ``/`` lists the rows with filters (task, verdict, reason, split, decision, free text),
progress per task × verdict, and pages of :data:`PAGE_SIZE` rows; ``/row?<filters>&pos=N`` shows
the N-th row of a selection (``order=queue&seed=S`` for the stratified review queue,
:func:`.replay.queue_order`): generator conversation, answer, the labelled report section,
both texts' labels with the findings highlighted, verdict and reasons, provenance, the decision
history. Keys: ``a`` accept, ``r`` reject (with the note typed after ``n``), ``j`` / ``k`` next /
previous, ``l`` back to the list, ``?`` help. ``POST /api/decisions`` saves a decision
(:mod:`.decisions`); ``GET /api/progress`` returns the counts.

Safety: the CLI binds 127.0.0.1 unless ``--host`` says otherwise; only requests whose Host header
names the served address are answered (no DNS rebinding), and a save must be a same-origin JSON
POST, which another site's page cannot make without a CORS preflight this app never grants.

Data: every request works on one :class:`Snapshot` (so concurrent requests never mix versions):
the replay table as Arrow, rebuilt only when the audit table, the plan, the labels, the reports or
the generation cache changed, and the decisions, re-read only when their file changed. A page
turns only its own rows into Python objects.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import BaseModel, Field
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ...generation.cache import GenerationCache
from ...labeling.conditions import CONDITIONS
from ...workdir import Workdir
from ..verdicts import REASONS
from .decisions import ACCEPT, REJECT, append_decisions, decisions_path, for_rows, new_decisions, read_decisions
from .highlight import segments
from .replay import (
    ANSWER,
    DECISION_FILTERS,
    Filters,
    Studies,
    answer_labels,
    queue_draws,
    queue_order,
    replay_rows,
    strata,
)

PAGE_SIZE = 50
EXCERPT = 220
PACKAGE = files(__package__)


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


@dataclass(frozen=True)
class Snapshot:
    """One consistent view of the work dir for one request: the replay rows, the labels / sections
    of their studies, the decisions and the one that applies to each row (row-aligned)."""

    wd: Workdir
    rows: pa.Table
    studies: Studies
    strata: np.ndarray
    decisions: pa.Table
    applied: pa.Table
    #: seed -> the rows' queue draws (shared by the snapshots of one version of the rows)
    draws: dict[int, np.ndarray]

    def selection(self, filters: Filters, order: str, seed: int) -> np.ndarray:
        """Row indices of the selection, in list order (task, sample id) or queue order."""
        rows = np.flatnonzero(filters.mask(self.rows, self.applied.column("decision")))
        if order != "queue":
            return rows
        if seed not in self.draws:
            self.draws[seed] = queue_draws(self.rows, seed)
        return queue_order(self.strata, self.draws[seed], rows)

    def index_of(self, sample_id: str) -> int | None:
        at = pc.index_in(pa.array([sample_id], pa.string()), value_set=self.rows.column("sample_id"))[0]
        return at.as_py()


class ReviewData:
    """Builds :class:`Snapshot` s, reusing the last one's parts while the files under them are
    unchanged (checked with a few ``stat`` calls per request)."""

    def __init__(self, wd: Workdir):
        self.wd = wd
        self._lock = threading.Lock()
        self._keys: tuple[Any, Any] | None = None
        self._last: Snapshot | None = None

    def _sources(self) -> Any:
        cache = GenerationCache.of(self.wd).directory
        return (_stat(self.wd.table("audit")), _stat(self.wd.table("plan")), _stat(self.wd.table("labels")),
                _stat(self.wd.table("reports")), _stat(cache))

    def snapshot(self) -> Snapshot:
        with self._lock:
            keys = (self._sources(), _stat(decisions_path(self.wd)))
            last = self._last
            if last is not None and keys == self._keys:
                return last
            if last is None or self._keys is None or keys[0] != self._keys[0]:
                rows = replay_rows(self.wd)
                parts = {"rows": rows, "studies": Studies(self.wd, rows.column("study_id")), "strata": strata(rows),
                         "draws": {}}
            else:
                parts = {"rows": last.rows, "studies": last.studies, "strata": last.strata, "draws": last.draws}
            decisions = read_decisions(self.wd)
            applied = for_rows(decisions, parts["rows"].column("sample_id"), parts["rows"].column("request_hash"))
            self._last = Snapshot(self.wd, decisions=decisions, applied=applied, **parts)
            self._keys = keys
            return self._last


# --- view models -------------------------------------------------------------------------------

def progress(data: Snapshot, selected: np.ndarray | None = None) -> dict[str, Any]:
    """Reviewed / accepted / rejected overall, per task × verdict and in the selection."""
    decision = data.applied.column("decision")
    table = pa.table({"task": data.rows.column("task"), "verdict": pc.fill_null(data.rows.column("verdict"), "-"),
                      "reviewed": pc.cast(decision.is_valid(), pa.int64()),
                      "accepted": pc.cast(pc.fill_null(pc.equal(decision, ACCEPT), False), pa.int64()),
                      "rejected": pc.cast(pc.fill_null(pc.equal(decision, REJECT), False), pa.int64())})
    groups = table.group_by(["task", "verdict"]).aggregate(
        [("reviewed", "count"), ("reviewed", "sum"), ("accepted", "sum"), ("rejected", "sum")])
    strata = sorted(({"task": g["task"], "verdict": g["verdict"], "rows": g["reviewed_count"],
                      "reviewed": g["reviewed_sum"], "accepted": g["accepted_sum"], "rejected": g["rejected_sum"]}
                     for g in groups.to_pylist()), key=lambda s: (s["task"], s["verdict"]))
    out = {"rows": table.num_rows, "reviewed": sum(s["reviewed"] for s in strata),
           "accepted": sum(s["accepted"] for s in strata), "rejected": sum(s["rejected"] for s in strata),
           "strata": strata}
    if selected is not None:
        out["selected"] = int(len(selected))
        out["selected_reviewed"] = int(pc.sum(decision.take(pa.array(selected, pa.int64())).is_valid()).as_py() or 0) \
            if len(selected) else 0
    return out


def _excerpt(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= EXCERPT else text[:EXCERPT] + " …"


def list_rows(data: Snapshot, indices: np.ndarray, offset: int) -> list[dict[str, Any]]:
    """The page's rows (only they become Python objects)."""
    take = pa.array(indices, pa.int64())
    page = data.rows.select(["sample_id", "task", "task_mode", "split", "verdict", "audit", ANSWER]).take(take)
    applied = data.applied.select(["decision", "note", "reviewer"]).take(take)
    out = []
    for k, (row, decision) in enumerate(zip(page.to_pylist(), applied.to_pylist())):
        out.append({**row, "pos": offset + k, "reasons": row["audit"]["reasons"], "excerpt": _excerpt(row[ANSWER]),
                    **{f"decision_{key}": value for key, value in decision.items()}})
    return out


def _status(audit: dict[str, Any]) -> dict[str, str]:
    status = {f: "kept" for f in audit["kept"]}
    status.update({f: "dropped" for f in audit["dropped"]})
    status.update({f: "added" for f in audit["added"]})
    return status


def row_view(data: Snapshot, index: int) -> dict[str, Any]:
    """Everything the row page shows about one replay row."""
    row = data.rows.slice(index, 1).to_pylist()[0]
    audit = row["audit"]
    status = _status(audit)
    labels = data.studies.labels_of(row["study_id"])
    section, text = data.studies.section_of(row["study_id"], labels["text_column"] if labels else None)
    source_values = labels["values"] if labels else {}
    # the answer's labels from the label cache; else (not cached) only its positives, from the audit
    answer_values = answer_labels(data.wd, audit["labeler"], row[ANSWER] or "")
    shown = answer_values or {c: "positive" for c in audit["output_findings"]}
    label_rows = [{"condition": c, "source": source_values.get(c), "answer": shown.get(c), "status": status.get(c, "")}
                  for c in CONDITIONS]
    history = data.decisions.filter(pc.equal(data.decisions.column("sample_id"), row["sample_id"])).to_pylist()
    for item in history:
        item["current"] = item["request_hash"] == row["request_hash"]
    applied = data.applied.slice(index, 1).to_pylist()[0]
    return {"row": row, "audit": audit, "section": section, "source_segments": segments(text, status),
            "answer_segments": segments(row[ANSWER] or "", status), "label_rows": label_rows,
            "labels_from_cache": answer_values is not None, "source_labeler": (labels or {}).get("labeler"),
            "history": history[::-1], "decision": applied if applied["decision"] else None,
            "outcome": outcome(audit["verdict"], applied["decision"], applied["note"])}


def outcome(verdict: str, decision: str | None, note: str | None) -> str:
    """What the next build does with the row (with ``assemble.exclude_failed_audit``, the default)."""
    if decision == REJECT:
        return f"excluded (review: {note})" if note else "excluded (review)"
    if decision == ACCEPT:
        return "released: a person accepted it" + (" although the audit failed it" if verdict == "fail" else "")
    return "excluded by the audit" if verdict == "fail" else "released: the audit passed it"


# --- the app -----------------------------------------------------------------------------------

class DecisionIn(BaseModel):
    sample_id: str = Field(min_length=1, max_length=200)
    decision: Literal["accept", "reject"]
    note: str = Field(default="", max_length=10_000)


def _url(path: str, **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v not in ("", None)})
    return f"{path}?{query}" if query else path


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        raise HTTPException(400, f"not a number: {value!r}") from None


def create_app(wd: Workdir, *, reviewer: str, allowed_hosts: list[str]) -> FastAPI:
    """The web app over one built work dir; decisions are saved under ``reviewer``."""
    source = ReviewData(wd)
    first = source.snapshot()  # fail at start (one line, from the CLI) rather than on the first page
    app = FastAPI(title="radialog-instruct review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.mount("/static", StaticFiles(directory=str(PACKAGE.joinpath("static"))), name="static")
    templates = Jinja2Templates(env=Environment(loader=FileSystemLoader(str(PACKAGE.joinpath("templates"))),
                                                autoescape=True, undefined=StrictUndefined, trim_blocks=True,
                                                lstrip_blocks=True))
    tasks = sorted(pc.unique(first.rows.column("task")).to_pylist())
    splits = sorted(s for s in pc.unique(first.rows.column("split")).to_pylist() if s)
    common = {"workdir": str(wd.root), "reviewer": reviewer, "tasks": tasks, "splits": splits, "reasons": REASONS,
              "decision_filters": DECISION_FILTERS, "verdicts": ("pass", "fail")}

    def render(request: Request, name: str, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {**common, **context})

    @app.get("/", response_class=HTMLResponse)
    def list_page(request: Request) -> HTMLResponse:
        data = source.snapshot()
        filters = Filters.of(dict(request.query_params))
        page = max(_int(request.query_params.get("page"), 1), 1)
        seed = _int(request.query_params.get("seed"), 0)
        selected = data.selection(filters, "list", seed)
        pages = max((len(selected) + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        page = min(page, pages)
        offset = (page - 1) * PAGE_SIZE
        rows = list_rows(data, selected[offset:offset + PAGE_SIZE], offset)
        for row in rows:
            row["url"] = _url("/row", **filters.items(), pos=row["pos"])
        return render(request, "list.html.j2", filters=filters, rows=rows, page=page, pages=pages,
                      progress=progress(data, selected),
                      prev_url=_url("/", **filters.items(), page=page - 1) if page > 1 else None,
                      next_url=_url("/", **filters.items(), page=page + 1) if page < pages else None,
                      queue_url=_url("/row", **{**filters.items(), "decision": "undecided"}, order="queue",
                                     seed=seed, pos=0))

    @app.get("/row", response_class=HTMLResponse)
    def row_page(request: Request) -> HTMLResponse:
        data = source.snapshot()
        filters = Filters.of(dict(request.query_params))
        order = "queue" if request.query_params.get("order") == "queue" else "list"
        seed = _int(request.query_params.get("seed"), 0)
        pos = max(_int(request.query_params.get("pos"), 0), 0)
        selected = data.selection(filters, order, seed)
        nav = {**filters.items(), "order": order if order == "queue" else "", "seed": seed if order == "queue" else ""}
        list_url = _url("/", **filters.items())
        if pos >= len(selected):
            return render(request, "done.html.j2", filters=filters, list_url=list_url, order=order,
                          progress=progress(data, selected))
        view = row_view(data, int(selected[pos]))
        after = {d: _url("/row", **nav, pos=pos + 1 if filters.keeps(d) else pos) for d in (ACCEPT, REJECT)}
        return render(request, "row.html.j2", filters=filters, order=order, seed=seed, pos=pos, total=len(selected),
                      list_url=list_url, progress=progress(data, selected), **view,
                      prev_url=_url("/row", **nav, pos=pos - 1) if pos > 0 else None,
                      next_url=_url("/row", **nav, pos=pos + 1), after_accept=after[ACCEPT], after_reject=after[REJECT])

    @app.post("/api/decisions")
    def decide(body: DecisionIn, request: Request) -> dict[str, Any]:
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc != request.headers.get("host"):
            raise HTTPException(403, "cross-origin save refused")
        data = source.snapshot()
        index = data.index_of(body.sample_id)
        if index is None:
            raise HTTPException(404, f"unknown sample id {body.sample_id!r}")
        row = data.rows.select(["request_hash", "verdict"]).slice(index, 1).to_pylist()[0]
        append_decisions(wd, new_decisions([body.sample_id], [row["request_hash"]], [body.decision], [body.note],
                                           [reviewer], [row["verdict"]], origin="web"))
        return {"ok": True, "sample_id": body.sample_id, "decision": body.decision}

    @app.get("/api/progress")
    def progress_api() -> dict[str, Any]:
        return progress(source.snapshot())

    return app


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(wd: Workdir, *, host: str, port: int, reviewer: str) -> None:
    """Run the app with uvicorn until interrupted. On a loopback address only requests naming one
    (127.0.0.1, localhost, [::1]) in their Host header are answered."""
    import uvicorn

    allowed = [f"[{name}]" if ":" in name else name for name in LOOPBACK] if host in LOOPBACK else ["*"]
    uvicorn.run(create_app(wd, reviewer=reviewer, allowed_hosts=allowed), host=host, port=port, log_level="warning")
