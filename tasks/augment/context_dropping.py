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

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..hashing import pick, ranked
from ..text.sentences import split_sentences

MODES = ("full", "none", "partial")


def draw_modes(seed_draws: np.ndarray) -> np.ndarray:
    """Map uniform draws to modes (uniform over :data:`MODES`)."""
    return np.asarray(MODES, dtype=object)[pick(seed_draws, len(MODES))]


def partial_report(seed: int, key: str, report: str) -> str:
    """``report`` with floor(n/2) of its n sentences dropped (seeded by the row key)."""
    sentences = split_sentences(report)
    keep = math.ceil(len(sentences) / 2)
    order = ranked(seed, "context:partial", [f"{key}#{i}" for i in range(len(sentences))])
    kept = sorted(int(i) for i in order[:keep])
    return " ".join(sentences[i] for i in kept)


def contexts(seed: int, keys: pa.Array, modes: np.ndarray, reports: pa.Array) -> pa.Array:
    """The report text each row's history shows: the report, its partial version, or null (mode
    none). Only the partial rows are split into sentences (in Python)."""
    modes = np.asarray(modes, dtype=object)
    partial = np.flatnonzero(modes == "partial")
    shown = pc.if_else(pa.array(modes == "none"), pa.scalar(None, pa.string()), reports)
    if not len(partial):
        return shown
    cut = pa.array([partial_report(seed, key, report) for key, report in
                    zip(keys.take(partial).to_pylist(), reports.take(partial).to_pylist())], pa.string())
    rest = np.flatnonzero(modes != "partial")
    order = np.concatenate([rest, partial])
    inverse = np.empty(len(modes), dtype=np.int64)
    inverse[order] = np.arange(len(order))
    return pa.concat_arrays([shown.take(rest), cut]).take(inverse)
