"""The audit on real report language: hand-written rewrites of IU X-ray-like report sentences
(tests/data/paraphrase_audit.csv, our own wording) as a radiologist or an LLM would write them - a
summary, plain language, a corrected wording. Faithful rewrites must pass; rewrites that drop, add
or negate a finding must fail, naming that finding. Judged with the real rule labeler and the
audit's rules (:func:`tasks.quality.audit.compare_findings`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radialog_instruct.tasks.labeling.conditions import FINDINGS
from radialog_instruct.tasks.labeling.rules import RuleLabeler
from radialog_instruct.tasks.quality.audit import compare_findings
from radialog_instruct.tasks.quality.verdicts import ADDED, DROPPED

PAIRS = pd.read_csv(Path(__file__).parent / "data" / "paraphrase_audit.csv", dtype=str, keep_default_na=False)
EXPECTED_REASON = {"drop": DROPPED, "negate": DROPPED, "add": ADDED}


@pytest.fixture(scope="module")
def verdicts() -> list[list[tuple[str, str]]]:
    """Per pair, its failure reasons as (category, finding)."""
    labeler = RuleLabeler()
    source, output = labeler.label(PAIRS["source"].tolist()), labeler.label(PAIRS["rewrite"].tolist())
    out: list[list[tuple[str, str]]] = [[] for _ in range(len(PAIRS))]
    for task, rows in PAIRS.groupby("task").indices.items():
        result = compare_findings(task, source[rows], output[rows])
        for category, mask in result.reasons:
            for k, i in enumerate(rows):
                out[i] += [(category, FINDINGS[j]) for j in np.flatnonzero(mask[k])]
    return out


def test_the_set_covers_every_kind():
    counts = PAIRS.groupby(["task", "kind"]).size()
    assert len(PAIRS) >= 60 and set(PAIRS["kind"]) == {"faithful", "drop", "add", "negate"}
    assert (counts >= 4).all(), counts


@pytest.mark.parametrize("i", range(len(PAIRS)), ids=[f"{t}-{k}-{i}" for i, (t, k) in
                                                      enumerate(zip(PAIRS["task"], PAIRS["kind"]))])
def test_rewrite_verdict(verdicts: list[list[tuple[str, str]]], i: int):
    pair = PAIRS.iloc[i]
    reasons = verdicts[i]
    if pair["kind"] == "faithful":
        assert reasons == [], f"{pair['rewrite']!r} should pass"
    else:
        assert (EXPECTED_REASON[pair["kind"]], pair["finding"]) in reasons, \
            f"{pair['rewrite']!r} should fail with {pair['kind']} {pair['finding']}; got {reasons}"
