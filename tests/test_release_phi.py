"""The release's PHI scan: each kind of identifier is caught, radiology text with MIMIC's ``___``
masks is not, and only text fields are scanned (ids are expected)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from radialog_instruct.tasks.release.phi_scan import scan_file, scan_text, shape

from reference import DEMO, MIMIC_EXAMPLE


@pytest.mark.parametrize("text, kind", [
    ("Compared with the study of 01/02/2019, unchanged.", "date"),
    ("Prior radiograph 2019-11-02 showed a small effusion.", "date"),
    ("Compared to January 2, 2019.", "date"),
    ("Compared to 2nd Jan. 2019.", "date"),
    ("Please call 617-555-0143 with questions.", "phone number"),
    ("Reached at (617) 555-0143.", "phone number"),
    ("Pager 555-0143.", "phone number"),
    ("Report copied to jdoe@hospital.org for review.", "e-mail address"),
    ("Patient 12345678 was imaged supine.", "MRN-like number"),
    ("MRN: 4411 on the requisition.", "MRN-like number"),
    ("Findings discussed with Dr. Smith at 10:30.", "name"),
    ("Mrs. O'Brien reports chest pain.", "name"),
    ("Results were discussed with John Smith at the bedside.", "name"),
    ("Findings were paged to Jane Q. Doe in the ICU.", "name"),
])
def test_each_kind_is_caught(text: str, kind: str):
    assert kind in [k for k, _, _ in scan_text(text)]


RADIOLOGY = [
    "INDICATION:  ___ year old woman with ?pleural effusion  // ?pleural effusion",
    "COMPARISON:  Chest radiograph from ___ at 08:15.",
    "Findings discussed with Dr. ___ by telephone at 10:15 a.m. on ___, 2 minutes after discovery.",
    "The findings were discussed with the Emergency Department physician at the time of the study.",
    "Notified Dr. ___ at 3:45 p.m. The patient was informed of the results.",
    "Right PICC line tip at the cavoatrial junction. ET tube 4.5 cm above the carina.",
    "A 1.2 x 0.8 cm nodule in the right upper lobe (series 3, image 45), 2/5 of the prior size.",
    "Compression deformity of T10-T12 vertebral bodies. Fractures of ribs 5-7 on the left.",
    "Blood pressure 120/80. MR findings of the abdomen are not included. Ms ___ tolerated the exam.",
    "Dictated by: ___. Signed by the radiology resident on ___.",
]


@pytest.mark.parametrize("text", RADIOLOGY)
def test_radiology_text_with_masks_passes(text: str):
    assert scan_text(text) == []


def test_real_example_report_and_demo_reports_pass():
    texts = [MIMIC_EXAMPLE.read_text()] + [p.read_text() for p in sorted((DEMO / "mimic-cxr").rglob("s*.txt"))]
    assert len(texts) > 100
    assert [(i, hit) for i, text in enumerate(texts) for hit in scan_text(text)] == []


def test_hits_show_shapes_not_text():
    (hit,) = scan_text("Call Dr. Smith")
    assert hit == ("name", 5, "Xx. Xxxxx")
    assert shape("617-555-0143 jdoe@x.org") == "999-999-9999 xxxx@x.xxx"


def test_only_text_fields_are_scanned(tmp_path: Path):
    path = tmp_path / "flat.json"
    path.write_text(json.dumps([
        {"dicom": "12345678", "instruction": "Describe the image.", "input": "", "output": "Normal."},
        {"dicom": "87654321", "instruction": "USER: Any change since 01/02/2019? ASSISTANT:", "input": "",
         "output": "None."},
    ]))
    hits = scan_file(path, "data/flat/train.json")
    assert [(h.row, h.field, h.kind) for h in hits] == [(1, "instruction", "date")]
    assert hits[0].line() == "data/flat/train.json row 1 instruction: date '99/99/9999' at character 23"

    messages = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    table = pa.table({
        "dicom_id": ["12345678", "23456789"], "study_id": [50414267, 50414268],
        "instruction": ["Describe the image.", "What changed?"], "output": ["Normal.", "Nothing."],
        "messages": pa.array([[{"role": "user", "content": "Describe the image."}],
                              [{"role": "user", "content": "Seen by Dr. Jones."},
                               {"role": "assistant", "content": "Nothing."}]], messages),
    })
    pq.write_table(table, tmp_path / "part-00000.parquet")
    hits = scan_file(tmp_path / "part-00000.parquet", "data/train/part-00000.parquet")
    assert [(h.row, h.field, h.kind) for h in hits] == [(1, "messages[0]", "name")]
