"""The assemble stage: plan + generation cache + audit verdicts + review decisions -> versioned
shards + manifest.

Replay rows get their answer from the generation cache (looked up by request hash; a missing
result is an error naming the count, never a silent drop), the ``generation`` provenance struct
and, when the audit stage ran, the ``audit`` struct. Human decisions
(``reviews/decisions.parquet``, :mod:`tasks.quality.review.decisions`) are applied to the answer
they were made on and recorded in the row's ``review`` struct. With ``exclude_failed_audit`` rows
whose audit verdict is "fail" go to ``shards/<version>/excluded/`` with their reasons instead of
the splits, unless a person accepted them (never in the original fidelity: the original had no
audit; the verdicts are still recorded); a row a person rejected is excluded whatever the audit
said (its reason: ``review: <note>``, the ``review`` struct). The stage also renders the audit
report with its audit-vs-human table (:func:`tasks.quality.audit_report.report_audit`), so a new
decision reruns this stage and the later ones, never the generation or the audit's labelling.
The whole version folder is built under a temporary name and renamed into place, so a crash never
leaves a half-written version. Same inputs, config, cache and decisions -> byte-identical shards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa

from ... import schemas
from .. import PIPELINE_VERSION
from ..config import section, section_hash
from ..errors import InputError
from ..generation.cache import GenerationCache, cache_dir
from ..generation.requests import request_hashes
from ..instruct import plan as plan_stage
from ..instruct.presets import ALL_TASKS
from ..instruct.templates import load_templates, template_files
from ..io import atomic_path, read_parquet, write_json
from ..quality.audit_report import HTML, MARKDOWN, report_audit
from ..quality.audit_report import SUMMARY as AUDIT_SUMMARY
from ..quality.review.decisions import (
    ACCEPT,
    REJECT,
    for_rows,
    read_decisions,
    review_structs,
    reviews_dir,
    stale_samples,
)
from ..stage import StageSpec
from ..text.conversation import load_conversation
from ..workdir import Workdir
from .exports import export
from .shards import EXCLUDED_DIR, SPLIT_DIRS, write_split

MANIFEST = "manifest.json"
SUMMARY = "assemble-summary.json"
#: exports/<version>/<split>/<file name>, named after the files the original trainers read
EXPORT_FILES = {"llava": "mimic_cxr_instruct_llava_v2.json", "flat": "mimic_cxr_instruct_stratified.json"}


@dataclass(frozen=True)
class AssembleConfig:
    version: str = "v1.1.0"
    rows_per_shard: int = 100_000
    row_group_size: int = 5_000
    exclude_failed_audit: bool = True
    exports: list[str] = field(default_factory=lambda: ["llava", "flat"])


def load_config(params: dict[str, Any]) -> AssembleConfig:
    cfg = section(AssembleConfig, params, "assemble")
    unknown = [e for e in cfg.exports if e not in EXPORT_FILES]
    if unknown:
        raise InputError(None, f"params: assemble.exports has unknown export(s) {', '.join(unknown)}",
                         expected=", ".join(EXPORT_FILES))
    return cfg


def dataset_config_hash(params: dict[str, Any]) -> str:
    return section_hash(params, "seed", "plan", "label", "generate", "assemble")


def stage_spec(params: dict[str, Any], wd: Workdir) -> StageSpec:
    cfg = load_config(params)
    templates_dir = (params.get("plan") or {}).get("templates_dir")
    # the reviews folder (the audit stage creates it): a missing decisions file is no decision, and DVC needs the
    # dependency to exist
    inputs = [wd.table("plan"), cache_dir(wd), wd.table("audit"), reviews_dir(wd), *template_files(templates_dir)]
    outputs = [wd.shards(cfg.version), *([wd.exports / cfg.version] if cfg.exports else []), wd.report(SUMMARY),
               wd.report(AUDIT_SUMMARY), wd.report(HTML), wd.report(MARKDOWN)]
    return StageSpec("assemble", inputs, outputs)


def attach_generations(plan: pd.DataFrame, params: dict[str, Any], wd: Workdir) -> pd.DataFrame:
    """Fill ``output``, the final assistant turn and ``generation`` of replay rows."""
    frame = plan.copy()
    frame["generation"] = None
    replay = frame["gen_messages"].notna().to_numpy()
    if not replay.any():
        return frame
    hashes = request_hashes(frame[replay], params, wd)
    results = GenerationCache(wd.cache / "generation").lookup(hashes).set_index("request_hash")
    missing = [h for h in hashes if h not in results.index]
    if missing:
        raise InputError(wd.cache / "generation", f"{len(missing)} of {len(hashes)} replay requests have no result",
                         expected="a complete generation cache (run the generate stage first)")
    found = results.loc[hashes]
    texts = [str(t).strip() for t in found["text"]]
    idx = frame.index[replay]
    frame.loc[idx, "output"] = texts
    frame.loc[idx, "messages"] = pd.Series(
        [list(m) + [{"role": "assistant", "content": t}] for m, t in zip(frame.loc[idx, "messages"], texts)],
        index=idx, dtype=object)
    frame.loc[idx, "generation"] = pd.Series([
        {"backend": r.backend, "model": r.model, "revision": r.revision, "sampling_params": r.sampling,
         "seed": int(r.seed), "request_hash": h, "finish_reason": r.finish_reason,
         "prompt_tokens": int(r.prompt_tokens), "completion_tokens": int(r.completion_tokens)}
        for h, r in zip(hashes, found.itertuples())], index=idx, dtype=object)
    return frame


def attach_audit(frame: pd.DataFrame, wd: Workdir) -> tuple[pd.DataFrame, bool]:
    path = wd.table("audit")
    frame = frame.copy()
    if not path.exists():
        frame["audit"] = None
        return frame, False
    audit = read_parquet(path, columns=["sample_id", "audit"]).to_pandas().set_index("sample_id")["audit"]
    frame["audit"] = frame["sample_id"].map(audit).where(lambda s: s.notna(), None)
    return frame, True


def failed_audit(frame: pd.DataFrame) -> pd.Series:
    return frame["audit"].map(lambda a: isinstance(a, dict) and a.get("verdict") == "fail").astype(bool)


def attach_review(frame: pd.DataFrame, wd: Workdir) -> tuple[pd.DataFrame, int]:
    """Add ``review``: the human decision that applies to each replay row's current answer (null
    elsewhere); also returns how many rows have decisions only about an earlier answer (stale)."""
    frame = frame.copy()
    frame["review"] = None
    replay = frame["generation"].notna().to_numpy()
    if not replay.any():
        return frame, 0
    ids = pa.array(frame.loc[replay, "sample_id"].tolist(), pa.string())
    hashes = pa.array([g["request_hash"] for g in frame.loc[replay, "generation"]], pa.string())
    decisions = read_decisions(wd)
    frame.loc[replay, "review"] = pd.Series(review_structs(for_rows(decisions, ids, hashes)).to_pylist(),
                                            index=frame.index[replay], dtype=object)
    return frame, stale_samples(decisions, ids, hashes)


def human_decision(frame: pd.DataFrame) -> pd.Series:
    """accept / reject / None per row, from the ``review`` struct."""
    return frame["review"].map(lambda r: r["decision"] if isinstance(r, dict) else None)


def excluded_rows(frame: pd.DataFrame, exclude_failed_audit: bool) -> pd.Series:
    """Rows for the exclusion shards: audit failures nobody accepted (with ``exclude_failed_audit``)
    and every row a person rejected."""
    decision = human_decision(frame)
    failed = failed_audit(frame) & exclude_failed_audit
    return (failed & (decision != ACCEPT)) | (decision == REJECT)


def review_counts(frame: pd.DataFrame, stale: int) -> dict[str, int]:
    """How the human decisions changed the data set (the manifest's ``review``)."""
    decision, failed = human_decision(frame), failed_audit(frame)
    passed = frame["audit"].map(lambda a: isinstance(a, dict) and a.get("verdict") == "pass").astype(bool)
    return {"decisions": int(decision.notna().sum()), "accepted": int((decision == ACCEPT).sum()),
            "rejected": int((decision == REJECT).sum()), "accepted_failed": int(((decision == ACCEPT) & failed).sum()),
            "rejected_passed": int(((decision == REJECT) & passed).sum()), "stale": stale}


def to_samples(frame: pd.DataFrame) -> pa.Table:
    out = frame.assign(pipeline_version=PIPELINE_VERSION)
    out = out[schemas.INSTRUCT_SAMPLE.names].astype({"subject_id": "Int64", "study_id": "Int64"})
    for name in ("task_mode", "source_ref", "view_position", "structured_findings", "labeler", "generation", "audit",
                 "review"):
        out[name] = out[name].astype(object).where(out[name].notna(), None)
    return pa.Table.from_pandas(out, schema=schemas.INSTRUCT_SAMPLE, preserve_index=False)


def identities(frame: pd.DataFrame) -> dict[str, Any]:
    gens = sorted({(g["backend"], g["model"], g["revision"], g["sampling_params"], g["seed"])
                   for g in frame["generation"] if isinstance(g, dict)})
    labelers = sorted({l for l in frame["labeler"].dropna().unique()})
    return {"generators": [dict(zip(("backend", "model", "revision", "sampling_params", "seed"), g)) for g in gens],
            "labelers": labelers}


def counts(frame: pd.DataFrame) -> dict[str, Any]:
    return {
        "rows": int(len(frame)),
        "rows_per_task": {t: int(n) for t, n in frame["task"].value_counts().sort_index().items()},
        "rows_per_split": {s: int(n) for s, n in frame["split"].value_counts().sort_index().items()},
        "rows_per_task_split": {f"{t}/{s}": int(n) for (t, s), n in frame.groupby(["task", "split"]).size().items()},
    }


def run_assemble(params: dict[str, Any], wd: Workdir) -> dict[str, Any]:
    cfg = load_config(params)
    plan_cfg = plan_stage.load_config(params)
    exclude = cfg.exclude_failed_audit and not plan_cfg.original
    plan = read_parquet(wd.table("plan")).to_pandas()
    frame = attach_generations(plan, params, wd)
    frame, audited = attach_audit(frame, wd)
    frame, stale = attach_review(frame, wd)
    out = excluded_rows(frame, exclude)
    kept, excluded = frame[~out], frame[out]
    review = review_counts(frame, stale)

    version_dir = wd.shards(cfg.version)
    templates_dir = plan_cfg.templates_dir
    present = set(frame["task"].unique())
    templates = [load_templates(t, templates_dir) for t in ALL_TASKS if t in present]
    manifest: dict[str, Any] = {
        "version": cfg.version, "pipeline_version": PIPELINE_VERSION, "schema_version": schemas.ROW_CONTRACT_VERSION,
        "config_hash": dataset_config_hash(params),
        "seed": params.get("seed"), "preset": plan_cfg.preset, "fidelity": plan_cfg.fidelity,
        "audit_exclusion": bool(exclude),
        "templates": {t.task: {"version": t.version, "digest": t.digest} for t in templates},
        **identities(frame), **counts(kept), "audited": audited,
        "excluded": {"rows": int(len(excluded)), "by_review": review["rejected"],
                     "per_task": {t: int(n) for t, n in excluded["task"].value_counts().sort_index().items()}},
        "review": review, "shards": {},
    }
    with atomic_path(version_dir, directory=True) as tmp:
        for split in SPLIT_DIRS:
            rows = kept[kept["split"] == split]
            if len(rows):
                for name, info in write_split(to_samples(rows), tmp / split, rows_per_shard=cfg.rows_per_shard,
                                              row_group_size=cfg.row_group_size).items():
                    manifest["shards"][f"{split}/{name}"] = info
        if len(excluded):
            for name, info in write_split(to_samples(excluded), tmp / EXCLUDED_DIR, rows_per_shard=cfg.rows_per_shard,
                                          row_group_size=cfg.row_group_size).items():
                manifest["shards"][f"{EXCLUDED_DIR}/{name}"] = info
        write_json(manifest, tmp / MANIFEST)
    exported: dict[str, dict[str, int]] = {}
    for split in SPLIT_DIRS:
        if cfg.exports and (version_dir / split).is_dir():
            targets = {kind: wd.exports / cfg.version / split / EXPORT_FILES[kind] for kind in cfg.exports}
            n = export(targets, version_dir, [split], conversation=load_conversation(templates_dir))
            for kind in cfg.exports:
                exported.setdefault(kind, {})[split] = n
    if audited:
        rows = frame[frame["audit"].notna()]
        report_audit(rows.assign(decision=human_decision(rows)), params, wd)
    summary = {"version": cfg.version, "shards_dir": str(version_dir), **counts(kept), "excluded": manifest["excluded"],
               "audited": audited, "review": review, "exports": exported}
    write_json(summary, wd.report(SUMMARY))
    return summary
