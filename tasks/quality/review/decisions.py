"""The review decisions: ``<workdir>/reviews/decisions.parquet``, append only.

Every decision, from the web app or a CSV import, is one row of :data:`schemas.REVIEW_DECISIONS`
(sample id, the request hash of the answer that was judged, accept / reject, note, reviewer, time,
the audit's verdict at that time, origin). Rows are only ever added, so the file is the whole
history of the review.

Storage. One Parquet file. A save takes an exclusive ``flock`` on ``reviews/.decisions.lock``,
reads the file, appends the new rows and writes the whole file under a temporary name that is
renamed into place (:func:`tasks.io.write_parquet`): a crash leaves the previous file or the new
one, never a mix, and concurrent savers (web requests on several threads, an import running next
to the server) wait for each other instead of losing a decision. Rewriting costs O(decisions) per
save (bench/review.py: 8 ms with 1,000 decisions stored, 20 ms with 10,000, 0.14 s with 100,000;
people make thousands); in exchange there is exactly one file for the assemble stage to
fingerprint and for ``export`` to read, and no part files to reconcile after a crash. The lock needs a local file system (or one
whose ``flock`` works).

Which decision counts. For one sample and one answer (``request_hash``) the decision appended last
wins: the file order, not the clock, says what is latest. A decision applies to a row only while
the row's answer still has the request hash it was made on: a regenerated answer (other model,
prompt or seed) is unreviewed again, and the decisions about the old answer are *stale*.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .... import schemas
from ...errors import InputError
from ...io import read_parquet, write_parquet
from ...workdir import Workdir

ACCEPT, REJECT = "accept", "reject"
DECISIONS = (ACCEPT, REJECT)
REVIEWS_DIR = "reviews"
DECISIONS_FILE = "decisions.parquet"
_LOCK = ".decisions.lock"
_KEY_SEP = "\x1f"


def reviews_dir(wd: Workdir) -> Path:
    return wd.root / REVIEWS_DIR


def decisions_path(wd: Workdir) -> Path:
    return reviews_dir(wd) / DECISIONS_FILE


def read_decisions(wd: Workdir) -> pa.Table:
    """Every decision in the order made (an empty table when nobody has reviewed yet)."""
    path = decisions_path(wd)
    if not path.exists():
        return schemas.REVIEW_DECISIONS.empty_table()
    table = read_parquet(path)
    if table.schema.names != schemas.REVIEW_DECISIONS.names:
        raise InputError(path, f"columns {', '.join(table.schema.names)}",
                         expected=", ".join(schemas.REVIEW_DECISIONS.names))
    return table.cast(schemas.REVIEW_DECISIONS)


def new_decisions(sample_ids: Sequence[str], request_hashes: Sequence[str], decisions: Sequence[str],
                  notes: Sequence[str], reviewers: Sequence[str | None], audit_verdicts: Sequence[str | None],
                  *, origin: str, at: datetime | None = None) -> pa.Table:
    """Decisions made now (one time for all of them), checked for a valid decision."""
    bad = sorted({d for d in decisions if d not in DECISIONS})
    if bad:
        raise ValueError(f"decision(s) {', '.join(map(repr, bad))}: expected accept or reject")
    n = len(sample_ids)
    when = at or datetime.now(UTC)
    return pa.table({
        "sample_id": pa.array(sample_ids, pa.string()), "request_hash": pa.array(request_hashes, pa.string()),
        "decision": pa.array(decisions, pa.string()), "note": pa.array(notes, pa.string()),
        "reviewer": pa.array(reviewers, pa.string()),
        "decided_at": pa.array([when] * n, pa.timestamp("us", tz="UTC")),
        "audit_verdict": pa.array(audit_verdicts, pa.string()), "origin": pa.array([origin] * n, pa.string()),
    }, schema=schemas.REVIEW_DECISIONS)


@contextmanager
def _locked(wd: Workdir) -> Iterator[None]:
    folder = reviews_dir(wd)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / _LOCK, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def append_decisions(wd: Workdir, rows: pa.Table) -> int:
    """Add decisions to the store (crash-safe, serialised by the lock); returns the total count."""
    rows = rows.cast(schemas.REVIEW_DECISIONS)
    with _locked(wd):
        table = pa.concat_tables([read_decisions(wd), rows])
        write_parquet(table, decisions_path(wd))
    return table.num_rows


def _keys(sample_ids: pa.ChunkedArray | pa.Array, request_hashes: pa.ChunkedArray | pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(sample_ids, request_hashes, _KEY_SEP)


def latest(decisions: pa.Table) -> pa.Table:
    """The decision appended last for each (sample, answer), in append order."""
    if decisions.num_rows == 0:
        return decisions
    numbered = decisions.append_column("_order", pa.array(np.arange(decisions.num_rows)))
    last = numbered.group_by(["sample_id", "request_hash"], use_threads=False).aggregate([("_order", "max")])
    return decisions.take(np.sort(last.column("_order_max").to_numpy()))


def decided_at(current: pa.Table, sample_ids: pa.ChunkedArray | pa.Array,
               request_hashes: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Each row's decision in ``current`` (:func:`latest` decisions; null where none applies)."""
    return pc.index_in(_keys(sample_ids, request_hashes), value_set=_keys(current.column("sample_id"),
                                                                        current.column("request_hash")))


def for_rows(decisions: pa.Table, sample_ids: pa.ChunkedArray | pa.Array,
             request_hashes: pa.ChunkedArray | pa.Array) -> pa.Table:
    """The decision that applies to each row (row-aligned; all columns null where none applies)."""
    current = latest(decisions)
    return current.take(decided_at(current, sample_ids, request_hashes))


def stale_samples(decisions: pa.Table, sample_ids: pa.ChunkedArray | pa.Array,
                  request_hashes: pa.ChunkedArray | pa.Array, *,
                  applied: pa.ChunkedArray | pa.Array | None = None) -> int:
    """Rows with decisions about another answer than their current one, and none about this one
    (``applied``: the rows' applied decisions, when known; else looked up)."""
    decided = pc.is_in(sample_ids, value_set=decisions.column("sample_id"))
    if applied is None:
        applied = for_rows(decisions, sample_ids, request_hashes).column("decision")
    return int(pc.sum(pc.and_(decided, pc.invert(pc.is_valid(applied)))).as_py() or 0)


def review_structs(applied: pa.Table) -> pa.StructArray:
    """The ``review`` column of the sample rows (:data:`schemas.REVIEW_TYPE`) from :func:`for_rows`."""
    columns = applied.combine_chunks()
    fields = list(schemas.REVIEW_TYPE)
    return pa.StructArray.from_arrays([columns.column(f.name).combine_chunks() for f in fields], fields=fields,
                                      mask=pc.is_null(columns.column("decision").combine_chunks()))
