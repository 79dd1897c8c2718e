"""Audit verdicts on hand-written faithful and unfaithful answers for every replay task, judged with
the real rule labeler, and the flags (empty, truncated, echoed prompt, non-English)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from radialog_instruct.tasks.instruct.templates import load_templates
from radialog_instruct.tasks.labeling.interface import label_texts
from radialog_instruct.tasks.labeling.rules import RuleLabeler
from radialog_instruct.tasks.quality.audit import (
    AuditConfig,
    acknowledges_abnormality,
    audit_rows,
    before_text,
    echo_ratio,
    is_english,
)
from radialog_instruct.tasks.quality.audit_report import examples, render_html, render_markdown
from radialog_instruct.tasks.quality.verdicts import summarize

LABELER = RuleLabeler()
REGIONS = load_templates("region_qa").extra["regions"]
CFG = AuditConfig()

EFFUSION_AND_CARDIOMEGALY = "There is a small left pleural effusion. Mild cardiomegaly. No pneumothorax."
CORRECTION_PROMPT = ("Please rewrite the report with these corrections. The patient does not have atelectasis: the "
                     "corrected report must not mention this. The patient has cardiomegaly and pneumonia: the "
                     "corrected report must mention this. Keep the rest of the report unchanged and answer with "
                     "the corrected report only.")
REPORT_TO_CORRECT = "Plate-like atelectasis is seen at the left base. There is no evidence of pneumonia."


def audit(task: str, source: str, output: str, *, instruction: str = "Summarize the report.",
          region: str | None = None, finish_reason: str = "stop") -> dict[str, Any]:
    """The audit struct of one replay row whose study's findings section is ``source``."""
    if task == "correction":
        gen = [{"role": "user", "content": "Please write the findings section of a radiology report."},
               {"role": "assistant", "content": REPORT_TO_CORRECT}, {"role": "user", "content": CORRECTION_PROMPT}]
    else:
        gen = [{"role": "user", "content": f"Report: {source}\n{instruction}"}]
    frame = pd.DataFrame({"task": [task], "task_mode": [region], "instruction": [instruction], "output": [output],
                          "gen_messages": [gen], "generation": [{"finish_reason": finish_reason}]})
    predicted = label_texts(LABELER, [REPORT_TO_CORRECT if task == "correction" else ""])
    (row,) = audit_rows(frame, LABELER.label([source]), label_texts(LABELER, [output]), predicted, REGIONS, CFG,
                        "rules@test")
    return row


# --- summarization -----------------------------------------------------------------------------

def test_summary_keeping_every_finding_passes():
    row = audit("summarization", EFFUSION_AND_CARDIOMEGALY, "Small left pleural effusion and mild cardiomegaly.")
    assert row["verdict"] == "pass" and row["reasons"] == []
    assert row["kept"] == ["Cardiomegaly", "Pleural Effusion"] and row["dropped"] == [] and row["added"] == []
    assert row["source_findings"] == ["Cardiomegaly", "Pleural Effusion"]
    assert row["labeler"] == "rules@test"


def test_summary_dropping_a_finding_fails():
    row = audit("summarization", EFFUSION_AND_CARDIOMEGALY, "Mild cardiomegaly is seen.")
    assert row["verdict"] == "fail"
    assert row["reasons"] == ["dropped: Pleural Effusion"]
    assert row["kept"] == ["Cardiomegaly"] and row["dropped"] == ["Pleural Effusion"]


def test_summary_adding_a_finding_fails():
    row = audit("summarization", EFFUSION_AND_CARDIOMEGALY,
                "Small left pleural effusion, mild cardiomegaly and a right lower lobe pneumonia.")
    assert row["reasons"] == ["added: Pneumonia"]
    assert row["output_findings"] == ["Cardiomegaly", "Pneumonia", "Pleural Effusion"]


def test_summary_hedging_a_finding_drops_it():
    row = audit("summarization", "Moderate pulmonary edema.", "There may be some pulmonary edema in the lungs.")
    assert row["reasons"] == ["dropped: Edema"]


# --- easy language -----------------------------------------------------------------------------

def test_easy_language_may_hedge():
    row = audit("easy_language", "Moderate pulmonary edema. The heart is enlarged.",
                "There is some fluid in the lungs, which may be pulmonary edema, and the heart is enlarged.",
                instruction="Explain the report in simple words.")
    assert row["verdict"] == "pass"
    assert row["kept"] == ["Cardiomegaly", "Edema"]


def test_easy_language_calling_an_abnormal_study_normal_fails():
    row = audit("easy_language", "Moderate pulmonary edema. The heart is enlarged.",
                "The lungs and the heart look normal, there is nothing to worry about.",
                instruction="Explain the report in simple words.")
    assert row["verdict"] == "fail"
    assert row["reasons"] == ["dropped: Cardiomegaly, Edema"]


# --- correction --------------------------------------------------------------------------------

def test_correction_that_adds_and_removes_as_asked_passes():
    row = audit("correction", "The heart is enlarged. There is a right lower lobe pneumonia.",
                "The heart is enlarged. There is a right lower lobe pneumonia.")
    assert row["verdict"] == "pass"
    assert row["kept"] == ["Cardiomegaly", "Pneumonia"]


@pytest.mark.parametrize("answer, reasons", [
    ("Plate-like atelectasis is seen at the left base. The heart is enlarged. There is pneumonia.",
     ["not removed: Atelectasis"]),
    ("There is no evidence of pneumonia. The heart is enlarged.", ["not added: Pneumonia"]),
    ("The heart is enlarged. There is a right lower lobe pneumonia and a small pleural effusion.",
     ["added: Pleural Effusion"]),
    (REPORT_TO_CORRECT, ["not added: Cardiomegaly, Pneumonia", "not removed: Atelectasis"]),
])
def test_correction_not_following_the_instruction_fails(answer: str, reasons: list[str]):
    row = audit("correction", "The heart is enlarged. There is a right lower lobe pneumonia.", answer)
    assert row["verdict"] == "fail"
    assert row["reasons"] == reasons


# --- region QA ---------------------------------------------------------------------------------

HEART = "Is the patient's heart healthy?"
PLEURA = "Is there anything wrong with the pleura?"


@pytest.mark.parametrize("question, region, answer", [
    (HEART, "heart", "No, the heart is mildly enlarged."),
    (HEART, "heart", "No, it is not healthy."),
    ("Are there any abnormalities in the lungs?", "lungs", "The lungs are clear, but the heart is enlarged."),
    (PLEURA, "pleura", "No, the pleura looks normal."),
])
def test_region_answer_agreeing_with_the_region_passes(question: str, region: str, answer: str):
    source = "Mild cardiomegaly. The lungs are clear."
    row = audit("region_qa", source, answer, instruction=question, region=region)
    assert row["verdict"] == "pass", row["reasons"]
    assert set(row["source_findings"]) <= set(REGIONS[region])


def test_region_answer_denying_a_finding_of_the_region_fails():
    row = audit("region_qa", "Mild cardiomegaly. The lungs are clear.", "Yes, the heart is healthy.",
                instruction=HEART, region="heart")
    assert row["reasons"] == ["dropped: Cardiomegaly"]


def test_region_answer_inventing_a_finding_of_the_region_fails():
    row = audit("region_qa", "Mild cardiomegaly. The lungs are clear.", "Yes, there is a large pleural effusion.",
                instruction=PLEURA, region="pleura")
    assert row["reasons"] == ["added: Pleural Effusion"]
    assert row["source_findings"] == []


def test_acknowledging_an_abnormality():
    assert acknowledges_abnormality("Are there any abnormalities in the lungs?", "Yes, a few.")
    assert not acknowledges_abnormality("Is the cardiac silhouette normal?", "Yes, it is.")
    assert acknowledges_abnormality("Is the cardiac silhouette normal?", "No, it is abnormal.")
    assert not acknowledges_abnormality("Is the heart healthy?", "No abnormality is seen in the heart.")
    assert not acknowledges_abnormality("Describe the bones.", "There are no osseous abnormalities.")
    assert acknowledges_abnormality("Describe the bones.", "Normal ribs. There is an abnormality of the clavicle.")


# --- flags -------------------------------------------------------------------------------------

def test_empty_output_fails_with_that_reason_only():
    row = audit("summarization", EFFUSION_AND_CARDIOMEGALY, "   ")
    assert row["reasons"] == ["empty output"]


def test_truncated_output_fails_even_when_faithful():
    row = audit("summarization", EFFUSION_AND_CARDIOMEGALY, "Small left pleural effusion and mild cardiomegaly.",
                finish_reason="length")
    assert row["reasons"] == ["truncated"]


@pytest.mark.parametrize("output", [
    f"Report: {EFFUSION_AND_CARDIOMEGALY}",
    f"{EFFUSION_AND_CARDIOMEGALY} Summarize the report in a few words please.",
    "Please summarize the report in a few words. Small left pleural effusion and mild cardiomegaly.",
])
def test_echoed_prompt_fails(output: str):
    row = audit("summarization", EFFUSION_AND_CARDIOMEGALY, output,
                instruction="Please summarize the report in a few words.")
    assert "echoed prompt" in row["reasons"]


def test_echo_ratio_counts_prompt_trigrams():
    prompt = "Report: the heart is enlarged and there is a small effusion"
    assert echo_ratio(prompt, prompt) == 1.0
    assert echo_ratio(prompt, "Cardiomegaly with a small effusion.") == pytest.approx(1 / 9)  # "a small effusion"


@pytest.mark.parametrize("text", [
    "Das Herz ist leicht vergrößert und es gibt einen kleinen Pleuraerguss auf der linken Seite.",
    "心脏轻度增大，左侧少量胸腔积液。",
    "12 345 678 --- 90",
])
def test_non_english_fails(text: str):
    row = audit("summarization", EFFUSION_AND_CARDIOMEGALY, text)
    assert "non-English" in row["reasons"]


@pytest.mark.parametrize("text", [
    "Cardiomegaly. Small left pleural effusion.",
    "- Mild cardiomegaly\n- Small left pleural effusion\n- No pneumothorax\n- Right PICC line tip in the SVC",
    "The heart is a little big and there is some fluid next to the left lung.",
])
def test_radiology_english_is_english(text: str):
    assert is_english(text, CFG)


def test_before_text_shows_the_report_to_correct():
    gen = [{"role": "user", "content": "Write a report."}, {"role": "assistant", "content": REPORT_TO_CORRECT},
           {"role": "user", "content": CORRECTION_PROMPT}]
    assert before_text(gen) == f"{REPORT_TO_CORRECT}\n\n{CORRECTION_PROMPT}"
    assert before_text([{"role": "user", "content": "Report: x\nSummarize."}]) == "Report: x\nSummarize."


def test_report_of_an_empty_audit():
    frame = pd.DataFrame({"sample_id": [], "task": [], "output": [], "audit": [], "task_mode": []})
    summary = summarize(frame, "rules@test", "requested (rules)")
    assert summary["rows"] == 0 and summary["pass_rate"] is None and summary["tasks"] == {}
    shown = examples(frame, 3, lambda ids: {})
    assert "No failures." in render_html(frame, summary, shown) and "<img" not in render_html(frame, summary, shown)
    assert "0 replay rows audited" in render_markdown(summary, shown)
