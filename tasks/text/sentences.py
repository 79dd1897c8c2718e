"""Sentence splitting for radiology text with nltk's Punkt, offline and fast.

nltk's pretrained ``punkt_tab`` model is a download; an untrained Punkt splits after "Dr." and
"i.e.". We give Punkt a fixed, versioned list of radiology abbreviations instead
(``punkt_abbreviations.txt``), which makes the splitter deterministic and network-free.

Punkt costs ~0.3 ms per report in Python, too slow for 230k reports, so plain text takes a fast
path with the same result: when every candidate boundary (".", "?" or "!" then whitespace) follows
an ordinary word of two or more letters that is not a listed abbreviation, Punkt (without learnt
collocations or orthographic context, as here) breaks at exactly those candidates. Any other text
(numbers, initials, abbreviations, "___.", ellipses, punctuation after the period) goes to Punkt
itself. tests/test_sentences.py checks both paths agree on the demo corpus and edge cases.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nltk.tokenize.punkt import PunktSentenceTokenizer

SPLITTER_VERSION = "punkt-radiology-1"

_CANDIDATE = re.compile(r"(\S+)[.?!](?=\s+\S)")
_PLAIN_WORD = re.compile(r"[A-Za-z][A-Za-z-]*[A-Za-z]")
_AWKWARD = re.compile(r"[.?!][?!)\";}\]*:@'({\[.]")


@lru_cache(maxsize=1)
def abbreviations() -> frozenset[str]:
    text = files(__package__).joinpath("punkt_abbreviations.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


@lru_cache(maxsize=1)
def _tokenizer() -> PunktSentenceTokenizer:
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer  # ~1 s: only when text needs it

    params = PunktParameters()
    params.abbrev_types = set(abbreviations())
    return PunktSentenceTokenizer(params)


def punkt_sentences(text: str) -> list[str]:
    """Punkt's split, whitespace inside each sentence collapsed, empty ones dropped."""
    return [s for s in (" ".join(sent.split()) for sent in _tokenizer().tokenize(text)) if s]


def _fast_boundaries(text: str) -> list[int] | None:
    """End offsets of the sentences when every candidate boundary is unambiguous, else None."""
    if _AWKWARD.search(text):
        return None
    ends = []
    abbrevs = abbreviations()
    for match in _CANDIDATE.finditer(text):
        word = match.group(1)
        if not _PLAIN_WORD.fullmatch(word) or word.lower() in abbrevs:
            return None
        ends.append(match.end() + 1)
    return ends


def split_sentences(text: str | None) -> list[str]:
    """Sentences of ``text`` (whitespace inside each sentence collapsed; empty ones dropped)."""
    if not text or not text.strip():
        return []
    ends = _fast_boundaries(text)
    if ends is None:
        return punkt_sentences(text)
    pieces, start = [], 0
    for end in [*ends, len(text)]:
        piece = " ".join(text[start:end].split())
        if piece:
            pieces.append(piece)
        start = end
    return pieces


def join_names(names: list[str]) -> str:
    """"a", "a and b", "a, b and c" (the original RaDialog list style)."""
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]
