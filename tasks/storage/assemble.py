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

Streaming. Memory is bounded by a shard, not by the data set: a first pass over the plan reads its
small columns (ids, split, task; the request hash of each replay row) and decides where every row
goes (its split or the exclusion shards, then its shard by ``sample_id`` rank); a second pass
streams the plan row group by row group into one temporary Arrow file per shard; each shard is then
read back alone, ordered by ``sample_id``, joined with its generations, audit verdicts and review
decisions (``index_in`` + ``take`` on the small tables held for the whole run), written row group by
row group, and converted into its part of the exports.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ... import schemas
from .. import PIPELINE_VERSION
from ..config import section, section_hash
from ..errors import InputError
from ..generation.cache import cache_dir
from ..generation.results import answers, cached_at, generation_cache, plan_file, plan_hashes
from ..instruct import plan as plan_stage
from ..instruct.columns import ASSISTANT, append_turns, strings
from ..instruct.presets import ALL_TASKS
from ..instruct.templates import load_templates, template_files
from ..io import atomic_path, read_parquet, write_json
from ..quality.audit import before_texts
from ..quality.audit import load_config as audit_config
from ..quality.audit_report import HTML, MARKDOWN, report_audit
from ..quality.audit_report import SUMMARY as AUDIT_SUMMARY
from ..quality.review.decisions import (
    ACCEPT,
    REJECT,
    decided_at,
    latest,
    read_decisions,
    review_structs,
    reviews_dir,
    stale_samples,
)
from ..stage import StageSpec
from ..text.conversation import load_conversation, templates_dir_of
from ..workdir import Workdir
from .exports import ExportWriter
from .shards import EXCLUDED_DIR, SPLIT_DIRS, with_pandas_metadata, write_shard

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
    templates_dir = templates_dir_of(params)
    # the reviews folder (the audit stage creates it): a missing decisions file is no decision, and DVC needs the
    # dependency to exist
    inputs = [wd.table("plan"), cache_dir(wd), wd.table("audit"), reviews_dir(wd), *template_files(templates_dir)]
    outputs = [wd.shards(cfg.version), *([wd.exports / cfg.version] if cfg.exports else []), wd.report(SUMMARY),
               wd.report(AUDIT_SUMMARY), wd.report(HTML), wd.report(MARKDOWN)]
    return StageSpec("assemble", inputs, outputs)


#: plan columns that become sample columns as they are
CARRIED = [f.name for f in schemas.INSTRUCT_SAMPLE if f.name in schemas.PLAN.names]
#: nullable string columns and structs (pandas readers get them as object columns)
OBJECT_COLUMNS = ("task_mode", "source_ref", "view_position", "structured_findings", "labeler", "generation", "audit",
                  "review")
SAMPLE_SCHEMA = schemas.INSTRUCT_SAMPLE
#: the index columns the shards are made from, and those the audit report reads too
SHARD_INDEX = ["folder", "shard", "cache_at", "request_hash", "audit_at", "decision_at"]
AUDIT_INDEX = ["sample_id", "decision"]
GENERATION_FIELDS = {"sampling_params": "sampling"}  # struct field -> cache column, where the names differ


@dataclass(frozen=True)
class RowIndex:
    """The small columns of every plan row, in plan order: ``sample_id``, ``split``, ``task``,
    ``labeler``, ``request_hash`` (replay rows), ``cache_at`` (the row's generation in
    :attr:`generations`), ``audit_at`` (its audit row), ``verdict``, ``decision`` (the human
    decision on its current answer) and ``decision_at`` (its row in :attr:`decisions`, the latest
    decision per sample and answer), and ``folder`` / ``shard``: where the row is written."""

    rows: pa.Table
    generations: pa.Table
    audits: pa.Table | None
    decisions: pa.Table
    stale: int


def _spread(values: pa.Array | pa.ChunkedArray, rows: np.ndarray) -> pa.Array:
    """``values`` (one per row where ``rows`` is true) on all rows, null elsewhere."""
    return values.take(_nullable(np.where(rows, np.cumsum(rows) - 1, -1)))


def _nullable(positions: np.ndarray) -> pa.Array:
    """``take`` indices with null where a position is -1 (the taken row is null)."""
    return pa.array(np.maximum(positions, 0), mask=positions < 0)


def _positions(at: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """index_in results as int64 positions, -1 where not found."""
    return np.asarray(pc.fill_null(at, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def index_rows(plan: pq.ParquetFile, params: dict[str, Any], wd: Workdir, *, exclude_failed_audit: bool,
               rows_per_shard: int) -> RowIndex:
    """The first pass: every plan row's generation, audit verdict, human decision and shard."""
    rows = plan_hashes(plan, params, wd)
    hashes = rows.column("request_hash")
    replay = pc.is_valid(hashes)
    cache = generation_cache(wd) if hashes.null_count < len(hashes) else schemas.GENERATION_CACHE.empty_table()
    cache_at = cached_at(hashes, cache, wd)
    audits = None
    verdict = pa.nulls(rows.num_rows, pa.string())
    audit_at = pa.nulls(rows.num_rows, pa.int32())
    if wd.table("audit").exists():
        audits = read_parquet(wd.table("audit"), columns=["sample_id", "audit"])
        audit_at = pc.index_in(rows.column("sample_id"), value_set=audits.column("sample_id"))
        verdict = pc.struct_field(audits.column("audit").combine_chunks(), "verdict").take(audit_at)
    decisions = latest(read_decisions(wd))
    replay_rows = pc.indices_nonzero(replay)
    ids, replay_hashes = rows.column("sample_id").take(replay_rows), hashes.take(replay_rows)
    replay_at = decided_at(decisions, ids, replay_hashes)
    applied = decisions.column("decision").take(replay_at)
    is_replay = np.asarray(replay.to_numpy(zero_copy_only=False), dtype=bool)
    decision, decision_at = _spread(applied, is_replay), _spread(replay_at, is_replay)
    failed = pc.fill_null(pc.equal(verdict, "fail"), False)
    excluded = pc.or_(pc.and_(pc.and_(failed, pa.scalar(exclude_failed_audit)), pc.fill_null(pc.not_equal(decision, ACCEPT), True)),
                      pc.fill_null(pc.equal(decision, REJECT), False))
    folder = pc.if_else(excluded, EXCLUDED_DIR, rows.column("split"))
    rows = rows.append_column("cache_at", cache_at).append_column("audit_at", audit_at) \
        .append_column("verdict", verdict).append_column("decision", decision) \
        .append_column("decision_at", decision_at).append_column("folder", folder)
    stale = stale_samples(decisions, ids, replay_hashes, applied=applied) if len(replay_rows) else 0
    return RowIndex(rows.append_column("shard", pa.array(shard_numbers(rows, rows_per_shard))), cache, audits,
                    decisions, stale)


def shard_numbers(rows: pa.Table, rows_per_shard: int) -> np.ndarray:
    """Each row's shard within its folder: its rank by ``sample_id`` there, cut every
    ``rows_per_shard`` rows (-1 for rows of no folder a release has)."""
    out = np.full(rows.num_rows, -1, dtype=np.int64)
    folder = rows.column("folder")
    for name in (*SPLIT_DIRS, EXCLUDED_DIR):
        members = pc.indices_nonzero(pc.fill_null(pc.equal(folder, name), False))
        if len(members):
            order = pc.sort_indices(rows.column("sample_id").take(members))
            out[members.take(order).to_numpy()] = np.arange(len(members)) // rows_per_shard
    return out


def generation_structs(generations: pa.Table, at: np.ndarray, hashes: pa.Array) -> pa.StructArray:
    """The ``generation`` column: the cached result ``at`` each row (null where ``at`` is -1)."""
    take = pa.array(np.maximum(at, 0))
    fields = list(schemas.GENERATION_TYPE)
    arrays = [hashes if f.name == "request_hash" else
              generations.column(GENERATION_FIELDS.get(f.name, f.name)).take(take).combine_chunks().cast(f.type)
              for f in fields]
    return pa.StructArray.from_arrays(arrays, fields=fields, mask=pa.array(at < 0))


def shard_table(part: pa.Table, index: RowIndex) -> pa.Table:
    """One shard's plan rows (with ``_row``, their plan position) as sample rows ordered by
    ``sample_id``: replay rows get their answer, ``generation``, ``audit`` and ``review``."""
    order = pc.sort_indices(part.column("sample_id"))
    info = index.rows.take(part.column("_row").take(order))
    cache_at = _positions(info.column("cache_at"))
    hashes = info.column("request_hash").combine_chunks()
    answer = answers(index.generations, _nullable(cache_at))
    columns = {name: part.column(name).take(order) for name in CARRIED if name != "messages"}
    columns["output"] = pc.coalesce(answer, columns["output"].combine_chunks())
    columns["messages"] = append_turns(part.column("messages"), (ASSISTANT, answer), order=order.to_numpy())
    columns["generation"] = generation_structs(index.generations, cache_at, hashes)
    audit_at = _positions(info.column("audit_at"))
    columns["audit"] = pa.nulls(part.num_rows, schemas.AUDIT_TYPE) if index.audits is None else \
        index.audits.column("audit").combine_chunks().take(_nullable(audit_at))
    columns["review"] = review_structs(index.decisions.take(info.column("decision_at")))
    columns["pipeline_version"] = strings(PIPELINE_VERSION, part.num_rows)
    return pa.Table.from_arrays([columns[f.name] for f in SAMPLE_SCHEMA],
                                schema=with_pandas_metadata(SAMPLE_SCHEMA, OBJECT_COLUMNS)).combine_chunks()


def buckets(plan: pq.ParquetFile, index: RowIndex, folder: Path) -> dict[tuple[str, int], Path]:
    """Stream the plan into one Arrow file per shard (rows in plan order, with ``_row``)."""
    folders = (*SPLIT_DIRS, EXCLUDED_DIR)
    folder_code = _positions(pc.index_in(index.rows.column("folder"), value_set=pa.array(folders)))
    shard = index.rows.column("shard").to_numpy()
    width = int(shard.max()) + 1 if len(shard) else 1
    bucket = np.where((folder_code >= 0) & (shard >= 0), folder_code * width + shard, -1)
    paths = {b: folder / f"{folders[b // width]}-{b % width:05d}.arrow" for b in np.unique(bucket[bucket >= 0]).tolist()}
    with ExitStack() as stack:
        writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        start = 0
        for g in range(plan.num_row_groups):
            group = plan.read_row_group(g, columns=CARRIED)
            n = group.num_rows
            group = group.append_column("_row", pa.array(np.arange(start, start + n)))
            which = bucket[start:start + n]
            start += n
            order = np.argsort(which, kind="stable")
            sorted_group = group.take(pa.array(order))
            cuts = np.flatnonzero(np.diff(which[order])) + 1
            for lo, hi in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [n]])):
                b = int(which[order][lo])
                if b < 0:
                    continue
                if b not in writers:
                    sink = stack.enter_context(pa.OSFile(str(paths[b]), "wb"))
                    writers[b] = stack.enter_context(pa.ipc.new_stream(sink, sorted_group.schema))
                writers[b].write_table(sorted_group.slice(lo, hi - lo))
    return {(folders[b // width], b % width): path for b, path in paths.items()}


def write_shards(plan: pq.ParquetFile, index: RowIndex, version_tmp: Path, cfg: AssembleConfig,
                 exports: dict[str, ExportWriter]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every shard file (``<folder>/part-NNNNN.parquet``) with its sha256 and rows. While a shard is
    written and exported (two threads: Arrow and the Parquet writer release the GIL), the next one
    is built; at most two shards are in memory."""
    order = (*SPLIT_DIRS, EXCLUDED_DIR)
    with tempfile.TemporaryDirectory(dir=version_tmp.parent, prefix=".assemble-") as tmp, \
            ThreadPoolExecutor(1) as writer, ThreadPoolExecutor(1) as exporter:
        paths = buckets(plan, index, Path(tmp))
        pending: deque[tuple[str, Future, Future | None]] = deque()
        for folder, number in sorted(paths, key=lambda k: (order.index(k[0]), k[1])):
            with pa.memory_map(str(paths[folder, number])) as source:  # zero-copy
                table = shard_table(pa.ipc.open_stream(source).read_all(), index)
            paths[folder, number].unlink()
            pending.append((folder, writer.submit(write_shard, table, version_tmp / folder, number,
                                                  row_group_size=cfg.row_group_size),
                            exporter.submit(exports[folder].add, table) if folder in exports else None))
            del table
            while len(pending) > 1:
                yield _finished(*pending.popleft())
        while pending:
            yield _finished(*pending.popleft())


def _finished(folder: str, written: Future, exported: Future | None) -> tuple[str, dict[str, Any]]:
    name, info = written.result()
    if exported is not None:
        exported.result()
    return f"{folder}/{name}", info


def counts(rows: pa.Table) -> dict[str, Any]:
    """Rows per task, split and task/split of the index rows ``rows``."""
    def per(*names: str) -> dict[str, int]:
        grouped = rows.group_by(list(names), use_threads=False).aggregate([([], "count_all")])
        keys = ["/".join(map(str, k)) for k in zip(*(grouped.column(n).to_pylist() for n in names))]
        return dict(sorted(zip(keys, grouped.column("count_all").to_pylist())))
    return {"rows": rows.num_rows, "rows_per_task": per("task"), "rows_per_split": per("split"),
            "rows_per_task_split": per("task", "split")}


def identities(index: RowIndex) -> dict[str, Any]:
    used = pc.unique(pc.drop_null(index.rows.column("cache_at")))
    gens = index.generations.take(used).select(["backend", "model", "revision", "sampling", "seed"])
    distinct = sorted(set(zip(*(gens.column(c).to_pylist() for c in gens.column_names))))
    labelers = sorted(pc.unique(pc.drop_null(index.rows.column("labeler"))).to_pylist())
    return {"generators": [dict(zip(("backend", "model", "revision", "sampling_params", "seed"), g)) for g in distinct],
            "labelers": labelers}


def review_counts(index: RowIndex) -> dict[str, int]:
    """How the human decisions changed the data set (the manifest's ``review``)."""
    rows = index.rows
    def count(mask: pa.Array) -> int:
        return int(pc.sum(pc.fill_null(mask, False)).as_py() or 0)
    accept, reject = pc.equal(rows.column("decision"), ACCEPT), pc.equal(rows.column("decision"), REJECT)
    return {"decisions": count(pc.is_valid(rows.column("decision"))), "accepted": count(accept),
            "rejected": count(reject), "accepted_failed": count(pc.and_(accept, pc.equal(rows.column("verdict"), "fail"))),
            "rejected_passed": count(pc.and_(reject, pc.equal(rows.column("verdict"), "pass"))), "stale": index.stale}


def audited_rows(plan: pq.ParquetFile, index: RowIndex) -> Any:
    """The audited replay rows as the audit report reads them (pandas, in plan order, no
    conversation: :func:`before_of` gives what an answer is judged against)."""
    audited = pc.indices_nonzero(pc.is_valid(index.rows.column("audit_at")))  # index rows are in plan order
    info = index.rows.take(audited)
    frame = plan.read(columns=["sample_id", "task", "task_mode"]).take(audited).to_pandas()
    frame["output"] = answers(index.generations, info.column("cache_at")).to_pandas()
    frame["audit"] = index.audits.column("audit").take(info.column("audit_at")).to_pylist()
    frame["decision"] = info.column("decision").to_pylist()
    return frame


def before_of(plan: pq.ParquetFile) -> Callable[[list[str]], dict[str, str]]:
    """Sample ids -> what each replay answer was judged against (:func:`before_texts` of its
    generation prompt), for the audit report's few examples."""
    def texts(ids: list[str]) -> dict[str, str]:
        if not ids:
            return {}
        wanted, out = pa.array(ids, pa.string()), {}
        for g in range(plan.num_row_groups):
            group = plan.read_row_group(g, columns=["sample_id", "gen_messages"])
            group = group.filter(pc.is_in(group.column("sample_id"), value_set=wanted))
            out.update(zip(group.column("sample_id").to_pylist(), before_texts(group.column("gen_messages")).to_pylist()))
        return out
    return texts


def run_assemble(params: dict[str, Any], wd: Workdir) -> dict[str, Any]:
    cfg = load_config(params)
    plan_cfg = plan_stage.load_config(params)
    exclude = cfg.exclude_failed_audit and not plan_cfg.original
    plan = plan_file(wd)
    index = index_rows(plan, params, wd, exclude_failed_audit=exclude, rows_per_shard=cfg.rows_per_shard)
    rows = index.rows.select(["task", "split", "folder"])
    kept = counts(rows.filter(pc.is_in(rows.column("folder"), value_set=pa.array(SPLIT_DIRS))))
    excluded = counts(rows.filter(pc.equal(rows.column("folder"), EXCLUDED_DIR)))
    review = review_counts(index)
    audited = index.audits is not None

    version_dir = wd.shards(cfg.version)
    templates_dir = plan_cfg.templates_dir
    present = set(pc.unique(rows.column("task")).to_pylist())
    templates = [load_templates(t, templates_dir) for t in ALL_TASKS if t in present]
    manifest: dict[str, Any] = {
        "version": cfg.version, "pipeline_version": PIPELINE_VERSION, "schema_version": schemas.ROW_CONTRACT_VERSION,
        "config_hash": dataset_config_hash(params),
        "seed": params.get("seed"), "preset": plan_cfg.preset, "fidelity": plan_cfg.fidelity,
        "audit_exclusion": bool(exclude),
        "templates": {t.task: {"version": t.version, "digest": t.digest} for t in templates},
        **identities(index), **kept, "audited": audited,
        "excluded": {"rows": excluded["rows"], "by_review": review["rejected"], "per_task": excluded["rows_per_task"]},
        "review": review, "shards": {},
    }
    # what the shards and the audit report still need of the index (the rest is let go)
    index = replace(index, rows=index.rows.select([*SHARD_INDEX, *(AUDIT_INDEX if audited else [])]))
    conversation = load_conversation(templates_dir)
    exported: dict[str, dict[str, int]] = {}
    with ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(version_dir, directory=True))
        splits = [s for s in SPLIT_DIRS if s in kept["rows_per_split"]]
        writers = {split: ExportWriter({kind: wd.exports / cfg.version / split / EXPORT_FILES[kind]
                                        for kind in cfg.exports}, conversation, stack)
                   for split in splits if cfg.exports}
        for name, info in write_shards(plan, index, tmp, cfg, writers):
            manifest["shards"][name] = info
        write_json(manifest, tmp / MANIFEST)
        for split, writer in writers.items():
            n = writer.finish()
            for kind in cfg.exports:
                exported.setdefault(kind, {})[split] = n
    if audited:
        report_audit(audited_rows(plan, index), audit_config(params).examples_per_reason, before_of(plan), wd)
    summary = {"version": cfg.version, "shards_dir": str(version_dir), **kept, "excluded": manifest["excluded"],
               "audited": audited, "review": review, "exports": exported}
    write_json(summary, wd.report(SUMMARY))
    return summary
