"""The audited replay rows of a work dir as one Arrow table, the review app's filters, and the
stratified review queue.

Sources, read with Arrow and only the columns needed: ``interim/audit.parquet`` decides the rows
(one per audited replay row: sample id, task, request hash of the judged answer, audit struct);
``interim/plan.parquet`` adds split, mode, instruction and the conversation the generator answered
(a dataset scan that materialises only the audited sample ids); the generation cache adds the answer
and its provenance by request hash. Labels and report sections are looked up per shown row
(:class:`Studies`). Nothing here turns the whole table into Python objects: filters are Arrow
compute kernels and a page takes only its rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ...errors import InputError
from ...generation.cache import GenerationCache
from ...hashing import units
from ...instruct.columns import strip
from ...io import read_parquet
from ...labeling.cache import cache_folder, text_key
from ...labeling.conditions import CONDITION_COLUMNS, CONDITIONS
from ...workdir import Workdir
from ..derived import true_where

PLAN_COLUMNS = ["sample_id", "split", "task_mode", "study_id", "subject_id", "dicom_id", "context_mode",
                "template_id", "instruction", "gen_messages"]
CACHE_COLUMNS = ["text", "finish_reason", "backend", "model", "revision", "sampling", "seed", "prompt_tokens",
                 "completion_tokens", "latency_s", "template_version"]
#: Where the generated answer is: renamed from the cache's ``text``.
ANSWER = "answer"
QUEUE_PURPOSE = "review-queue"
DECISION_FILTERS = ("undecided", "decided", "accept", "reject")


def audit_table(wd: Workdir) -> pa.Table:
    """``interim/audit.parquet`` (sample_id, task, request_hash, audit); an input error when missing."""
    path = wd.table("audit")
    if not path.exists():
        raise InputError(path, "no audit table", expected="a work dir where the audit stage ran (build it first)")
    table = read_parquet(path)
    if "request_hash" not in table.column_names:
        raise InputError(path, "no request_hash column (written by an older version)",
                         expected="an audit table of this version: rerun the audit stage")
    return table.select(["sample_id", "task", "request_hash", "audit"])


def replay_rows(wd: Workdir) -> pa.Table:
    """One row per audited replay row still in the plan, ordered by task and sample id."""
    audit = audit_table(wd)
    ids = audit.column("sample_id").combine_chunks()
    plan = ds.dataset(wd.table("plan"), format="parquet").to_table(
        columns=PLAN_COLUMNS, filter=pc.field("sample_id").isin(ids))
    at = pc.index_in(ids, value_set=plan.column("sample_id"))
    audit = audit.filter(at.is_valid())
    plan = plan.take(at.drop_null())
    cache = GenerationCache.of(wd).read(CACHE_COLUMNS)
    found = cache.take(pc.index_in(audit.column("request_hash"), value_set=cache.column("request_hash")))
    verdict = pc.struct_field(audit.column("audit").combine_chunks(), "verdict")
    table = pa.table({
        "sample_id": audit.column("sample_id"), "task": audit.column("task"),
        **{name: plan.column(name) for name in PLAN_COLUMNS if name != "sample_id"},
        "request_hash": audit.column("request_hash"), "verdict": verdict, "audit": audit.column("audit"),
        ANSWER: strip(found.column("text")),
        **{name: found.column(name) for name in CACHE_COLUMNS if name != "text"},
    })
    return table.sort_by([("task", "ascending"), ("sample_id", "ascending")])


# --- filters -----------------------------------------------------------------------------------

def _any_element(lists: pa.ChunkedArray | pa.Array, hits: pa.Array, n: int) -> np.ndarray:
    """Per row: does any element of its list satisfy ``hits`` (aligned with the flattened elements)."""
    out = np.zeros(n, bool)
    parents = pc.list_parent_indices(lists).to_numpy()
    out[parents[hits.to_numpy(zero_copy_only=False)]] = True
    return out


def _lists(table: pa.Table, name: str) -> pa.Array:
    return table.column(name).combine_chunks()


@dataclass(frozen=True)
class Filters:
    """What the list shows; an empty string does not filter. ``reason`` is a reason category
    (``dropped``, ``echoed prompt``, ...); ``decision`` one of :data:`DECISION_FILTERS`; ``q`` a
    case-insensitive text searched in the answer, the generator's conversation, the instruction
    and the sample id."""

    task: str = ""
    verdict: str = ""
    reason: str = ""
    split: str = ""
    decision: str = ""
    q: str = ""

    @classmethod
    def of(cls, values: dict[str, Any]) -> Filters:
        return cls(**{f.name: str(values.get(f.name) or "").strip() for f in fields(cls)})

    def items(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}

    def keeps(self, decision: str) -> bool:
        """Whether a row with this decision stays in the selection."""
        return self.decision in ("", "decided", decision)

    def mask(self, table: pa.Table, decisions: pa.Array) -> np.ndarray:
        """Rows that pass every filter; ``decisions`` is the applied decision per row (or null)."""
        n = table.num_rows
        keep = np.ones(n, bool)
        for name in ("task", "verdict", "split"):
            if getattr(self, name):
                keep &= true_where(pc.equal(table.column(name), getattr(self, name)))
        if self.reason:
            reasons = pc.struct_field(table.column("audit").combine_chunks(), "reasons")
            hits = pc.match_substring_regex(pc.list_flatten(reasons), f"^{re.escape(self.reason)}(?::|$)")
            keep &= _any_element(reasons, hits, n)
        if self.decision == "undecided":
            keep &= ~true_where(decisions.is_valid())
        elif self.decision == "decided":
            keep &= true_where(decisions.is_valid())
        elif self.decision:
            keep &= true_where(pc.equal(decisions, self.decision))
        if self.q:
            found = np.zeros(n, bool)
            for name in ("sample_id", ANSWER, "instruction"):
                found |= true_where(pc.match_substring(table.column(name), self.q, ignore_case=True))
            turns = _lists(table, "gen_messages")
            contents = pc.struct_field(pc.list_flatten(turns), "content")
            found |= _any_element(turns, pc.fill_null(pc.match_substring(contents, self.q, ignore_case=True), False), n)
            keep &= found
        return keep


def strata(table: pa.Table) -> np.ndarray:
    """The task × verdict stratum of each row, as an integer code."""
    keys = pc.binary_join_element_wise(table.column("task"), pc.fill_null(table.column("verdict"), "-"), "/")
    return np.unique(keys.to_numpy(zero_copy_only=False).astype(str), return_inverse=True)[1]


def queue_draws(table: pa.Table, seed: int) -> np.ndarray:
    """The seeded draw of each row that orders it within its stratum (:mod:`tasks.hashing`)."""
    return units(seed, QUEUE_PURPOSE, table.column("sample_id").to_pylist())


def queue_order(codes: np.ndarray, draws: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``rows`` (indices) in review-queue order, stratified by task × verdict.

    Within a stratum the rows follow their seeded draws; the queue takes the first row of every
    stratum, then the second of every stratum, and so on. It is built over the rows still selected
    (normally those not decided yet), so the next rows to review are always spread evenly over
    the strata that have rows left."""
    code, draw = codes[rows], draws[rows]
    by = np.lexsort((draw, code))
    starts = np.searchsorted(code[by], code[by], side="left")
    rank = np.empty(len(rows), np.int64)
    rank[by] = np.arange(len(rows)) - starts
    return rows[np.lexsort((code, rank))]


# --- studies: labels and the labelled section, per shown row ------------------------------------

LABEL_NAMES = {1.0: "positive", 0.0: "negative", -1.0: "uncertain"}


def _label_names(row: dict[str, Any]) -> dict[str, str | None]:
    return {name: LABEL_NAMES.get(row[col]) for name, col in zip(CONDITIONS, CONDITION_COLUMNS)}


@dataclass(frozen=True)
class LabelerId:
    """A labeler's name and version, as the audit struct records them (``name@version``)."""

    name: str
    version: str

    @classmethod
    def parse(cls, text: str) -> LabelerId:
        name, _, version = text.partition("@")
        return cls(name, version)


def answer_labels(wd: Workdir, labeler: str, text: str) -> dict[str, str | None] | None:
    """The audit labeler's labels of an answer, from the per-text label cache the audit filled
    (:mod:`tasks.labeling.cache`); None when the text is not there (or empty: never labelled)."""
    ident = LabelerId.parse(labeler)
    folder = cache_folder(wd.cache / "labels", ident)
    if not text.strip() or not folder.is_dir():
        return None
    found = ds.dataset(folder, format="parquet").to_table(filter=pc.field("key") == text_key(ident, text))
    return _label_names(found.slice(0, 1).to_pylist()[0]) if found.num_rows else None


class Studies:
    """Labels and report sections of the studies of the replay rows, kept as Arrow and found by
    binary search over the sorted study ids."""

    def __init__(self, wd: Workdir, study_ids: pa.Array | pa.ChunkedArray):
        wanted = pc.unique(pc.drop_null(study_ids))
        if isinstance(wanted, pa.ChunkedArray):
            wanted = wanted.combine_chunks()
        where = pc.field("study_id").isin(wanted)
        self.labels = self._sorted(ds.dataset(wd.table("labels"), format="parquet").to_table(
            columns=["study_id", "text_column", "labeler", *CONDITION_COLUMNS], filter=where))
        sections = {s for s in pc.unique(self.labels.column("text_column")).to_pylist() if s} | {"findings"}
        report_names = pq.read_schema(wd.table("reports")).names
        self.reports = self._sorted(ds.dataset(wd.table("reports"), format="parquet").to_table(
            columns=["study_id", *sorted(s for s in sections if s in report_names)], filter=where))

    @staticmethod
    def _sorted(table: pa.Table) -> pa.Table:
        return table.sort_by("study_id")

    @staticmethod
    def _find(table: pa.Table, study_id: int | None) -> int | None:
        if study_id is None or table.num_rows == 0:
            return None
        ids = table.column("study_id").to_numpy()
        i = int(np.searchsorted(ids, study_id))
        return i if i < len(ids) and ids[i] == study_id else None

    def labels_of(self, study_id: int | None) -> dict[str, Any] | None:
        """{condition: positive | negative | uncertain | None, ...} plus labeler and text column."""
        i = self._find(self.labels, study_id)
        if i is None:
            return None
        row = self.labels.slice(i, 1).to_pylist()[0]
        return {"values": _label_names(row), "labeler": row["labeler"], "text_column": row["text_column"]}

    def section_of(self, study_id: int | None, name: str | None) -> tuple[str, str]:
        """(section name, text) of the study's labelled section (findings when unknown)."""
        name = name if name and name in self.reports.column_names else "findings"
        i = self._find(self.reports, study_id)
        if i is None or name not in self.reports.column_names:
            return name, ""
        return name, self.reports.column(name)[i].as_py() or ""
