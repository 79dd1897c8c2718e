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
from collections.abc import Sequence

import numpy as np

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


def contexts(seed: int, keys: Sequence[str], modes: Sequence[str], reports: Sequence[str]) -> list[str | None]:
    """The report text each row's history shows: the report, its partial version, or None."""
    out: list[str | None] = []
    for key, mode, report in zip(keys, modes, reports):
        if mode == "none":
            out.append(None)
        elif mode == "partial":
            out.append(partial_report(seed, key, report))
        else:
            out.append(report)
    return out
