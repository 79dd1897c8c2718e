"""Sentence splitting for radiology text with nltk's Punkt, offline.

nltk's pretrained ``punkt_tab`` model is a download; an untrained Punkt splits after "Dr." and
"i.e.". We give Punkt a fixed, versioned list of radiology abbreviations instead
(``punkt_abbreviations.txt``), which makes the splitter deterministic and network-free.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

SPLITTER_VERSION = "punkt-radiology-1"


@lru_cache(maxsize=1)
def _tokenizer() -> PunktSentenceTokenizer:
    text = files(__package__).joinpath("punkt_abbreviations.txt").read_text(encoding="utf-8")
    params = PunktParameters()
    params.abbrev_types = {line.strip() for line in text.splitlines()
                           if line.strip() and not line.startswith("#")}
    return PunktSentenceTokenizer(params)


def split_sentences(text: str | None) -> list[str]:
    """Sentences of ``text`` (whitespace inside each sentence collapsed; empty ones dropped)."""
    if not text or not text.strip():
        return []
    out = []
    for sent in _tokenizer().tokenize(text):
        sent = " ".join(sent.split())
        if sent:
            out.append(sent)
    return out


def join_names(names: list[str]) -> str:
    """"a", "a and b", "a, b and c" (the original RaDialog list style)."""
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]
