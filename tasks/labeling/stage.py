"""The label stage: CheXpert labels for every study, and ``label-file`` for any CSV.

``run_label`` reads ``interim/reports.parquet``, labels the ``label.text_column`` section of each
study with the chosen labeler (CheXbert, the rule labeler, or MIMIC's provided CheXpert CSV), and
writes ``interim/labels.parquet`` (schema ``schemas.LABELS``, one row per study, sorted by
study_id) and ``reports/label-summary.json``; with ``compare`` also ``reports/label-compare.json``
(agreement with the provided labels). Text labels go through the per-text cache
(``<workdir>/cache/labels``). Blank labels are nulls in the table; a study whose text is empty gets
all-null labels. With the provided labels, ``text_column`` and ``text_sha1`` are null (MIMIC
labelled mostly the impression), and studies missing from the CSV get all-null labels.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ...schemas import LABELS
from ..config import section
from ..errors import ConfigError, InputError
from ..io import read_parquet, write_json, write_parquet, write_text
from ..sources.sections import STUDY_SECTIONS
from ..stage import StageSpec
from ..workdir import Workdir
from .cache import lookup_or_label
from .conditions import CONDITION_COLUMNS, CONDITIONS, positive_conditions, structured_findings
from .interface import is_empty, label_texts
from .metrics import compare_labels
from .selection import build_labeler, chexbert_files, choose_labeler
from .settings import LabelConfig

log = logging.getLogger("radialog_instruct.label")

PROVIDED_VERSION = "mimic-cxr-2.0.0-chexpert"


def label_config(params: dict[str, Any]) -> LabelConfig:
    cfg = section(LabelConfig, params, "label")
    if cfg.text_column not in STUDY_SECTIONS:
        raise ConfigError(f"params: label.text_column must be a report section ({', '.join(STUDY_SECTIONS)}), "
                          f"got {cfg.text_column!r}")
    return cfg


def stage_spec(params: dict[str, Any], wd: Workdir) -> StageSpec:
    cfg = label_config(params)
    choice = choose_labeler(cfg)
    inputs = [wd.table("reports"), wd.table("chexpert_provided")]
    predictions = predictions_path(params)
    if predictions is not None:
        inputs.append(predictions)
    extra = {"labeler": choice.labeler}
    if predictions is not None and choice.labeler == "provided":
        extra["predictions_labeler"] = choose_labeler(cfg, "auto").labeler
    if "chexbert" in extra.values():
        inputs += chexbert_files(cfg.chexbert)
    outputs = [wd.table("labels"), wd.table("prediction_labels"), wd.report("label-summary.json")]
    return StageSpec("label", inputs, outputs, extra_key=extra)


def predictions_path(params: dict[str, Any]) -> Path | None:
    value = (params.get("sources") or {}).get("predictions")
    return Path(value) if value else None


# --- inputs ------------------------------------------------------------------------------------

def _reports(wd: Workdir, text_column: str) -> pd.DataFrame:
    path = wd.table("reports")
    table = read_parquet(path)
    missing = [c for c in ("study_id", "subject_id", text_column) if c not in table.column_names]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}",
                         expected="the reports table written by the ingest stage")
    frame = table.select(["study_id", "subject_id", text_column]).to_pandas()
    frame[text_column] = frame[text_column].fillna("")
    return frame.sort_values("study_id", kind="stable").reset_index(drop=True)


def _provided(wd: Workdir) -> pd.DataFrame:
    """MIMIC's CheXpert labels (study_id + one column per condition); empty when the CSV was absent."""
    path = wd.table("chexpert_provided")
    table = read_parquet(path)
    if table.num_rows == 0:
        return pd.DataFrame(columns=["study_id", *CONDITION_COLUMNS])
    missing = [c for c in ("study_id", *CONDITION_COLUMNS) if c not in table.column_names]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}",
                         expected="the provided CheXpert table written by the ingest stage")
    return table.select(["study_id", *CONDITION_COLUMNS]).to_pandas().drop_duplicates("study_id")


def _aligned(provided: pd.DataFrame, study_ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Provided labels in ``study_ids`` order (NaN rows where missing) and which rows were found."""
    at = pd.Index(provided["study_id"]).get_indexer(study_ids)
    found = at >= 0
    values = np.full((len(study_ids), len(CONDITIONS)), np.nan, dtype=np.float32)
    values[found] = provided[list(CONDITION_COLUMNS)].to_numpy(np.float32)[at[found]]
    return values, found


# --- output ------------------------------------------------------------------------------------

def _float_column(values: np.ndarray) -> pa.Array:
    return pa.array(values, pa.float32(), mask=np.isnan(values))


def labels_table(frame: pd.DataFrame, values: np.ndarray, text_column: str | None, labeler: str,
                 version: str) -> pa.Table:
    """The LABELS table for ``frame`` (study_id, subject_id and, for text labelers, the text)."""
    n = len(frame)
    positives = positive_conditions(values)
    if text_column is None:
        sha1 = pa.nulls(n, pa.string())
    else:
        sha1 = pa.array([hashlib.sha1(t.encode("utf-8")).hexdigest() for t in frame[text_column]], pa.string())
    columns: dict[str, Any] = {
        "study_id": pa.array(frame["study_id"], pa.int64()),
        "subject_id": pa.array(frame["subject_id"], pa.int64()),
        "text_column": pa.array([text_column] * n, pa.string()),
        "text_sha1": sha1,
        **{name: _float_column(values[:, j]) for j, name in enumerate(CONDITION_COLUMNS)},
        "positive_findings": pa.array(positives, pa.list_(pa.string())),
        "structured_findings": pa.array([structured_findings(p) for p in positives], pa.string()),
        "labeler": pa.array([labeler] * n, pa.string()),
        "labeler_version": pa.array([version] * n, pa.string()),
    }
    return pa.table(columns, schema=LABELS)


def positive_counts(values: np.ndarray) -> dict[str, int]:
    return {name: int(np.sum(values[:, j] == 1)) for j, name in enumerate(CONDITIONS)}


# --- comparison with the provided labels -------------------------------------------------------

def compare_with_provided(wd: Workdir, frame: pd.DataFrame, values: np.ndarray, text_column: str,
                          labeler: str) -> dict[str, Any]:
    """Agreement of ``values`` with MIMIC's CheXpert labels on the studies both have (non-empty text)."""
    provided = _provided(wd)
    if labeler == "provided":
        result: dict[str, Any] = {"skipped": "the labels are the provided ones"}
    elif provided.empty:
        result = {"skipped": "no provided labels (mimic-cxr-2.0.0-chexpert.csv.gz was absent at ingest)"}
    else:
        ref, found = _aligned(provided, frame["study_id"])
        has_text = ~frame[text_column].map(is_empty).to_numpy(bool)
        both = found & has_text
        result = {
            **compare_labels(values[both], ref[both]),
            "labeler": labeler,
            "text_column": text_column,
            "studies_compared": int(both.sum()),
            "studies_without_provided": int((~found).sum()),
            "studies_with_empty_text": int((found & ~has_text).sum()),
            "reference": "MIMIC-CXR-JPG mimic-cxr-2.0.0-chexpert.csv.gz (CheXpert labeler, mostly on the "
                         "impression section)",
        }
    write_json(result, wd.report("label-compare.json"))
    return result


# --- the stage ---------------------------------------------------------------------------------

def run_label(params: dict[str, Any], wd: Workdir, *, compare: bool = False) -> dict[str, Any]:
    """Label every study; returns the summary written to ``reports/label-summary.json``."""
    cfg = label_config(params)
    frame = _reports(wd, cfg.text_column)
    choice = choose_labeler(cfg)
    started = time.perf_counter()
    if choice.labeler == "provided":
        provided = _provided(wd)
        if provided.empty:
            raise InputError(wd.table("chexpert_provided"), "no provided CheXpert labels",
                             expected="mimic-cxr-2.0.0-chexpert.csv.gz in sources.mimic_cxr.jpg_root at ingest, "
                                      "or label.labeler chexbert/rules")
        values, found = _aligned(provided, frame["study_id"])
        version = PROVIDED_VERSION
        counts = {"cache_hits": 0, "labeled": 0, "empty_texts": None, "texts_per_s": None,
                  "studies_without_provided_labels": int((~found).sum())}
        table = labels_table(frame, values, None, "provided", version)
    else:
        labeler = build_labeler(choice.labeler, cfg)
        cached = lookup_or_label(labeler, frame[cfg.text_column].tolist(), wd.cache / "labels")
        values, version = cached.values, labeler.version
        counts = {"cache_hits": cached.cache_hits, "labeled": cached.labeled, "empty_texts": cached.empty,
                  "texts_per_s": round(cached.labeled / cached.seconds, 1) if cached.labeled else None}
        table = labels_table(frame, values, cfg.text_column, labeler.name, version)
    write_parquet(table, wd.table("labels"))
    summary: dict[str, Any] = {
        "labeler": choice.labeler, "labeler_version": version, "reason": choice.reason,
        "text_column": cfg.text_column if choice.labeler != "provided" else None,
        "rows": table.num_rows, **counts,
        "positives": positive_counts(values),
        "seconds": round(time.perf_counter() - started, 2),
    }
    summary["predictions"] = label_predictions(params, cfg, wd)
    if compare:
        summary["compare"] = compare_with_provided(wd, frame, values, cfg.text_column, choice.labeler)
    write_json(summary, wd.report("label-summary.json"))
    log.info("labels: %d studies, labeler %s %s", table.num_rows, choice.labeler, version)
    return summary


# --- predicted reports (correction inputs) -----------------------------------------------------

def label_predictions(params: dict[str, Any], cfg: LabelConfig, wd: Workdir) -> int:
    """Label the predicted reports of ``sources.predictions`` (CSV: dicom_id, report) for the
    correction task; writes ``interim/prediction_labels.parquet`` (dicom_id, report and the 14
    condition columns), empty when no predictions file is configured. Returns the row count."""
    path = predictions_path(params)
    columns = ["dicom_id", "report", *CONDITION_COLUMNS]
    if path is None:
        frame = pd.DataFrame({c: pd.Series(dtype="float32" if c in CONDITION_COLUMNS else str) for c in columns})
    else:
        frame = read_text_csv(path, "report")
        if "dicom_id" not in frame.columns:
            raise InputError(path, "no column 'dicom_id'", expected="columns dicom_id and report")
        if frame["dicom_id"].duplicated().any():
            raise InputError(path, f"dicom_id {frame.loc[frame['dicom_id'].duplicated(), 'dicom_id'].iloc[0]} "
                             "appears twice", expected="one predicted report per image")
        # the provided labels belong to MIMIC's own reports; predictions need a text labeler
        choice = choose_labeler(cfg, None if cfg.labeler != "provided" else "auto")
        labeler = build_labeler(choice.labeler, cfg)
        values = lookup_or_label(labeler, frame["report"].tolist(), wd.cache / "labels").values
        frame = frame[["dicom_id", "report"]].copy()
        for j, name in enumerate(CONDITION_COLUMNS):
            frame[name] = values[:, j]
    table = pa.Table.from_pandas(frame[columns], preserve_index=False)
    write_parquet(table, wd.table("prediction_labels"))
    return table.num_rows


# --- label-file --------------------------------------------------------------------------------

def read_text_csv(path: str | Path, column: str) -> pd.DataFrame:
    """A CSV with a header row, every cell as text ("" for empty cells)."""
    path = Path(path)
    expected = f"a CSV file with a header row and a text column {column!r}"
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except FileNotFoundError:
        raise InputError(path, "file not found", expected=expected) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as err:
        raise InputError(path, f"not a readable CSV ({type(err).__name__}: {' '.join(str(err).split())[:200]})",
                         expected=expected) from None
    if column not in frame.columns:
        raise InputError(path, f"no column {column!r} (columns: {', '.join(map(str, frame.columns))})",
                         expected=expected)
    return frame


def label_file(in_csv: str | Path, column: str, out_csv: str | Path, labeler_name: str | None = None,
               params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Label ``column`` of ``in_csv`` and write the original labelers' CSV convention to ``out_csv``:
    the text column, then the 14 conditions (CheXbert order) with 1 / 0 / -1 / empty."""
    cfg = section(LabelConfig, params, "label") if params and "label" in params else LabelConfig()
    if (labeler_name or cfg.labeler) == "provided":
        raise ConfigError("label-file: the provided labels belong to MIMIC studies, not to a CSV's text; "
                          "use --labeler chexbert, rules or auto")
    frame = read_text_csv(in_csv, column)
    choice = choose_labeler(cfg, labeler_name)
    labeler = build_labeler(choice.labeler, cfg)
    texts = frame[column].tolist()
    started = time.perf_counter()
    values = label_texts(labeler, texts)
    seconds = time.perf_counter() - started
    out = pd.DataFrame({column: texts})
    for j, name in enumerate(CONDITIONS):
        out[name] = pd.array(np.where(np.isnan(values[:, j]), None, values[:, j]), dtype="Int64")
    write_text(out.to_csv(index=False, lineterminator="\n"), out_csv)
    summary = {"in": str(in_csv), "out": str(out_csv), "column": column, "rows": len(frame),
               "labeler": labeler.name, "labeler_version": labeler.version, "reason": choice.reason,
               "texts_per_s": round(len(texts) / seconds, 1) if seconds > 0 else None,
               "positives": positive_counts(values)}
    log.info("label-file: %d rows of %s labelled with %s -> %s", len(frame), in_csv, labeler.name, out_csv)
    return summary
