"""Section extraction for MIMIC-CXR free-text reports, following the MIMIC-CXR team's published
rules (MIT-LCP/mimic-cxr ``txt/section_parser.py``):

* a heading is a line that starts with a space, then capitals / spaces / ``()/,-``, then ``:``;
* text before the first heading is the ``preamble``; a report without headings is ``full report``;
* heading names are normalised (typos, synonyms such as "conclusion" -> impression, and view
  phrases such as "PA AND LATERAL" -> findings);
* empty findings / impression sections are removed; when neither remains and the last section has
  more than one paragraph, its paragraphs after the first become ``last_paragraph``;
* per study, the *last* section of a given name wins.

The study-specific overrides of MIT's ``custom_mimic_cxr_rules`` (about fifty hand-fixed studies)
are not applied. ``___`` de-identification marks are kept as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADING = re.compile(r"\n ([A-Z ()/,-]+):\s", re.DOTALL)

#: Heading spellings seen in MIMIC-CXR and the canonical section they belong to.
_CANONICAL = {
    "findings and impression": "impression",
    "findings/impression": "impression",
    "findings/ impression": "impression",
    "impression and findings": "impression",
    "conclusion": "impression",
    "conclusions": "impression",
    "summary": "impression",
    "impresson": "impression",
    "imprression": "impression",
    "imoression": "impression",
    "impressoin": "impression",
    "imprssion": "impression",
    "impresion": "impression",
    "imperssion": "impression",
    "mpression": "impression",
    "impession": "impression",
    "finding": "findings",
    "findins": "findings",
    "findindgs": "findings",
    "findgings": "findings",
    "findngs": "findings",
    "findnings": "findings",
    "finidngs": "findings",
    "reference findings": "findings",
    "chest, two views": "findings",
    "comparisons": "comparison",
    "comparison exam": "comparison",
    "comparison film": "comparison",
    "reference exam": "comparison",
    "comparision": "comparison",
    "comparsion": "comparison",
    "comparrison": "comparison",
    "comparisions": "comparison",
    "indication": "indication",
    "idication": "indication",
    "clinical indication": "indication",
    "reason for exam": "indication",
    "reason for examination": "indication",
    "history": "history",
    "clinical history": "history",
    "clinical information": "history",
    "patient history": "history",
    "pfi": "history",
    "examination": "examination",
    "exam": "examination",
    "type of examination": "examination",
    "technique": "technique",
    "recommendation": "recommendations",
    "recommendations": "recommendations",
    "recommendation(s)": "recommendations",
    "wet read": "wet read",
    "wetread": "wet read",
    "addendum": "addendum",
    "notification": "notification",
    "comment": "comment",
    "date": "date",
}

#: Main sections recognised by substring when a heading is not in the table above.
_MAIN = ("impression", "findings", "history", "comparison", "addendum")

#: Headings that describe the whole study (view descriptions) are findings.
_VIEW_PHRASE = re.compile(
    r"(chest|portable|pa and lateral|lateral and pa|ap and lateral|lateral and ap|frontal and|"
    r"two views|frontal view|pa view|ap view|one view|lateral view|bone window|frontal upright|"
    r"frontal semi-upright|ribs|pa and lat)"
)

_PARAGRAPH = "\n \n"


def normalize_section_name(name: str) -> str:
    name = name.lower().strip()
    if name in _CANONICAL:
        return _CANONICAL[name]
    for main in _MAIN:
        if main in name:
            return main
    if _VIEW_PHRASE.search(name):
        return "findings"
    return name


@dataclass(frozen=True)
class Section:
    name: str
    text: str
    start: int


def split_sections(text: str) -> list[Section]:
    """Split a raw report into named sections (see module docstring for the rules)."""
    first = _HEADING.search(text)
    if first is None:
        sections = [Section("full report", text, 0)]
    else:
        sections = [Section("preamble", text[: first.start(1)], 0)]
        match = first
        while match is not None:
            name = match.group(1)
            body_start = match.end()
            newline = text.find("\n", body_start)
            resume = body_start + (newline - body_start if newline != -1 else 0)
            match = _HEADING.search(text, resume)
            body_end = match.start() if match is not None else len(text)
            sections.append(Section(normalize_section_name(name), text[body_start:body_end], body_start))

    sections = [s for s in sections
                if not (s.name in ("impression", "findings") and not s.text.strip())]
    names = {s.name for s in sections}
    if "impression" not in names and "findings" not in names and _PARAGRAPH in sections[-1].text:
        last = sections[-1]
        head, *rest = last.text.split(_PARAGRAPH)
        sections[-1] = Section(last.name, head, last.start)
        sections.append(Section("last_paragraph", _PARAGRAPH.join(rest), last.start + len(head)))
    return sections


def clean(text: str | None) -> str:
    """Collapse all whitespace (the report's 79-column line breaks included) to single spaces."""
    return " ".join(text.split()) if text else ""


#: Sections kept per study, cleaned, in the ``reports`` table.
STUDY_SECTIONS = ("findings", "impression", "last_paragraph", "indication", "history",
                  "comparison", "technique", "examination")


def study_sections(text: str) -> dict[str, str]:
    """The last occurrence of each section of interest, whitespace-cleaned ("" when absent)."""
    out = dict.fromkeys(STUDY_SECTIONS, "")
    for sec in split_sections(text):
        if sec.name in out:
            out[sec.name] = clean(sec.text)
    return out


def nle_report_text(text: str) -> str:
    """The text MIMIC-NLE numbers its sentences in: every impression and findings section in
    report order, newlines removed, concatenated, with one pass of double-space collapsing."""
    parts = [s.text.replace("\n", "") for s in split_sections(text)
             if s.name in ("impression", "findings")]
    return "".join(parts).replace("  ", " ")
