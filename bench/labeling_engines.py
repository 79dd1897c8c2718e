"""Negation / uncertainty engines compared on real reports (the IU X-ray dev set).

    python bench/labeling_engines.py [--engines mention,negation-window,rules,negspacy,medspacy]

Every engine sees the same mentions - the rule labeler's mention patterns (``phrases/mentions.yaml``)
on each normalised sentence - and decides only each mention's value; the CheXpert aggregation and
the scoring (:func:`tasks.labeling.openi.score_positives`) are shared:

* ``mention``: every mention positive (a "normal" statement negative);
* ``negation-window``: negative when a negation word stands at most five words before the mention
  (NegEx's original window), else positive;
* ``negspacy``: negspacy's NegEx component with its ``en_clinical`` termset (negation only);
* ``medspacy``: medspaCy's ConText with its default English rules: negated -> 0, uncertain or
  hypothetical -> -1, historical or family -> not mentioned;
* ``rules``: the project's rule labeler as it labels reports (its own cues and scopes).

negspacy and medspaCy are not project dependencies; install them beside the project to run those
engines (medspaCy 1.3 needs spaCy < 3.8, hence numpy < 2: a separate environment). Results are
merged into bench/results/labeling-engines.json, one entry per engine.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from radialog_instruct.tasks.io import read_json, write_json
from radialog_instruct.tasks.labeling.conditions import FINDINGS
from radialog_instruct.tasks.labeling.openi import load_indexed_reports, score_positives
from radialog_instruct.tasks.labeling.rules import (
    BLANK,
    NEGATIVE,
    POSITIVE,
    UNCERTAIN,
    RuleLabeler,
    codes_to_labels,
    mention_spans,
    normalize,
)
from radialog_instruct.tasks.text.sentences import split_sentences

BENCH = Path(__file__).resolve().parent
#: The real dev set: $RADIALOG_REFERENCE_DATA or ../shared/data next to the checkout (as the tests).
DEV_SET = Path(os.environ.get("RADIALOG_REFERENCE_DATA", BENCH.parent.parent / "shared" / "data")) \
    / "iu-xray-dev" / "reports.csv"
RESULTS = BENCH / "results" / "labeling-engines.json"

#: A sentence's mentions: (start, end, index in FINDINGS, states-normal) on its normalised text.
Mention = tuple[int, int, int, bool]
#: Decides the codes (BLANK..POSITIVE) of a normalised sentence's mentions.
Decide = Callable[[str, list[Mention]], list[int]]

_NEGATION_WORD = re.compile(r"\b(?:no|not|without|negative for|free of|absence of|absent|neither|nor)\b")
WINDOW_WORDS = 5


def decide_mention(text: str, mentions: list[Mention]) -> list[int]:
    return [NEGATIVE if normal else POSITIVE for *_, normal in mentions]


def decide_negation_window(text: str, mentions: list[Mention]) -> list[int]:
    out = []
    for start, _, _, normal in mentions:
        before = " ".join(text[:start].split()[-WINDOW_WORDS:])
        out.append(NEGATIVE if normal or _NEGATION_WORD.search(before) else POSITIVE)
    return out


def _spacy_decider(nlp: Any, component: Callable[[Any], Any], value: Callable[[Any], int]) -> Decide:
    """Runs ``component`` on a doc whose entities are one condition's mentions at a time (spaCy
    entities may not overlap, mentions of two conditions may)."""
    from spacy.util import filter_spans

    def decide(text: str, mentions: list[Mention]) -> list[int]:
        doc = nlp.make_doc(text)
        for k, token in enumerate(doc):  # one sentence per doc
            token.is_sent_start = k == 0
        out = [BLANK] * len(mentions)
        for cond in {m[2] for m in mentions}:
            mine = [i for i, m in enumerate(mentions) if m[2] == cond]
            spans = {i: doc.char_span(mentions[i][0], mentions[i][1], label="FINDING", alignment_mode="expand")
                     for i in mine}
            doc.ents = filter_spans([s for s in spans.values() if s is not None])
            component(doc)
            codes = {(e.start_char, e.end_char): value(e) for e in doc.ents}
            for i in mine:
                span = spans[i]
                code = codes.get((span.start_char, span.end_char)) if span is not None else None
                out[i] = NEGATIVE if mentions[i][3] else (POSITIVE if code is None else code)
        return out

    return decide


def negspacy_decider() -> Decide:
    import spacy
    from negspacy.negation import Negex
    from negspacy.termsets import termset

    nlp = spacy.blank("en")
    negex = Negex(nlp, "negex", termset("en_clinical").get_patterns())
    return _spacy_decider(nlp, negex, lambda e: NEGATIVE if e._.negex else POSITIVE)


def medspacy_decider() -> Decide:
    import spacy
    from medspacy.context import ConText

    nlp = spacy.blank("en")
    context = ConText(nlp)

    def value(e: Any) -> int:
        if e._.is_negated:
            return NEGATIVE
        if e._.is_uncertain or e._.is_hypothetical:
            return UNCERTAIN
        if e._.is_historical or e._.is_family:
            return BLANK
        return POSITIVE

    return _spacy_decider(nlp, context, value)


def engine_labels(decide: Decide, texts: Sequence[str]) -> np.ndarray:
    """(n, 14) labels of ``texts`` with ``decide`` on the rule labeler's mentions."""
    grammar = RuleLabeler().grammar
    codes = np.zeros((len(texts), len(FINDINGS)), np.int8)
    memo: dict[str, np.ndarray] = {}
    for row, text in enumerate(texts):
        for sentence in split_sentences(text):
            if sentence not in memo:
                norm = normalize(sentence)
                start, end, cond, normal = mention_spans(grammar, norm)
                mentions = list(zip(start.tolist(), end.tolist(), cond.tolist(), normal.tolist()))
                found = np.zeros(len(FINDINGS), np.int8)
                for (*_, c, _), code in zip(mentions, decide(norm, mentions)):
                    found[c] = max(found[c], code)
                memo[sentence] = found
            np.maximum(codes[row], memo[sentence], out=codes[row])
    return codes_to_labels(codes, np.array([bool(t.strip()) for t in texts]))


ENGINES: dict[str, Callable[[], Decide | None]] = {
    "mention": lambda: decide_mention,
    "negation-window": lambda: decide_negation_window,
    "negspacy": negspacy_decider,
    "medspacy": medspacy_decider,
    "rules": lambda: None,  # the labeler itself
}
PACKAGES = {"negspacy": ("negspacy", "spacy"), "medspacy": ("medspacy", "spacy")}


def run_engine(name: str, texts: Sequence[str]) -> tuple[np.ndarray, float]:
    decide = ENGINES[name]()
    started = time.perf_counter()
    labels = RuleLabeler().label(texts) if decide is None else engine_labels(decide, texts)
    return labels, time.perf_counter() - started


def summary(scores: dict[str, Any]) -> dict[str, Any]:
    return {"macro_f1": round(scores["macro_f1"], 4),
            "per_condition": {c: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()}
                              for c, s in scores["per_condition"].items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="mention,negation-window,rules",
                        help="comma-separated; negspacy and medspacy need those packages installed")
    parser.add_argument("--dev-set", type=Path, default=DEV_SET)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    dev = load_indexed_reports(args.dev_set)
    results = read_json(args.out) if args.out.exists() else {}
    for name in args.engines.split(","):
        labels, seconds = run_engine(name, dev.text)
        entry: dict[str, Any] = {"reports": len(dev.text), "seconds": round(seconds, 2),
                                 "packages": {p: version(p) for p in PACKAGES.get(name, ())}}
        for key, unc in (("uncertain_as_negative", False), ("uncertain_as_positive", True)):
            entry[key] = summary(score_positives(labels, dev.reference, uncertain_positive=unc))
        results[name] = entry
        print(f"{name:16s} macro-F1 {entry['uncertain_as_negative']['macro_f1']:.3f} "
              f"(uncertain as positive {entry['uncertain_as_positive']['macro_f1']:.3f})  {seconds:.1f} s", flush=True)
    write_json(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
