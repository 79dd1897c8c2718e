"""The ingest stage: the three sources in their on-disk formats -> clean interim Parquet tables.

Writes ``interim/{reports,images,nle,radrestruct_qa}.parquet`` (plus ``chexpert_provided.parquet``
when MIMIC's CheXpert CSV is present) and ``reports/ingest-summary.json``.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ...schemas import NLE, RADRESTRUCT_QA
from ..config import section
from ..errors import ConfigError, InputError
from ..io import write_json, write_parquet
from ..parallel import Background
from ..stage import StageSpec
from ..workdir import Workdir
from .mimic_cxr import CHEXPERT, METADATA, SPLIT, MimicCxrPaths, find_table, iter_report_files, load_mimic_cxr
from .mimic_nle import find_nle_files, read_nle_records, report_sentences, resolve_against_reports
from .physionet import PhysioNetConfig
from .rad_restruct import check_rad_restruct_layout, load_rad_restruct

TABLES = ("reports", "images", "nle", "radrestruct_qa")
SUMMARY = "ingest-summary.json"


@dataclass(frozen=True)
class MimicCxrSource:
    reports: str | None = None
    jpg_root: str | None = None


@dataclass(frozen=True)
class FolderSource:
    dir: str | None = None


@dataclass(frozen=True)
class SourcesConfig:
    mimic_cxr: MimicCxrSource = field(default_factory=MimicCxrSource)
    mimic_nle: FolderSource = field(default_factory=FolderSource)
    rad_restruct: FolderSource = field(default_factory=FolderSource)
    predictions: str | None = None
    physionet: PhysioNetConfig = field(default_factory=PhysioNetConfig)  # read by `pull` only

    def cxr_paths(self) -> MimicCxrPaths:
        if not self.mimic_cxr.reports or not self.mimic_cxr.jpg_root:
            raise ConfigError("params: sources.mimic_cxr.reports and sources.mimic_cxr.jpg_root must be set "
                              "(or pass --demo to use the bundled synthetic corpus)")
        return MimicCxrPaths(Path(self.mimic_cxr.reports), Path(self.mimic_cxr.jpg_root))


def output_paths(wd: Workdir) -> list[Path]:
    return [wd.table(name) for name in TABLES] + [wd.table("chexpert_provided")]


def load_config(params: dict[str, Any]) -> SourcesConfig:
    return section(SourcesConfig, params, "sources")


def stage_spec(params: dict[str, Any], wd: Workdir) -> StageSpec:
    cfg = load_config(params)
    paths = cfg.cxr_paths()
    inputs = [paths.reports]
    for name in (METADATA, SPLIT, CHEXPERT):
        found = find_table(paths.jpg_root, name, required=False)
        inputs.append(found if found else paths.jpg_root / f"{name}.gz")
    inputs += [Path(folder) for folder in (cfg.mimic_nle.dir, cfg.rad_restruct.dir) if folder]
    return StageSpec("ingest", inputs, [*output_paths(wd), wd.report(SUMMARY)])


def check_layout(cfg: SourcesConfig) -> None:
    """The sources are where and what the loaders expect (checked before any stage runs)."""
    paths = cfg.cxr_paths()
    if next(iter_report_files(paths.reports), None) is None:
        raise InputError(paths.reports, "no reports found", expected="files/pNN/pSUBJECT/sSTUDY.txt")
    for name in (METADATA, SPLIT):
        find_table(paths.jpg_root, name)
    if cfg.mimic_nle.dir:
        find_nle_files(Path(cfg.mimic_nle.dir))
    if cfg.rad_restruct.dir:
        check_rad_restruct_layout(Path(cfg.rad_restruct.dir))


def run_ingest(params: dict[str, Any], wd: Workdir) -> dict[str, Any]:
    return ingest(load_config(params), wd)


def ingest(cfg: SourcesConfig, wd: Workdir) -> dict[str, Any]:
    """Run the ingest stage; returns its summary (row counts and data notes). Rad-ReStruct is read
    in a background process while MIMIC-CXR and MIMIC-NLE are read here."""
    with Background(load_rad_restruct, Path(cfg.rad_restruct.dir)) if cfg.rad_restruct.dir else nullcontext() \
            as radrestruct_job:
        nle_frame = read_nle_records(Path(cfg.mimic_nle.dir)) if cfg.mimic_nle.dir else None
        keep = frozenset(int(s) for s in nle_frame["study_id"]) if nle_frame is not None else frozenset()
        cxr = load_mimic_cxr(cfg.cxr_paths(), keep, raw_as=report_sentences)  # numbered by the parsing workers
        notes: dict[str, int] = dict(cxr.notes)

        if nle_frame is not None:
            reports = cxr.reports.select(["study_id", "subject_id", "findings"]).to_pandas()
            nle, nle_notes = resolve_against_reports(nle_frame, reports, cxr.kept)
            notes.update(nle_notes)
        else:
            nle = NLE.empty_table()
        if radrestruct_job is not None:
            radrestruct, rr_notes = radrestruct_job.result()
            notes.update(rr_notes)
        else:
            radrestruct = RADRESTRUCT_QA.empty_table()

    tables: dict[str, pa.Table] = {"reports": cxr.reports, "images": cxr.images, "nle": nle,
                                   "radrestruct_qa": radrestruct}
    chexpert = cxr.chexpert if cxr.chexpert is not None else pa.table({"study_id": pa.array([], pa.int64())})
    for name, table in {**tables, "chexpert_provided": chexpert}.items():
        write_parquet(table, wd.table(name))
    summary = {"rows": {name: t.num_rows for name, t in tables.items()}, "notes": notes,
               "chexpert_provided": cxr.chexpert is not None}
    write_json(summary, wd.report(SUMMARY))
    return summary
