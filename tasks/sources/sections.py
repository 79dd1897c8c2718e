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
from functools import lru_cache

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


@lru_cache(maxsize=4096)
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


def _sections(text: str) -> list[tuple[str, str, int]]:
    """(name, text, start) per section: the rules of :func:`split_sections` on plain tuples."""
    matches = list(_HEADING.finditer(text))
    if not matches:
        sections = [("full report", text, 0)]
    else:
        # a heading's body runs to the next heading; the search resumes at the end of the heading
        # line, and no heading can start before that line's newline, so finditer finds the same ones
        sections = [("preamble", text[: matches[0].start(1)], 0)]
        ends = [m.start() for m in matches[1:]] + [len(text)]
        for match, end in zip(matches, ends):
            start = match.end()
            sections.append((normalize_section_name(match.group(1)), text[start:end], start))
    sections = [s for s in sections if not (s[0] in _MAIN_TWO and not s[1].strip())]
    if _PARAGRAPH in sections[-1][1] and not any(s[0] in _MAIN_TWO for s in sections):
        name, body, start = sections[-1]
        head, *rest = body.split(_PARAGRAPH)
        sections[-1] = (name, head, start)
        sections.append(("last_paragraph", _PARAGRAPH.join(rest), start + len(head)))
    return sections


_MAIN_TWO = _MAIN[:2]  # impression, findings


def split_sections(text: str) -> list[Section]:
    """Split a raw report into named sections (see module docstring for the rules)."""
    return [Section(*section) for section in _sections(text)]


def clean(text: str | None) -> str:
    """Collapse all whitespace (the report's 79-column line breaks included) to single spaces."""
    return " ".join(text.split()) if text else ""


#: Sections kept per study, cleaned, in the ``reports`` table.
STUDY_SECTIONS = ("findings", "impression", "last_paragraph", "indication", "history",
                  "comparison", "technique", "examination")


def study_sections(text: str) -> dict[str, str]:
    """The last occurrence of each section of interest, whitespace-cleaned ("" when absent)."""
    out = dict.fromkeys(STUDY_SECTIONS, "")
    for name, body, _ in _sections(text):
        if name in out:
            out[name] = " ".join(body.split())
    return out


def nle_report_text(text: str) -> str:
    """The text MIMIC-NLE numbers its sentences in: every impression and findings section in
    report order, newlines removed, concatenated, with one pass of double-space collapsing."""
    parts = [body.replace("\n", "") for name, body, _ in _sections(text) if name in _MAIN_TWO]
    return "".join(parts).replace("  ", " ")
