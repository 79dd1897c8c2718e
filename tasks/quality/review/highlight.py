"""Where a text mentions the findings, for highlighting: the rule labeler's mention patterns
(:func:`tasks.labeling.grammar.load_grammar`) run over the text, whatever labeler the audit used.

The patterns expect the labeler's normalised text; here only the length-preserving part of that
normalisation is applied (lower case, hyphens inside words as spaces), so match offsets are offsets
into the original text. A mention is where a finding is named, also when it is negated ("no
effusion"): the labels say what was concluded, the highlight shows where to look.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...labeling.conditions import FINDINGS
from ...labeling.grammar import load_grammar
from ...labeling.rules import _HYPHEN, mention_spans


@dataclass(frozen=True)
class Segment:
    text: str
    finding: str | None = None
    #: how the finding fared in the audit: kept, dropped, added, or "mentioned" (none of those)
    status: str | None = None


def _normalised(text: str) -> str:
    lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    return _HYPHEN.sub(" ", lowered)


def mentions(text: str) -> list[tuple[int, int, str]]:
    """(start, end, finding) of the mentions in ``text``, sorted, not overlapping (earliest, then
    longest wins)."""
    starts, ends, index, _ = mention_spans(load_grammar(), _normalised(text))
    out: list[tuple[int, int, str]] = []
    for i in np.lexsort((-ends, starts)):  # stable: on a tie, the first condition in FINDINGS order
        if not out or starts[i] >= out[-1][1]:
            out.append((int(starts[i]), int(ends[i]), FINDINGS[index[i]]))
    return out


def segments(text: str, status: dict[str, str]) -> list[Segment]:
    """``text`` cut into plain and mention segments; ``status`` maps a finding to kept / dropped /
    added (findings not in it are "mentioned")."""
    out, at = [], 0
    for start, end, name in mentions(text):
        if start > at:
            out.append(Segment(text[at:start]))
        out.append(Segment(text[start:end], name, status.get(name, "mentioned")))
        at = end
    if at < len(text) or not out:
        out.append(Segment(text[at:]))
    return out
