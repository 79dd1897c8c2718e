"""CheXpert-style rule labeler: mention phrases, negation and uncertainty cues with clause scope.

For a batch of reports:

1. each distinct report is split into sentences (nltk Punkt, :mod:`..text.sentences`); every cue
   acts within one sentence, so each distinct sentence is analysed once (radiology reports repeat
   sentences a lot);
2. distinct sentences are joined with ``\\n`` into one string, normalised (:func:`normalize`), and
   every pattern of the compiled :mod:`.grammar` runs once over it (``finditer``): mentions per
   condition, cues, clause terminators;
3. the rest is numpy over those spans: clause and sentence ids by ``searchsorted`` (negation cues
   also stop at ``negation_terminators``), the nearest cue before/after each mention (an
   ``adjacent`` negation cue only right after it, "X appears within normal limits"; a ``subject``
   negation cue anywhere after it when no finite verb stands between the clause start and the cue,
   the mention being part of the cue's subject, "X, Y and Z in the left lower lobe have cleared"), one value per
   mention (double negation -> uncertain, negation ->
   negative, uncertainty -> uncertain, else positive; "normal" statements -> negative), then the
   CheXpert aggregation per report and condition (positive > uncertain > negative > blank);
4. No Finding is 1 when none of the 12 findings other than Support Devices is positive or
   uncertain, else blank (the CheXpert rule). Empty reports get all blanks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ..text.sentences import SPLITTER_VERSION, split_sentences
from .conditions import CONDITIONS, FINDINGS, NO_FINDING, SUPPORT_DEVICES
from .grammar import SENTENCE_BREAK, Grammar, load_grammar

#: Bump when the algorithm in this module changes (the phrase files carry their own version).
RULES_CODE_VERSION = "3"

#: How far (characters) an adjacent negation cue may start after its mention: one space.
ADJACENT_WINDOW = 1

#: Sentences per pass over the joined text (bounds memory; large enough to amortise the regex calls).
CHUNK = 8192

#: Codes of one mention or of an aggregate, ordered so that the CheXpert aggregation is a maximum.
BLANK, NEGATIVE, UNCERTAIN, POSITIVE = 0, 1, 2, 3
_CODE_VALUE = np.array([np.nan, 0.0, -1.0, 1.0], dtype=np.float32)
_BLOCKS_NO_FINDING = np.array([c != SUPPORT_DEVICES for c in FINDINGS])
_NO_FINDING_COL = CONDITIONS.index(NO_FINDING)

_APOSTROPHE = re.compile("[\u2018\u2019\u02bc]")
_CANNOT = re.compile(r"\bcan(?:'t|not| not)\b")
_NT = re.compile(r"n't\b")
_HYPHEN = re.compile(r"(?<=[a-z0-9])-(?=[a-z0-9])")


def normalize(text: str) -> str:
    """Lower case, "can't"/"can not" -> "cannot", "n't" -> " not", hyphens inside words -> spaces."""
    text = _APOSTROPHE.sub("'", text.lower())
    text = _CANNOT.sub("cannot", text)
    text = _NT.sub(" not", text)
    return _HYPHEN.sub(" ", text)


def _spans(pattern: re.Pattern[str], text: str) -> tuple[np.ndarray, np.ndarray]:
    pairs = [m.span() for m in pattern.finditer(text)]
    arr = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def _covered(starts: np.ndarray, ends: np.ndarray, block_starts: np.ndarray, block_ends: np.ndarray,
             *, start_only: bool = False) -> np.ndarray:
    """Which spans overlap a blocker span (or, with ``start_only``, start inside one)."""
    if not len(block_starts) or not len(starts):
        return np.zeros(len(starts), bool)
    order = np.argsort(block_starts, kind="stable")
    bs, reach = block_starts[order], np.maximum.accumulate(block_ends[order])
    i = np.searchsorted(bs, starts if start_only else ends, side="right" if start_only else "left") - 1
    return (i >= 0) & (reach[np.maximum(i, 0)] > starts)


class _Cues:
    """Start positions and clause ids of one cue list, sorted by position."""

    def __init__(self, starts: np.ndarray, clause: np.ndarray):
        self.starts, self.clause = starts, clause

    def before(self, m_start: np.ndarray, m_end: np.ndarray, m_clause: np.ndarray) -> np.ndarray:
        """A cue before the mention in its clause, or inside the mention."""
        if not len(self.starts):
            return np.zeros(len(m_start), bool)
        i = np.searchsorted(self.starts, m_end, side="left") - 1
        j = np.maximum(i, 0)
        return (i >= 0) & ((self.clause[j] == m_clause) | (self.starts[j] >= m_start))

    def after(self, m_start: np.ndarray, m_end: np.ndarray, m_clause: np.ndarray, window: int,
              limit: np.ndarray | None = None, *, outside: bool = False) -> np.ndarray:
        """A cue starting at most ``window`` characters after the mention, in its clause (and, with
        ``limit``, before that position); a cue inside the mention counts unless ``outside``."""
        if not len(self.starts):
            return np.zeros(len(m_start), bool)
        i = np.searchsorted(self.starts, m_end if outside else m_start, side="left")
        j = np.minimum(i, len(self.starts) - 1)
        hit = (i < len(self.starts)) & (self.clause[j] == m_clause) & (self.starts[j] - m_end <= window)
        return hit if limit is None else hit & (self.starts[j] < limit)


def subject_cues(grammar: Grammar, text: str, blockers: tuple[np.ndarray, np.ndarray], bounds: np.ndarray) -> _Cues:
    """The ``subject`` negation cues that govern everything before them in their clause (clauses
    end at ``bounds``): those with no finite verb between the clause start and the cue
    ("consolidation and atelectasis at the left base have cleared", but not "the heart is enlarged
    and the effusion has resolved")."""
    starts, ends = _spans(grammar.negation_subject, text)
    keep = ~_covered(starts, ends, *blockers)
    starts, ends = starts[keep], ends[keep]
    if len(starts):
        verbs, verb_ends = _spans(grammar.finite_verb, text)
        verbs = verbs[~_covered(verbs, verb_ends, starts, ends, start_only=True)]  # the cue's own verb
        clause_start = np.concatenate([[0], bounds])[np.searchsorted(bounds, starts, side="right")]
        starts = starts[np.searchsorted(verbs, starts) == np.searchsorted(verbs, clause_start)]
    return _Cues(starts, np.searchsorted(bounds, starts, side="right"))


def mention_spans(grammar: Grammar, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every mention in normalised ``text``: start and end offsets, the condition's index in FINDINGS,
    and whether the mention states the finding is normal ("heart size is normal")."""
    found = []
    for cond in grammar.conditions:
        arr = np.array([(m.start(), m.end(), cond.index, m.lastgroup.startswith("nrm"))
                        for m in cond.mention.finditer(text)], dtype=np.int64).reshape(-1, 4)
        if cond.exclude is not None:
            arr = arr[~_covered(arr[:, 0], arr[:, 1], *_spans(cond.exclude, text), start_only=True)]
        found.append(arr)
    spans = np.concatenate(found)
    return spans[:, 0], spans[:, 1], spans[:, 2], spans[:, 3].astype(bool)


def sentence_codes(grammar: Grammar, sentences: Sequence[str]) -> np.ndarray:
    """(n, 13) int8 aggregation codes (BLANK..POSITIVE) of each sentence, in FINDINGS order."""
    g = grammar
    joined = normalize(SENTENCE_BREAK.join(sentences))
    breaks = np.array([m.start() for m in re.finditer(SENTENCE_BREAK, joined)], dtype=np.int64)
    bounds = np.union1d(breaks, _spans(g.terminator, joined)[0])
    # negation stops at more words than uncertainty ("no effusion with a chest tube in place",
    # but "suggesting malignancy with postobstructive pneumonia")
    neg_bounds = np.union1d(bounds, _spans(g.negation_terminator, joined)[0])

    def clause(pos: np.ndarray, at: np.ndarray = bounds) -> np.ndarray:
        return np.searchsorted(at, pos, side="right")

    def cues(pattern: re.Pattern[str], blockers: tuple[np.ndarray, np.ndarray] | None = None,
             at: np.ndarray = bounds) -> _Cues:
        starts, ends = _spans(pattern, joined)
        if blockers is not None:
            starts = starts[~_covered(starts, ends, *blockers)]
        return _Cues(starts, clause(starts, at))

    start, end, cond_idx, normal = mention_spans(g, joined)
    codes = np.zeros((len(sentences), len(FINDINGS)), dtype=np.int8)
    if not len(start):
        return codes
    c_start, c_end = clause(start), clause(end - 1)
    n_start, n_end = clause(start, neg_bounds), clause(end - 1, neg_bounds)
    # a hedge after a mention belongs to the nearest mention before it ("opacity, likely
    # atelectasis" leaves the opacity positive): it must come before the next mention
    starts_sorted = np.sort(start)
    next_start = np.append(starts_sorted, np.iinfo(np.int64).max)[np.searchsorted(starts_sorted, end)]

    dneg_pre, dneg_post = _spans(g.double_negation_pre, joined), _spans(g.double_negation_post, joined)
    pseudo = _spans(g.pseudo, joined)
    blockers = (np.concatenate([pseudo[0], dneg_pre[0], dneg_post[0]]),
                np.concatenate([pseudo[1], dneg_pre[1], dneg_post[1]]))
    dneg = (_Cues(dneg_pre[0], clause(dneg_pre[0])).before(start, end, c_start)
            | _Cues(dneg_post[0], clause(dneg_post[0])).after(start, end, c_end, g.post_window))
    neg = (cues(g.negation_pre, blockers, neg_bounds).before(start, end, n_start)
           | cues(g.negation_post, blockers, neg_bounds).after(start, end, n_end, g.post_window)
           | cues(g.negation_adjacent, blockers, neg_bounds).after(start, end, n_end, ADJACENT_WINDOW, outside=True)
           | subject_cues(g, joined, blockers, neg_bounds)
           .after(start, end, n_end, len(joined), outside=True))
    unc = (cues(g.uncertainty_pre, blockers).before(start, end, c_start)
           | cues(g.uncertainty_post, blockers).after(start, end, c_end, g.post_window, next_start))
    value = np.select([normal, dneg, neg, unc], [NEGATIVE, UNCERTAIN, NEGATIVE, UNCERTAIN], POSITIVE)
    np.maximum.at(codes, (np.searchsorted(breaks, start), cond_idx), value.astype(np.int8))
    return codes


def codes_to_labels(codes: np.ndarray, has_text: np.ndarray) -> np.ndarray:
    """Report codes (n, 13) -> (n, 14) float32 labels with the CheXpert No Finding rule."""
    out = np.full((len(codes), len(CONDITIONS)), np.nan, dtype=np.float32)
    out[:, :len(FINDINGS)] = _CODE_VALUE[codes]
    out[~has_text] = np.nan
    no_finding = has_text & ~(codes[:, _BLOCKS_NO_FINDING] >= UNCERTAIN).any(axis=1)
    out[no_finding, _NO_FINDING_COL] = 1.0
    return out


class RuleLabeler:
    """The offline labeler. ``label(texts)`` -> (n, 14) float32 in CheXbert condition order."""

    name = "rules"

    def __init__(self) -> None:
        self.grammar: Grammar = load_grammar()
        self.version = f"{RULES_CODE_VERSION}.{self.grammar.version}.{SPLITTER_VERSION}"

    def label(self, texts: Sequence[str]) -> np.ndarray:
        reports: dict[str, int] = {}
        inverse = np.fromiter((reports.setdefault(t or "", len(reports)) for t in texts), np.int64, len(texts))
        split = [split_sentences(t) for t in reports]
        sentences: dict[str, int] = {}
        flat = np.fromiter((sentences.setdefault(s, len(sentences)) for ss in split for s in ss), np.int64)
        counts = np.fromiter((len(ss) for ss in split), np.int64, len(split))
        distinct = list(sentences)
        codes = np.zeros((len(distinct), len(FINDINGS)), dtype=np.int8)
        for lo in range(0, len(distinct), CHUNK):
            codes[lo:lo + CHUNK] = sentence_codes(self.grammar, distinct[lo:lo + CHUNK])
        has_text = counts > 0
        report_codes = np.zeros((len(split), len(FINDINGS)), dtype=np.int8)
        if len(flat):
            offsets = (np.cumsum(counts) - counts)[has_text]
            report_codes[has_text] = np.maximum.reduceat(codes[flat], offsets, axis=0)
        return codes_to_labels(report_codes, has_text)[inverse]
