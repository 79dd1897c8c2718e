"""Section extraction on the real published MIMIC-CXR example report and on the rule's edge cases."""

from radialog_instruct.tasks.sources.sections import (
    nle_report_text,
    normalize_section_name,
    split_sections,
    study_sections,
)

from reference import MIMIC_EXAMPLE

EXAMPLE = MIMIC_EXAMPLE


def example_text() -> str:
    return EXAMPLE.read_text(encoding="utf-8")


def test_example_report_sections():
    names = [s.name for s in split_sections(example_text())]
    assert names == ["preamble", "examination", "indication", "technique", "comparison", "findings", "impression"]
    parts = study_sections(example_text())
    assert parts["findings"].startswith("Cardiac size cannot be evaluated. Large left pleural effusion is new.")
    assert parts["findings"].endswith("There are mild degenerative changes in the thoracic spine")
    assert "\n" not in parts["findings"] and "  " not in parts["findings"]
    assert parts["impression"] == "Large left pleural effusion"
    assert parts["comparison"] == "___"  # de-identification marks are kept
    assert parts["indication"].startswith("___ year old woman with ?pleural effusion")
    assert parts["technique"] == "Chest PA and lateral"


def test_heading_normalisation():
    assert normalize_section_name("FINDINGS AND IMPRESSION") == "impression"
    assert normalize_section_name("CONCLUSION") == "impression"
    assert normalize_section_name("IMPRESSOIN") == "impression"
    assert normalize_section_name("PA AND LATERAL VIEWS OF THE CHEST") == "findings"
    assert normalize_section_name("REASON FOR EXAMINATION") == "indication"
    assert normalize_section_name("ADDENDUM 2") == "addendum"
    assert normalize_section_name("NOTIFICATION") == "notification"


def test_last_section_wins_and_empty_findings_removed():
    text = (" FINAL REPORT\n FINDINGS: \n \n\n IMPRESSION: first\n \n IMPRESSION: second\n")
    names = [s.name for s in split_sections(text)]
    assert "findings" not in names  # empty findings section dropped
    assert study_sections(text)["impression"] == "second"


def test_no_heading_falls_back_to_last_paragraph():
    text = "                FINAL REPORT\n Heart size normal.\n \n No acute process.\n"
    sections = split_sections(text)
    assert [s.name for s in sections] == ["full report", "last_paragraph"]
    assert study_sections(text)["last_paragraph"] == "No acute process."


def test_nle_text_joins_findings_and_impression():
    text = nle_report_text(example_text())
    assert "Cardiac size cannot be evaluated." in text
    assert text.rstrip().endswith("Large left pleural effusion")
    assert "\n" not in text


def test_heading_on_its_own_line_takes_the_newline_before_the_next_one():
    """A heading's ``:\\s`` consumes the line break, so a heading directly below an empty one is
    body text; with any text in between both are headings."""
    assert [(s.name, s.text) for s in split_sections("\n FINDINGS:\n IMPRESSION: x\n")] == [
        ("preamble", "\n "), ("findings", " IMPRESSION: x\n")]
    assert [(s.name, s.text) for s in split_sections("\n FINDINGS: a\n IMPRESSION: x\n")] == [
        ("preamble", "\n "), ("findings", "a"), ("impression", "x\n")]
