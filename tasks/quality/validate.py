"""The validate stage: the Great Expectations suites of :mod:`.expectations` over every shard.

Reads ``shards/<version>/`` (the released splits; the exclusion shards are not part of the
release) and its manifest, whose preset, fidelity and audit exclusion decide what is expected (the
preset's tasks; the original fidelity's empty answers; no failed audit verdict only where failed
rows were excluded), and checks, per shard: the Arrow schema against
:data:`schemas.INSTRUCT_SAMPLE` and the ``shard`` suite; across shards: the manifest (every shard
listed with its sha256 and row count, nothing else listed), the ``ids``, ``studies`` and
``counts`` suites. Writes ``reports/validation.json`` (every GX result as ``to_json_dict`` plus the
checks in readable form and the manifest's sha256, which the release stage matches) and
``reports/validation.md``. Any failed check raises :class:`InputError` after both reports are
written, naming the failing shards and checks, so the command exits non-zero and the release
refuses to run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ... import schemas
from ..config import section
from ..errors import InputError
from ..instruct.fidelity import ORIGINAL
from ..instruct.presets import ALL_TASKS, PRESETS
from ..io import read_json, sha256_file, write_json, write_text
from ..parallel import read_ahead
from ..stage import StageSpec
from ..storage import assemble
from ..storage.shards import SPLIT_DIRS, shard_files
from ..workdir import Workdir
from .derived import flat_frame
from .expectations import (
    CheckResult,
    SuiteResult,
    ValidateConfig,
    Validator,
    check_config,
    count_checks,
    counts_frame,
    id_checks,
    shard_checks,
    study_checks,
    study_splits,
    unchecked_bounds,
)

REPORT_JSON = "validation.json"
REPORT_MD = "validation.md"
ID_COLUMNS = ["sample_id", "study_id", "split", "task"]
ID_SCHEMA = pa.schema([schemas.INSTRUCT_SAMPLE.field(name).with_nullable(True) for name in ID_COLUMNS])
SHOWN_FAILURES = 5


def load_config(params: dict[str, Any]) -> ValidateConfig:
    return check_config(section(ValidateConfig, params, "validate"))


def stage_spec(params: dict[str, Any], wd: Workdir) -> StageSpec:
    load_config(params)
    version = assemble.load_config(params).version
    return StageSpec("validate", [wd.shards(version)], [wd.report(REPORT_JSON), wd.report(REPORT_MD)])


def schema_problems(schema: pa.Schema) -> list[str]:
    """Differences in column names and types from :data:`schemas.INSTRUCT_SAMPLE`."""
    expected = schemas.INSTRUCT_SAMPLE
    problems = [f"missing column {n}" for n in expected.names if n not in schema.names]
    problems += [f"unexpected column {n}" for n in schema.names if n not in expected.names]
    problems += [f"{f.name} is {schema.field(f.name).type}, expected {f.type}" for f in expected
                 if f.name in schema.names and not schema.field(f.name).type.equals(f.type)]
    return problems


def id_columns(table: pa.Table) -> pa.Table:
    """The columns of :data:`ID_COLUMNS` (nulls where a shard lacks one or has another type)."""
    return pa.table({f.name: table.column(f.name) if f.name in table.column_names
                     and table.schema.field(f.name).type.equals(f.type) else pa.nulls(table.num_rows, f.type)
                     for f in ID_SCHEMA})


def manifest_problems(version_dir: Path, manifest: dict[str, Any]) -> list[str]:
    """Shard files vs the manifest's ``shards`` entries (sha256 and rows), every split and exclusions."""
    listed: dict[str, Any] = manifest.get("shards", {})
    on_disk = {p.relative_to(version_dir).as_posix(): p for p in sorted(version_dir.glob("*/part-*.parquet"))}
    problems = [f"{name}: not in the manifest" for name in on_disk if name not in listed]
    problems += [f"{name}: in the manifest but missing" for name in listed if name not in on_disk]
    for name, path in on_disk.items():
        info = listed.get(name)
        if info is None:
            continue
        if sha256_file(path) != info.get("sha256"):
            problems.append(f"{name}: sha256 differs from the manifest")
        if pq.ParquetFile(path).metadata.num_rows != info.get("rows"):
            problems.append(f"{name}: row count differs from the manifest")
    return problems


@dataclass(frozen=True)
class _Shard:
    """What the checks need of one shard file."""

    name: str
    frame: pd.DataFrame  # :func:`flat_frame`, for the ``shard`` suite
    schema_problems: list[str]
    ids: pa.Table  # :func:`id_columns`, one row per shard row


def _prepared(version_dir: Path, split: str, path: Path) -> _Shard:
    table = pq.read_table(path)
    return _Shard(path.relative_to(version_dir).as_posix(), flat_frame(table, split), schema_problems(table.schema),
                  id_columns(table))


def validate_version(version_dir: Path, cfg: ValidateConfig, *, exclude_failed_audit: bool) -> dict[str, Any]:
    """Run every check on ``shards/<version>``; returns the report (``success`` says all passed)."""
    manifest_path = version_dir / assemble.MANIFEST
    if not manifest_path.exists():
        raise InputError(manifest_path, "manifest not found", expected="the output of the assemble stage")
    manifest = read_json(manifest_path)
    preset = PRESETS.get(manifest.get("preset") or "")
    tasks = [t for t in ALL_TASKS if t in preset.tasks] if preset else list(ALL_TASKS)
    exclude_failed_audit = bool(manifest.get("audit_exclusion", exclude_failed_audit))
    paths = [(split, path) for split in SPLIT_DIRS for path in shard_files(version_dir, split)]
    # each shard is read and flattened in a thread while the one before it is checked (the first
    # while Great Expectations starts)
    prepared = read_ahead(lambda item: _prepared(version_dir, *item), paths)
    validator = Validator()
    validator.add_suite("shard", shard_checks(cfg, audited=bool(manifest.get("audited")),
                                              exclude_failed_audit=exclude_failed_audit, tasks=tasks,
                                              empty_answers=manifest.get("fidelity") == ORIGINAL),
                        key_columns=["sample_id"])
    validator.add_suite("ids", id_checks(), key_columns=["sample_id"])
    validator.add_suite("studies", study_checks(), key_columns=["study_id", "split"])
    validator.add_suite("counts", count_checks(cfg, tasks), key_columns=["split", "task"])

    shards: dict[str, Any] = {}
    ids = []
    for shard in prepared:
        result = validator.run("shard", shard.frame)
        shards[shard.name] = {"rows": shard.ids.num_rows, "schema_problems": shard.schema_problems, **result.to_json()}
        shards[shard.name]["success"] = result.success and not shard.schema_problems
        ids.append(shard.ids)
    if not shards:
        raise InputError(version_dir, "no shards to validate", expected="train/validate/test part-*.parquet files")
    ids_frame = pa.concat_tables(ids).to_pandas()
    counts = counts_frame(ids_frame, cfg, tasks)
    dataset: dict[str, SuiteResult] = {
        "ids": validator.run("ids", ids_frame[["sample_id"]]),
        "studies": validator.run("studies", study_splits(ids_frame)),
        "counts": validator.run("counts", counts),
    }
    manifest_issues = manifest_problems(version_dir, manifest)
    success = all(s["success"] for s in shards.values()) and all(r.success for r in dataset.values()) \
        and not manifest_issues
    return {
        "success": success, "version": manifest.get("version"), "shards_dir": str(version_dir),
        "manifest_sha256": sha256_file(manifest_path), "rows": int(len(ids_frame)),
        "preset": manifest.get("preset"), "fidelity": manifest.get("fidelity"), "tasks": tasks,
        "unchecked_bounds": unchecked_bounds(cfg, tasks),
        "manifest_problems": manifest_issues, "shards": shards,
        "dataset": {name: r.to_json() for name, r in dataset.items()},
        "counts": counts.astype(object).where(counts.notna(), None).to_dict(orient="records"),
        "failures": failure_lines(shards, dataset, manifest_issues),
    }


def failure_lines(shards: dict[str, Any], dataset: dict[str, SuiteResult], manifest_issues: list[str]) -> list[str]:
    """One line per failing shard / dataset suite: ``<where>: <check> (<detail>); ...``."""
    lines = []
    for name, info in shards.items():
        failed = [f"schema ({'; '.join(info['schema_problems'])})"] if info["schema_problems"] else []
        failed += [_line(c) for c in info["checks"] if not c["success"]]
        if failed:
            lines.append(f"{name}: {'; '.join(failed)}")
    for name, result in dataset.items():
        if result.failed:
            lines.append(f"{name} (all shards): {'; '.join(c.line() for c in result.failed)}")
    if manifest_issues:
        lines.append(f"manifest: {'; '.join(manifest_issues)}")
    return lines


def _line(check: dict[str, Any]) -> str:
    return CheckResult(**check).line()


def render_markdown(report: dict[str, Any]) -> str:
    verdict = "PASSED" if report["success"] else "FAILED"
    out = [f"# Validation of {report['shards_dir']}: {verdict}", "",
           f"{len(report['shards'])} shard(s), {report['rows']} rows, "
           f"manifest sha256 `{report['manifest_sha256'][:16]}…`.", ""]
    if report.get("preset"):
        out += [f"Preset `{report['preset']}` (fidelity {report.get('fidelity') or 'improved'}): "
                f"{len(report['tasks'])} tasks expected."
                + (f" Bounds on tasks outside the preset, not checked: {', '.join(report['unchecked_bounds'])}."
                   if report.get("unchecked_bounds") else ""), ""]
    if report["failures"]:
        out += ["## Failures", "", *[f"- {line}" for line in report["failures"]], ""]
    out += ["## Shards", "", "| shard | rows | checks passed | failed checks |", "|---|---:|---:|---|"]
    for name, info in report["shards"].items():
        failed = [c["check"] for c in info["checks"] if not c["success"]]
        failed += ["schema"] if info["schema_problems"] else []
        passed = sum(c["success"] for c in info["checks"])
        out.append(f"| {name} | {info['rows']} | {passed}/{len(info['checks'])} | {', '.join(failed) or '-'} |")
    out += ["", "## Dataset checks", "", "| suite | check | result |", "|---|---|---|"]
    for suite, info in report["dataset"].items():
        for c in info["checks"]:
            out.append(f"| {suite} | {c['check']} | {'pass' if c['success'] else 'FAIL: ' + _line(c)} |")
    out.append(f"| manifest | shards match the manifest | {'; '.join(report['manifest_problems']) or 'pass'} |")
    out += ["", "## Rows per split and task", "", "| split | task | rows | share | share bounds | min rows |",
            "|---|---|---:|---:|---|---:|"]
    for row in report["counts"]:
        bounds = "-" if row["min_share"] is None else f"[{row['min_share']}, {row['max_share']}]"
        minimum = "-" if row["min_rows"] is None else row["min_rows"]
        out.append(f"| {row['split']} | {row['task']} | {row['rows']} | {row['share']:.3f} | {bounds} | {minimum} |")
    return "\n".join(out) + "\n"


def run_validate(params: dict[str, Any], wd: Workdir) -> dict[str, Any]:
    cfg = load_config(params)
    shards = assemble.load_config(params)
    report = validate_version(wd.shards(shards.version), cfg, exclude_failed_audit=shards.exclude_failed_audit)
    write_json(report, wd.report(REPORT_JSON))
    write_text(render_markdown(report), wd.report(REPORT_MD))
    if not report["success"]:
        shown = report["failures"][:SHOWN_FAILURES]
        more = len(report["failures"]) - len(shown)
        raise InputError(wd.report(REPORT_MD), "validation failed: " + " | ".join(shown)
                         + (f" | +{more} more" if more > 0 else ""))
    checks = sum(len(s["checks"]) for s in report["shards"].values())
    return {"version": report["version"], "rows": report["rows"], "shards": len(report["shards"]),
            "shard_checks": checks, "success": True, "report": str(wd.report(REPORT_MD))}
