"""The labeler interface shared by the label stage, ``label-file`` and the audit stage.

A labeler has a ``name``, a ``version`` (which changes whenever its output may change: weights,
phrase files, code) and ``label(texts) -> (n, 14) float32`` in ``conditions.CONDITIONS`` order with
1 positive, 0 negative, -1 uncertain, NaN blank.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from .conditions import CONDITIONS


class Labeler(Protocol):
    name: str
    version: str

    def label(self, texts: Sequence[str]) -> np.ndarray: ...


def is_empty(text: str | None) -> bool:
    return not text or not text.strip()


def label_texts(labeler: Labeler, texts: Sequence[str]) -> np.ndarray:
    """``labeler.label`` on the non-empty texts; empty ones get all-blank rows (No Finding too)."""
    out = np.full((len(texts), len(CONDITIONS)), np.nan, dtype=np.float32)
    keep = [i for i, t in enumerate(texts) if not is_empty(t)]
    if keep:
        values = np.asarray(labeler.label([texts[i] for i in keep]), dtype=np.float32)
        if values.shape != (len(keep), len(CONDITIONS)):
            raise ValueError(f"labeler {labeler.name} returned shape {values.shape}, "
                             f"expected ({len(keep)}, {len(CONDITIONS)})")
        out[keep] = values
    return out
