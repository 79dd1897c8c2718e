"""The three source loaders on real-format files: the published MIMIC-CXR example report in the
PhysioNet layout, the real Rad-ReStruct sample, the real MIMIC-NLE query files, and the demo."""

import gzip
import json
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from radialog_instruct.tasks.errors import InputError
from radialog_instruct.tasks.sources.mimic_cxr import MimicCxrPaths, load_mimic_cxr, load_reports
from radialog_instruct.tasks.sources.mimic_nle import read_nle_records, report_sentences, resolve_against_reports
from radialog_instruct.tasks.sources.rad_restruct import load_rad_restruct

from reference import DEMO, MIMIC_EXAMPLE, RAD_RESTRUCT, mimic_nle_queries

SUBJECT, STUDY = 10000032, 50414267
DICOMS = ["02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962"]


def write_gz_csv(frame: pd.DataFrame, path: Path) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        frame.to_csv(fh, index=False)


@pytest.fixture
def example_layout(tmp_path: Path) -> MimicCxrPaths:
    """The published example report in the PhysioNet folder layout with matching tables."""
    folder = tmp_path / "mimic-cxr-reports" / "files" / "p10" / f"p{SUBJECT}"
    folder.mkdir(parents=True)
    shutil.copy(MIMIC_EXAMPLE, folder / f"s{STUDY}.txt")
    jpg = tmp_path / "mimic-cxr-jpg"
    jpg.mkdir()
    write_gz_csv(pd.DataFrame({"dicom_id": DICOMS, "subject_id": SUBJECT, "study_id": STUDY,
                               "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
                               "ViewPosition": ["PA", "LATERAL"], "Rows": 3056, "Columns": 2544}),
                 jpg / "mimic-cxr-2.0.0-metadata.csv.gz")
    write_gz_csv(pd.DataFrame({"dicom_id": DICOMS, "study_id": STUDY, "subject_id": SUBJECT, "split": "train"}),
                 jpg / "mimic-cxr-2.0.0-split.csv.gz")
    return MimicCxrPaths(tmp_path / "mimic-cxr-reports", jpg)


def test_example_report_in_physionet_layout(example_layout: MimicCxrPaths):
    tables = load_mimic_cxr(example_layout)
    reports = tables.reports.to_pylist()
    assert len(reports) == 1
    row = reports[0]
    assert (row["subject_id"], row["study_id"], row["split"]) == (SUBJECT, STUDY, "train")
    assert row["report_path"] == f"files/p10/p{SUBJECT}/s{STUDY}.txt"
    assert row["findings"].startswith("Cardiac size cannot be evaluated.")
    assert row["impression"] == "Large left pleural effusion"
    assert row["impression_source"] == "section" and row["has_findings"] and row["n_images"] == 2
    images = tables.images.to_pylist()
    assert [i["view_position"] for i in images] == ["PA", "LATERAL"]
    assert images[0]["image_path"] == f"files/p10/p{SUBJECT}/s{STUDY}/{DICOMS[0]}.jpg"
    assert tables.chexpert is None  # optional file absent


def test_reports_zip_is_read_like_the_folder(example_layout: MimicCxrPaths, tmp_path: Path):
    archive = shutil.make_archive(str(tmp_path / "mimic-cxr-reports"), "zip", example_layout.reports)
    zipped = load_mimic_cxr(MimicCxrPaths(Path(archive), example_layout.jpg_root))
    assert zipped.reports.equals(load_mimic_cxr(example_layout).reports)


def test_empty_findings_are_kept_and_flagged(example_layout: MimicCxrPaths):
    report = next(example_layout.reports.rglob("*.txt"))
    report.write_text(report.read_text().replace(" FINDINGS:", " NOTE:"))
    row = load_mimic_cxr(example_layout).reports.to_pylist()[0]
    assert row["findings"] == "" and not row["has_findings"] and row["has_impression"]


def test_parallel_parsing_gives_the_same_reports_and_errors(tmp_path: Path):
    """Worker processes (forced with a tiny batch) return the in-process rows, in file order, and a
    bad file's error crosses the process boundary as the same one-line InputError."""
    source = DEMO / "mimic-cxr"
    keep = frozenset({int(p.stem[1:]) for p in sorted(source.rglob("s*.txt"))[:3]})
    alone, raw_alone = load_reports(source, keep, workers=1)
    pooled, raw_pooled = load_reports(source, keep, workers=2, batch_size=16)
    assert len(alone) > 32 and raw_alone == raw_pooled and len(raw_alone) == 3
    pd.testing.assert_frame_equal(alone, pooled)
    _, numbered = load_reports(source, keep, raw_as=report_sentences, workers=2, batch_size=16)
    assert numbered == {study: report_sentences(text) for study, text in raw_alone.items()}

    broken = tmp_path / "mimic-cxr"
    shutil.copytree(source, broken)
    bad = sorted(broken.rglob("s*.txt"))[40]
    bad.write_bytes(b"\xff\xfe FINDINGS: broken")
    with pytest.raises(InputError, match=r"not UTF-8 text \(byte 0\)") as err:
        load_reports(broken, workers=2, batch_size=16)
    assert err.value.path == f"{broken}/{bad.relative_to(broken).as_posix()}"



def zip_folder(folder: Path, archive: Path, *, stored_every: int = 0) -> Path:
    """``folder``'s files in a zip under a ``mimic-cxr-reports/`` prefix, deflated (every
    ``stored_every``-th member stored), as the release zip is laid out."""
    with zipfile.ZipFile(archive, "w") as zf:
        for i, path in enumerate(sorted(folder.rglob("*.txt"))):
            method = zipfile.ZIP_STORED if stored_every and i % stored_every == 0 else zipfile.ZIP_DEFLATED
            zf.write(path, "mimic-cxr-reports/" + path.relative_to(folder).as_posix(), compress_type=method)
    return archive


def test_demo_zip_and_files_folder_parse_like_the_folder(tmp_path: Path):
    """The release zip (deflated and stored members, sliced from a memory map by the workers) and
    the ``files`` folder itself give the folder's rows and raw texts."""
    source = DEMO / "mimic-cxr"
    keep = frozenset({int(p.stem[1:]) for p in sorted(source.rglob("s*.txt"))[::50]})
    folder, raw = load_reports(source, keep, workers=1)
    archive = zip_folder(source, tmp_path / "mimic-cxr-reports.zip", stored_every=3)
    for other, other_raw in (load_reports(archive, keep, workers=2, batch_size=16),
                             load_reports(archive, keep, workers=1),
                             load_reports(source / "files", keep, workers=2, batch_size=8)):
        pd.testing.assert_frame_equal(other, folder)
        assert other_raw == raw and len(raw) == len(keep)


def test_damaged_zip_member_is_one_line(tmp_path: Path):
    archive = zip_folder(DEMO / "mimic-cxr", tmp_path / "mimic-cxr-reports.zip")
    with zipfile.ZipFile(archive) as zf:
        victim = zf.infolist()[7]
    data = bytearray(archive.read_bytes())
    at = victim.header_offset + 30 + len(victim.filename.encode()) + victim.compress_size // 2
    data[at] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(InputError, match="cannot read report") as err:
        load_reports(archive, workers=2, batch_size=16)
    assert err.value.path == f"{archive}!{victim.filename}" and "\n" not in str(err.value)


@pytest.mark.parametrize("where", ["files", "files/p10", "files/p10/p10000032"])
def test_stray_file_at_any_level_is_named(example_layout: MimicCxrPaths, where: str):
    stray = example_layout.reports / where / "notes.txt"
    stray.write_text("x")
    (stray.parent / ".DS_Store").write_text("hidden files are skipped")
    with pytest.raises(InputError, match="unexpected file in the reports tree") as err:
        load_reports(example_layout.reports, workers=1)
    assert err.value.path == str(stray)


@pytest.mark.parametrize("damage, message", [
    ("missing_metadata", "mimic-cxr-2.0.0-metadata.csv.gz: file not found"),
    ("wrong_columns", "missing column(s) ViewPosition"),
    ("truncated_gz", "truncated or corrupt file"),
    ("unknown_split", "unknown split value 'training'"),
    ("bad_report_bytes", "not UTF-8 text"),
    ("stray_file", "unexpected file in the reports tree"),
])
def test_bad_input_is_one_line(example_layout: MimicCxrPaths, damage: str, message: str):
    meta = example_layout.jpg_root / "mimic-cxr-2.0.0-metadata.csv.gz"
    split = example_layout.jpg_root / "mimic-cxr-2.0.0-split.csv.gz"
    report = next(example_layout.reports.rglob("*.txt"))
    if damage == "missing_metadata":
        meta.unlink()
    elif damage == "wrong_columns":
        write_gz_csv(pd.DataFrame({"dicom_id": DICOMS, "subject_id": SUBJECT, "study_id": STUDY}), meta)
    elif damage == "truncated_gz":
        meta.write_bytes(meta.read_bytes()[:40])
    elif damage == "unknown_split":
        write_gz_csv(pd.DataFrame({"dicom_id": DICOMS, "study_id": STUDY, "subject_id": SUBJECT,
                                   "split": ["train", "training"]}), split)
    elif damage == "bad_report_bytes":
        report.write_bytes(b"\xff\xfe FINDINGS: broken")
    elif damage == "stray_file":
        (report.parent / "notes.txt").write_text("x")
    with pytest.raises(InputError) as err:
        load_mimic_cxr(example_layout)
    text = str(err.value)
    assert message in text and "\n" not in text
    if damage in ("unknown_split",):
        assert "record row 3" in text  # names the record
    if damage in ("bad_report_bytes", "stray_file"):
        assert str(report.parent) in text  # names the file


def test_rad_restruct_real_sample():
    table, notes = load_rad_restruct(RAD_RESTRUCT)
    frame = table.to_pandas()
    assert notes["radrestruct_reports"] == 200
    assert notes["radrestruct_listed_ids"] == 3597 and notes["radrestruct_ids_without_qa"] == 3397
    assert len(frame) == 9862
    assert frame.groupby("split")["report_id"].nunique().to_dict() == {"test": 40, "train": 120, "validate": 40}
    assert set(frame["answer_type"]) == {"single_choice", "multi_choice", "fixed_choice"}
    with_history = frame[frame["history"].map(len) > 0].iloc[0]
    assert set(with_history["history"][0]) == {"question", "answers"}
    assert all(set(a) <= set(o) for a, o in zip(frame["answers"], frame["options"]))
    assert frame["image_ids"].map(len).min() >= 1


def test_rad_restruct_malformed_item(tmp_path: Path):
    copy = tmp_path / "radrestruct"
    shutil.copytree(RAD_RESTRUCT, copy)
    qa_file = sorted((copy / "train_qa_pairs").glob("*.json"))[0]
    items = json.loads(qa_file.read_text())
    items[3] = ["question without answers"]
    qa_file.write_text(json.dumps(items))
    with pytest.raises(InputError, match=rf"{qa_file.name}: record item 3: QA item is not a 4-element list"):
        load_rad_restruct(copy)


def test_mimic_nle_real_query_files_decode_and_report_unresolved():
    frame = read_nle_records(mimic_nle_queries())
    assert len(frame) == 273 + 714
    assert set(frame["nle_split"]) == {"dev", "test"}
    first = frame[frame["sentence_id"] == "s50056854#4"].iloc[0]
    assert first["diagnoses"] == ["Pleural Other"]
    assert first["img_labels"][:3] == [-1, 0, 0]  # [0,1,0] is uncertain, [1,0,0] negative
    reports = pd.DataFrame({"study_id": pd.Series([], dtype="int64"), "subject_id": pd.Series([], dtype="int64"),
                            "findings": pd.Series([], dtype=str)})
    table, notes = resolve_against_reports(frame, reports, {})
    assert notes["nle_report_missing"] == 987 and notes["nle_unresolved"] == 987
    assert table.column("nle").null_count == 987


def test_mimic_nle_query_text_recovered_from_report(tmp_path: Path):
    """Query records get their sentence from the report, as extract_mimic_nle.py does."""
    (tmp_path / "train-query.json").write_text(json.dumps({
        "sentence_ID": f"s{STUDY}#1", "diagnosis_label": [0] * 6 + [1] + [0] * 3,
        "evidence_label": [0] * 10, "img_labels": [[1, 0, 0]] * 10}) + "\n")
    frame = read_nle_records(tmp_path)
    findings = pd.DataFrame({"study_id": [STUDY], "subject_id": [SUBJECT],
                             "findings": ["Cardiac size cannot be evaluated. Large left pleural effusion is new."]})
    table, notes = resolve_against_reports(frame, findings, {STUDY: report_sentences(MIMIC_EXAMPLE.read_text())})
    row = table.to_pylist()[0]
    assert row["nle"] == "Large left pleural effusion is new." and row["resolved"] and row["in_findings"]
    assert row["subject_id"] == SUBJECT and row["diagnoses"] == ["Pleural Effusion"]


def test_mimic_nle_bad_line(tmp_path: Path):
    (tmp_path / "mimic-nle-train.json").write_text('{"sentence_ID": "s50000001#0"}\nnot json\n')
    with pytest.raises(InputError, match=r"mimic-nle-train.json: record line 1: missing key\(s\)"):
        read_nle_records(tmp_path)


def test_demo_ingest(demo_workdir):
    summary = json.loads(demo_workdir.report("ingest-summary.json").read_text())
    rows = summary["rows"]
    assert rows["reports"] == 300 and rows["radrestruct_qa"] == 9862
    notes = summary["notes"]
    meta = pd.read_csv(DEMO / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-metadata.csv.gz")
    assert rows["images"] == len(meta)
    assert notes["reports_without_findings"] > 0 and notes["nle_unresolved"] == 0
    assert set(pd.read_parquet(demo_workdir.table("images"))["view_position"].dropna()) >= {"AP", "PA", "LATERAL"}
