"""How the original scripts wrote the v1 records, where this project's default reads differently.

``plan.fidelity`` selects the mode: ``original`` writes the v1 records as RaDialog's
``data/create_data.py`` and ``data/instruct_tasks.py`` do (with the strings imported by
``import-prompts``); ``improved`` (the default for v1.1) keeps this project's readings. ``auto``
means original exactly when the preset is ``radialog-v1`` and ``plan.templates_dir`` is a folder
written by ``import-prompts``. README, "Differences from the original", lists every difference.

One small function per quirk, each a plain function of its inputs and the flag, so that a builder
reads the same in both modes:

* condition names: CheXpert's capitalised label names (``Pleural Effusion``) in the original,
  lower-cased "spoken" names here;
* the findings listed in a report-based task's history and in the complete findings-QA answer: the
  lower-cased positive labels, which are empty when nothing is positive (the original's
  ``Predicted Findings: .`` and empty answers), where this project says "no common findings";
* the fuse step: the original formats each instruct record's whole chat string with
  ``.format(findings=...)`` (:func:`fuse_text`);
* image allocation: ``torch.utils.data.random_split`` cuts a random order into near-equal blocks
  (:func:`near_equal_blocks`) where this project draws each image's part independently.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..labeling.conditions import spoken_name

AUTO, ORIGINAL, IMPROVED = "auto", "original", "improved"
FIDELITIES = (AUTO, ORIGINAL, IMPROVED)
NO_COMMON_FINDINGS = "no common findings"
#: the only split the original built from
ORIGINAL_SPLITS = ("train",)


def condition_name(condition: str, *, original: bool) -> str:
    """A condition as the prompts name it: "Pleural Effusion" (original) or "pleural effusion"."""
    return condition if original else spoken_name(condition)


def findings_listing(structured_findings: str | None, *, original: bool) -> str:
    """The positive findings, lower-cased, as a history's ``Predicted Findings`` and as the
    complete findings-QA answer. Without positives: "" in the original (its fuse step formats with
    the empty label string; the CPaQA answer is the empty join), "no common findings" here."""
    listing = (structured_findings or "").lower().strip()
    return listing if original or listing else NO_COMMON_FINDINGS


def fuse_text(text: str, findings: str) -> str | None:
    """``text.format(findings=...)`` as the original's fuse step applies it to the whole chat string
    of an instruct record (report and question included); None where that raises (a stray brace),
    i.e. where the original script would have stopped."""
    try:
        return text.format(findings=findings)
    except (KeyError, IndexError, ValueError, AttributeError):
        return None


def near_equal_blocks(u: np.ndarray, labels: Sequence[object]) -> np.ndarray:
    """``random_split`` of ``len(u)`` items into ``len(labels)`` parts: the items in the order of
    their draws ``u``, cut into consecutive blocks of ``n // k`` items, the first ``n % k`` blocks one
    larger. Returns each item's label."""
    n, k = len(u), len(labels)
    sizes = [n // k + (i < n % k) for i in range(k)]
    out = np.empty(n, dtype=object)
    out[np.argsort(u, kind="stable")] = np.repeat(np.asarray(labels, dtype=object), sizes)
    return out
