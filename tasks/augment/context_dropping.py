"""Context dropping (RaDialog, MIDL 2025, eq. 1).

For findings QA, region QA and view classification the conversation context is drawn uniformly
per row from three modes: ``full`` keeps the report-generation turn (structured findings S and
report R); ``none`` drops both, so the question follows the image alone; ``partial`` keeps S and
replaces R by R', the report with half of its sentences randomly dropped.

"Half" is rounded in favour of the kept text: of n sentences (nltk Punkt split), ceil(n/2) are
kept in their original order and floor(n/2) dropped, so a one-sentence report stays whole. The
drawn mode is stored per row (``context_mode``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..hashing import pick, units
from ..instruct.columns import scatter
from ..text.sentences import split_sentences

MODES = ("full", "none", "partial")


def draw_modes(seed_draws: np.ndarray) -> np.ndarray:
    """Map uniform draws to modes (uniform over :data:`MODES`)."""
    return np.asarray(MODES, dtype=object)[pick(seed_draws, len(MODES))]


def partial_report(seed: int, key: str, report: str) -> str:
    """``report`` with floor(n/2) of its n sentences dropped (seeded by the row key)."""
    return partial_reports(seed, [key], [report])[0].as_py()


def partial_reports(seed: int, keys: Sequence[str], reports: Sequence[str | None]) -> pa.Array:
    """:func:`partial_report` of many rows: sentences split per row, then every row's sentence
    ranks drawn at once (``ranked`` over the keys ``<key>#<i>``: by draw, then position)."""
    sentences = [split_sentences(r) for r in reports]
    counts = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    owner = np.repeat(np.arange(len(counts)), counts)
    local = np.arange(int(counts.sum())) - starts[owner]
    u = units(seed, "context:partial", [f"{key}#{i}" for key, n in zip(keys, counts.tolist()) for i in range(n)])
    order = np.lexsort((local, u, owner))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - starts[owner[order]]
    kept = rank < -(-counts // 2)[owner]
    flat = pa.array([t for row in sentences for t in row], pa.string()).filter(pa.array(kept))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(owner[kept], minlength=len(counts)))]).astype(np.int32)
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), flat), " ")


def contexts(seed: int, keys: pa.Array, modes: np.ndarray, reports: pa.Array) -> pa.Array:
    """The report text each row's history shows: the report, its partial version, or null (mode
    none). Only the partial rows are split into sentences (in Python)."""
    modes = np.asarray(modes, dtype=object)
    partial = np.flatnonzero(modes == "partial")
    shown = pc.if_else(pa.array(modes == "none"), pa.scalar(None, pa.string()), reports)
    if not len(partial):
        return shown
    cut = partial_reports(seed, keys.take(partial).to_pylist(), reports.take(partial).to_pylist())
    rest = np.flatnonzero(modes != "partial")
    return scatter([shown.take(rest), cut], [rest, partial], len(modes))
