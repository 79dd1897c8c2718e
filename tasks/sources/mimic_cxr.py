"""MIMIC-CXR loader for the PhysioNet layout.

Inputs (paths from ``params.yaml`` ``sources.mimic_cxr``):

* ``reports``: the mimic-cxr-reports folder holding ``files/pNN/pSUBJECT/sSTUDY.txt`` (or the
  ``files`` folder itself, or ``mimic-cxr-reports.zip``);
* ``jpg_root``: the MIMIC-CXR-JPG folder holding ``mimic-cxr-2.0.0-metadata.csv.gz``,
  ``mimic-cxr-2.0.0-split.csv.gz`` and, optionally, ``mimic-cxr-2.0.0-chexpert.csv.gz``
  (uncompressed ``.csv`` files are accepted too).

Outputs: ``reports`` (one row per study, sections extracted) and ``images`` (one row per DICOM),
plus the provided CheXpert labels when present.
"""

from __future__ import annotations

import gzip
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ...schemas import IMAGES, REPORTS
from ..errors import InputError
from ..labeling.conditions import CONDITIONS, CSV_ORDER, column
from .report_parsing import BATCH, RawAs, iter_report_bytes, parse_reports

SPLITS = ("train", "validate", "test")
METADATA = "mimic-cxr-2.0.0-metadata.csv"
SPLIT = "mimic-cxr-2.0.0-split.csv"
CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv"

METADATA_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition")
SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
CHEXPERT_COLUMNS = ("subject_id", "study_id") + CSV_ORDER


@dataclass(frozen=True)
class MimicCxrPaths:
    reports: Path
    jpg_root: Path


# --- CSV tables --------------------------------------------------------------------------------

def find_table(root: Path, name: str, *, required: bool = True) -> Path | None:
    """``root/name.gz`` or ``root/name``."""
    for candidate in (root / f"{name}.gz", root / name):
        if candidate.exists():
            return candidate
    if required:
        raise InputError(root / f"{name}.gz", "file not found",
                         expected=f"{name}.gz (or {name}) from MIMIC-CXR-JPG 2.0.0")
    return None


def read_csv_table(path: Path, columns: tuple[str, ...], dtypes: dict[str, str] | None = None) -> pd.DataFrame:
    """Read a (gzipped) CSV, failing with one line on truncation, corruption or missing columns."""
    try:
        frame = pd.read_csv(path, dtype=dtypes or {}, keep_default_na=True)
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as err:
        raise InputError(path, f"truncated or corrupt file ({type(err).__name__}: {err})",
                         expected="a complete gzip-compressed CSV") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise InputError(path, f"not a readable CSV ({type(err).__name__}: {err})",
                         expected="a CSV with columns " + ", ".join(columns)) from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}",
                         expected="columns " + ", ".join(columns))
    return frame


def _int_ids(frame: pd.DataFrame, path: Path, cols: tuple[str, ...]) -> pd.DataFrame:
    for col in cols:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(path, f"{col} is not an integer id: {frame[col].iloc[row]!r}",
                             record=f"row {row + 2}", expected=f"numeric {col}")
        frame[col] = values.astype("int64")
    return frame


def load_metadata(path: Path) -> pd.DataFrame:
    frame = read_csv_table(path, METADATA_COLUMNS, {"dicom_id": "string", "ViewPosition": "string"})
    frame = _int_ids(frame, path, ("subject_id", "study_id"))
    dup = frame["dicom_id"].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputError(path, f"duplicate dicom_id {frame['dicom_id'].iloc[row]}", record=f"row {row + 2}",
                         expected="one row per DICOM")
    view = frame["ViewPosition"].str.strip().str.upper()
    frame["view_position"] = view.where(view.notna() & (view != ""), None)
    return frame


def load_split(path: Path) -> pd.DataFrame:
    frame = read_csv_table(path, SPLIT_COLUMNS, {"dicom_id": "string", "split": "string"})
    frame = _int_ids(frame, path, ("subject_id", "study_id"))
    unknown = ~frame["split"].isin(SPLITS)
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise InputError(path, f"unknown split value {frame['split'].iloc[row]!r}",
                         record=f"row {row + 2} (dicom_id {frame['dicom_id'].iloc[row]})",
                         expected="train, validate or test")
    per_study = frame.groupby("study_id")["split"].nunique()
    if (per_study > 1).any():
        study = int(per_study[per_study > 1].index[0])
        raise InputError(path, f"study {study} is assigned to more than one split",
                         expected="one split per study")
    return frame


def load_chexpert(path: Path) -> pd.DataFrame:
    """MIMIC's provided CheXpert labels -> study_id + one float column per condition."""
    frame = read_csv_table(path, CHEXPERT_COLUMNS)
    frame = _int_ids(frame, path, ("subject_id", "study_id"))
    out = frame[["subject_id", "study_id"]].copy()
    for name in CONDITIONS:
        values = pd.to_numeric(frame[name], errors="coerce")
        bad = values.notna() & ~values.isin([1.0, 0.0, -1.0])
        if bad.any() or (frame[name].notna() & values.isna()).any():
            row = int(np.flatnonzero((bad | (frame[name].notna() & values.isna())).to_numpy())[0])
            raise InputError(path, f"{name} has value {frame[name].iloc[row]!r}", record=f"row {row + 2}",
                             expected="1.0, 0.0, -1.0 or blank")
        out[column(name)] = values.astype("float64")
    return out


# --- report files ------------------------------------------------------------------------------

def report_source(source: Path) -> tuple[str, bool]:
    """(the ``files`` folder or the zip, whether it is the zip) of the configured reports; a
    missing or misplaced folder is a one-line error."""
    if source.is_file() and zipfile.is_zipfile(source):
        return str(source), True
    if not source.exists():
        raise InputError(source, "reports folder not found",
                         expected="the mimic-cxr-reports folder containing files/pNN/pSUBJECT/sSTUDY.txt")
    root = source if source.name == "files" else source / "files"
    if not root.is_dir():
        raise InputError(source, "no files/ folder inside",
                         expected="the mimic-cxr-reports folder containing files/pNN/pSUBJECT/sSTUDY.txt")
    return str(root), False


def iter_report_files(source: Path, want: Callable[[str], bool] | None = None) -> Iterator[tuple[str, bytes]]:
    """Yield (relative path ``files/pNN/pSUBJECT/sSTUDY.txt``, raw bytes) for every report that
    ``want`` accepts by its relative path (default: all; the others are not read), in file order,
    in this process."""
    root, is_zip = report_source(source)
    yield from iter_report_bytes(root, is_zip=is_zip, want=want)


def load_reports(source: Path, keep_raw: set[int] | frozenset[int] = frozenset(), *, raw_as: RawAs = str,
                 workers: int | None = None, batch_size: int = BATCH) -> tuple[pd.DataFrame, dict[int, Any]]:
    """One row per report file with its sections (see :mod:`.sections`), and ``raw_as`` of the raw
    text of the studies in ``keep_raw`` (default: the text). ``source`` is the mimic-cxr-reports
    folder, its ``files`` folder or mimic-cxr-reports.zip. Reading and parsing use ``workers``
    processes (default: the CPU count, at most 8; see :mod:`.report_parsing`)."""
    root, is_zip = report_source(source)
    table, raw = parse_reports(root, is_zip=is_zip, keep_raw=frozenset(keep_raw), raw_as=raw_as, workers=workers,
                               batch_size=batch_size)
    if table.num_rows == 0:
        raise InputError(source, "no reports found", expected="files/pNN/pSUBJECT/sSTUDY.txt")
    frame = table.to_pandas()
    dup = frame["study_id"].duplicated()
    if dup.any():
        raise InputError(source, f"study {int(frame.loc[dup, 'study_id'].iloc[0])} has more than one report file",
                         expected="one sSTUDY.txt per study")
    return frame, raw


# --- assembly ----------------------------------------------------------------------------------

@dataclass
class MimicCxrTables:
    reports: pa.Table
    images: pa.Table
    chexpert: pa.Table | None
    notes: dict[str, int]
    kept: dict[int, Any]  # what ``raw_as`` made of the raw text of the ``keep_raw`` studies


def image_path(subject_id: pd.Series, study_id: pd.Series, dicom_id: pd.Series) -> pd.Series:
    subj = subject_id.astype(str)
    return "files/p" + subj.str[:2] + "/p" + subj + "/s" + study_id.astype(str) + "/" + dicom_id.astype(str) + ".jpg"


def load_mimic_cxr(paths: MimicCxrPaths, keep_raw: set[int] | frozenset[int] = frozenset(),
                   raw_as: RawAs = str) -> MimicCxrTables:
    reports, kept = load_reports(paths.reports, keep_raw, raw_as=raw_as)
    meta_path = find_table(paths.jpg_root, METADATA)
    split_path = find_table(paths.jpg_root, SPLIT)
    chexpert_path = find_table(paths.jpg_root, CHEXPERT, required=False)
    meta = load_metadata(meta_path)
    split = load_split(split_path)

    images = meta[["dicom_id", "subject_id", "study_id", "view_position"]].merge(
        split[["dicom_id", "split"]], on="dicom_id", how="left")
    study_split = split.drop_duplicates("study_id").set_index("study_id")["split"]
    images["image_path"] = image_path(images["subject_id"], images["study_id"], images["dicom_id"])
    images["has_report"] = images["study_id"].isin(reports["study_id"])
    images = images.sort_values(["subject_id", "study_id", "dicom_id"], kind="stable").reset_index(drop=True)

    n_images = images.groupby("study_id").size()
    reports["split"] = reports["study_id"].map(study_split)
    reports["n_images"] = reports["study_id"].map(n_images).fillna(0).astype("int32")
    has_impression_section = reports["impression"] != ""
    use_last = ~has_impression_section & (reports["findings"] == "") & (reports["last_paragraph"] != "")
    reports.loc[use_last, "impression"] = reports.loc[use_last, "last_paragraph"]
    reports["impression_source"] = np.select([has_impression_section, use_last],
                                             ["section", "last_paragraph"], "none")
    reports["has_findings"] = reports["findings"] != ""
    reports["has_impression"] = reports["impression"] != ""
    reports = reports.sort_values(["subject_id", "study_id"], kind="stable").reset_index(drop=True)

    notes = {
        "reports": len(reports),
        "reports_without_findings": int((~reports["has_findings"]).sum()),
        "reports_without_impression": int((~reports["has_impression"]).sum()),
        "reports_without_images": int((reports["n_images"] == 0).sum()),
        "reports_without_split": int(reports["split"].isna().sum()),
        "images": len(images),
        "images_without_report": int((~images["has_report"]).sum()),
        "images_without_split": int(images["split"].isna().sum()),
        "images_without_view": int(images["view_position"].isna().sum()),
    }
    chexpert = None
    if chexpert_path is not None:
        chexpert_frame = load_chexpert(chexpert_path).sort_values("study_id", kind="stable")
        chexpert = pa.Table.from_pandas(chexpert_frame, preserve_index=False)
        notes["chexpert_rows"] = len(chexpert_frame)
    return MimicCxrTables(
        reports=pa.Table.from_pandas(reports[REPORTS.names], schema=REPORTS, preserve_index=False),
        images=pa.Table.from_pandas(images[IMAGES.names].astype({"dicom_id": object, "view_position": object}),
                                    schema=IMAGES, preserve_index=False),
        chexpert=chexpert,
        notes=notes,
        kept=kept,
    )
