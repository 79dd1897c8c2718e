"""The generate stage: fill the generation cache with the plan's replay requests.

Reads ``interim/plan.parquet``, renders and hashes the replay rows' ``gen_messages``
(:mod:`.requests`), loads the hashes already cached (:mod:`.cache`) and sends only the missing
requests to the backend, writing results in chunks as they complete. A rerun with everything
cached loads no model and makes zero model calls. ``shard=(i, n)`` restricts the run to the
requests whose hash falls in shard ``i`` of ``n``: workers on several GPUs sharing one cache folder
split the work this way, and a final unsharded run finds everything cached.

The summary goes to ``reports/generate-summary.json`` (``generate-summary-shard-<i>-of-<n>.json``
for a shard; :func:`merge_summaries` turns the shards' summaries into the stage's). Requests that
failed are counted there and then raise :class:`GenerationError`, so the stage is not recorded as
done; a rerun retries exactly those.

The summary also names the cache chunks that hold the plan's results (``chunks``): the stage's
stamp records their size and digest, so the stage counts as done only while every one of them is
intact. A chunk that cannot be read is set aside and named (``unreadable_chunks``), and its
requests are generated again.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import ConfigError, StageFailure
from ..io import read_parquet, write_json
from ..stage import StageSpec
from ..text.conversation import conversation_file, params_conversation, templates_dir_of
from ..workdir import Workdir
from .cache import GenerationCache, cache_dir, cache_row
from .config import DEMO_TINY, GenerateConfig, load_config
from .engine import Request, choose_backend, open_backend
from .models import ModelRef, model_ref
from .progress import GenerationProgress
from .requests import PLAN_COLUMNS, RequestSettings, build_requests, shard_requests

SUMMARY = "generate-summary.json"
DEMO_NOTE = ("demo-tiny is a random-weight model: its outputs are meaningless and only exercise the "
             "pipeline; configure generate.model_preset vicuna-7b-v1.5 or vicuna-13b-v1.3 for real data")


class GenerationError(StageFailure):
    """Some requests failed (one line; the summary lists examples)."""


@dataclass
class RunStats:
    backend: str
    revision: str
    model_calls: int = 0
    generated: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    load_s: float = 0.0
    elapsed_s: float = 0.0
    written: list[Path] = field(default_factory=list)


def stage_spec(params: dict[str, Any], wd: Workdir) -> StageSpec:
    cfg = load_config(params)
    inputs = [wd.table("plan"), conversation_file(templates_dir_of(params))]
    if cfg.model_id != DEMO_TINY and Path(cfg.model_id).is_dir():  # a local model's identity is in the hashes
        inputs.append(Path(cfg.model_id))
    return StageSpec("generate", inputs, [wd.report(SUMMARY)], persistent=[cache_dir(wd)],
                     produced=partial(result_chunks, wd))


def result_chunks(wd: Workdir, summary: dict[str, Any]) -> list[Path]:
    """The cache chunks that hold the results of a finished run (from its summary)."""
    return [cache_dir(wd) / name for name in summary["chunks"]]


def summary_path(wd: Workdir, shard: tuple[int, int] | None) -> Path:
    return wd.report(SUMMARY if shard is None else f"generate-summary-shard-{shard[0]}-of-{shard[1]}.json")


def check_shard(shard: tuple[int, int] | None) -> None:
    if shard is None:
        return
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"shard {index}/{count}: expected 0 <= i < n")


def run_generate(params: dict[str, Any], wd: Workdir, *, shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """Generate every replay request of the plan (of shard ``i`` of ``n``) that is not cached yet."""
    cfg = load_config(params)
    check_shard(shard)
    if cfg.backend == "openai":
        from .openai_backend import completions_url

        completions_url(cfg.openai.base_url)
    plan = read_parquet(wd.table("plan"), columns=PLAN_COLUMNS)
    model = model_ref(cfg, wd, build=True)
    settings = RequestSettings.of(cfg, model)
    requests, replay_rows = build_requests(plan, settings, params_conversation(params))
    requests = shard_requests(requests, shard)
    cache = GenerationCache.of(wd)
    cache.remove_stale_temps()
    index = cache.index()
    unreadable = cache.set_aside(index.unreadable)
    if unreadable:
        print(f"generate: set aside {len(unreadable)} unreadable cache chunk(s), their requests are generated "
              f"again: {', '.join(unreadable)}", file=sys.stderr, flush=True)
    pending = [r for r in requests if r.request_hash not in index.chunk_of]
    stats = generate_pending(pending, cfg, model, cache, total=len(requests)) if pending else \
        RunStats(backend=cfg.backend, revision=model.key_revision)
    chunks = {*index.chunks_for(r.request_hash for r in requests), *stats.written}
    summary = build_summary(stats, requests=len(requests), cached=len(requests) - len(pending),
                            replay_rows=replay_rows, model=model, settings=settings, shard=shard,
                            directory=cache.directory)
    summary.update(chunks=sorted(p.name for p in chunks), unreadable_chunks=unreadable)
    write_json(summary, summary_path(wd, shard))
    print(summary_line(summary), file=sys.stderr, flush=True)
    if stats.failed:
        first = stats.failed[0]
        raise GenerationError(f"{len(stats.failed)} of {len(pending)} requests failed (first: {first['error']}); "
                              "the others are cached, rerun generate to retry the failed ones")
    return summary


def generate_pending(pending: list[Request], cfg: GenerateConfig, model: ModelRef, cache: GenerationCache, *,
                     total: int) -> RunStats:
    """Send ``pending`` to the configured backend, caching results chunk by chunk."""
    name = choose_backend(cfg)
    by_hash = {r.request_hash: r for r in pending}
    started = time.perf_counter()
    with open_backend(name, cfg, model) as backend:
        stats = RunStats(backend=name, revision=backend.revision, model_calls=len(pending),
                         load_s=time.perf_counter() - started)
        started = time.perf_counter()
        with cache.writer(cfg.chunk_size) as writer, \
                GenerationProgress(total, total - len(pending)) as progress:
            try:
                for result in backend.generate(pending):
                    if result.error is not None:
                        stats.failed.append({"request_hash": result.request_hash, "error": result.error})
                        progress.advance(1, 0)
                        continue
                    writer.add(cache_row(by_hash[result.request_hash], result, backend=name, model=model.name,
                                         revision=backend.revision))
                    stats.generated += 1
                    stats.prompt_tokens += result.prompt_tokens
                    stats.completion_tokens += result.completion_tokens
                    progress.advance(1, result.completion_tokens)
            finally:
                stats.elapsed_s = time.perf_counter() - started
        stats.written = list(writer.written)
    return stats


def build_summary(stats: RunStats, *, requests: int, cached: int, replay_rows: int, model: ModelRef,
                  settings: RequestSettings, shard: tuple[int, int] | None, directory: Path) -> dict[str, Any]:
    def rate(count: int) -> float:
        return round(count / stats.elapsed_s, 3) if stats.elapsed_s else 0.0

    return {
        "requests": requests, "replay_rows": replay_rows, "cache_hits": cached,
        "model_calls": stats.model_calls, "generated": stats.generated, "failed": len(stats.failed),
        "failed_examples": stats.failed[:5],
        "prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
        "tokens_per_s": rate(stats.completion_tokens), "requests_per_s": rate(stats.generated),
        "elapsed_s": round(stats.elapsed_s, 3), "load_s": round(stats.load_s, 3),
        "backend": stats.backend, "model": model.name, "revision": stats.revision,
        "revision_key": model.key_revision, "sampling": json.loads(settings.sampling.to_json()),
        "seed": settings.seed, "meaningful": model.meaningful, "note": None if model.meaningful else DEMO_NOTE,
        "shard": list(shard) if shard else None, "chunks_written": len(stats.written),
        "cache_dir": str(directory),
    }


SUMMED = ("requests", "cache_hits", "model_calls", "generated", "failed", "prompt_tokens", "completion_tokens",
          "chunks_written", "tokens_per_s", "requests_per_s")


def merge_summaries(wd: Workdir, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The stage summary of a sharded run (one summary per shard, as :func:`run_generate` returns):
    counts are added up, ``tokens_per_s`` / ``requests_per_s`` are the shard engines' aggregate
    throughput, ``elapsed_s`` / ``load_s`` the slowest shard's. Written to ``generate-summary.json``."""
    if not summaries:
        raise ValueError("no shard summaries to merge")
    merged = dict(summaries[0])
    for key in SUMMED:
        merged[key] = sum(s[key] for s in summaries)
    for key in ("tokens_per_s", "requests_per_s"):
        merged[key] = round(merged[key], 3)
    merged["elapsed_s"] = max(s["elapsed_s"] for s in summaries)
    merged["load_s"] = max(s["load_s"] for s in summaries)
    merged["failed_examples"] = [e for s in summaries for e in s["failed_examples"]][:5]
    for key in ("chunks", "unreadable_chunks"):
        merged[key] = sorted({name for s in summaries for name in s[key]})
    merged["backend"] = ",".join(sorted({s["backend"] for s in summaries}))
    merged["shard"] = None
    merged["shards"] = len(summaries)
    write_json(merged, wd.report(SUMMARY))
    print(summary_line(merged), file=sys.stderr, flush=True)
    return merged


def summary_line(summary: dict[str, Any]) -> str:
    line = (f"generate: {summary['requests']} requests, {summary['cache_hits']} cached, "
            f"{summary['model_calls']} model calls ({summary['failed']} failed), "
            f"{summary['completion_tokens']} tokens at {summary['tokens_per_s']:.1f} tok/s "
            f"[{summary['backend']}, {summary['model']} @ {summary['revision']}]")
    return line if summary["meaningful"] else f"{line}; NOTE: {summary['note']}"
