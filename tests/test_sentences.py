"""The fast sentence-split path gives exactly nltk Punkt's result (with the same abbreviations)."""

import pandas as pd
import pytest

from radialog_instruct.tasks.text.sentences import _fast_boundaries, punkt_sentences, split_sentences

from reference import MIMIC_EXAMPLE, REPO

EDGE_CASES = [
    "Heart size normal. lungs clear.", "Vitamin A. Next one.", "See fig 2. Then.", "It is 4.5 cm. Next.",
    "Item 1. Lungs clear. 2. no effusion.", "No. 5 is big. Yes.", "Clear (right lobe). Next.",
    "It is large.) Next", "Ends with ___. Next", "Wow! Yes? no. Ok", "e.g. this. And", "Dr. Smith said. OK",
    "done...  next", "The ET tube.Next", "x. Y", "Hi.\nThere", "Right-sided effusion.  Left clear.",
    "Compared to ___, unchanged. Tubes in place vs. removed.", "Lines and tubes i.e. ETT. Stable.",
]


def corpus() -> list[str]:
    reports = pd.read_csv(REPO / "bench" / "data" / "labeler_gold.csv")["report"].tolist()
    reports.append(MIMIC_EXAMPLE.read_text())
    for path in sorted((REPO / "data" / "demo" / "mimic-cxr" / "files").rglob("*.txt")):
        reports.append(path.read_text())
    return reports + EDGE_CASES


@pytest.mark.parametrize("text", corpus())
def test_fast_path_equals_punkt(text):
    assert split_sentences(text) == punkt_sentences(text)


def test_fast_path_is_taken_for_plain_text_and_not_for_abbreviations():
    assert _fast_boundaries("Heart size is normal. No effusion.  Lungs clear.") is not None
    assert _fast_boundaries("Discussed with Dr. ___ at noon. Stable.") is None
    assert _fast_boundaries("Nodule measures 4 mm. Stable.") is not None  # "mm" is a plain word
    assert _fast_boundaries("Seen on image 4. Stable.") is None  # numbers go to Punkt
