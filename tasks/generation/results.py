"""The generated answers of the plan's replay rows, as the audit and assemble stages read them:
each row's request hash (recomputed from the plan) and its row in the generation cache."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import InputError
from ..instruct.columns import strip
from ..io import parquet_file
from ..text.conversation import params_conversation
from ..workdir import Workdir
from .cache import GenerationCache, cache_dir
from .requests import request_hashes, request_settings

#: plan columns :func:`plan_hashes` reads (the request hash needs the generator's conversation)
INDEX_COLUMNS = ["sample_id", "split", "task", "labeler", "template_version", "gen_messages"]


def plan_file(wd: Workdir) -> pq.ParquetFile:
    """The plan, read row group by row group by the stages that stream it."""
    return parquet_file(wd.table("plan"))


def plan_hashes(plan: pq.ParquetFile, params: dict[str, Any], wd: Workdir) -> pa.Table:
    """The index columns of the plan with each replay row's request hash (null on other rows),
    row group by row group."""
    settings, conversation = request_settings(params, wd), params_conversation(params)
    parts = []
    for i in range(plan.num_row_groups):
        group = plan.read_row_group(i, columns=INDEX_COLUMNS)
        hashes = pa.array(request_hashes(group, settings, conversation=conversation), pa.string())
        parts.append(group.drop_columns(["template_version", "gen_messages"]).append_column("request_hash", hashes))
    if not parts:
        return pa.table({c: pa.array([], pa.string()) for c in ("sample_id", "split", "task", "labeler",
                                                                 "request_hash")})
    return pa.concat_tables(parts).combine_chunks()


def generation_cache(wd: Workdir) -> pa.Table:
    """The cached results (one row per request hash) with the columns the samples take."""
    return GenerationCache.of(wd).read(
        columns=["text", "finish_reason", "prompt_tokens", "completion_tokens", "backend", "model", "revision",
                 "sampling", "seed"])


def cached_at(hashes: pa.Array | pa.ChunkedArray, cache: pa.Table, wd: Workdir) -> pa.Array:
    """Each hash's row in ``cache`` (null for null hashes); a replay row without a result is an error."""
    at = pc.index_in(hashes, value_set=cache.column("request_hash"))
    missing = pc.sum(pc.and_(pc.is_valid(hashes), pc.is_null(at))).as_py() or 0
    if missing:
        replay = len(hashes) - hashes.null_count
        raise InputError(cache_dir(wd), f"{missing} of {replay} replay requests have no result",
                         expected="a complete generation cache (run the generate stage first)")
    return at


def answers(cache: pa.Table, at: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The generated answers (outer whitespace stripped) of the cache rows ``at`` (null stays null)."""
    return strip(cache.column("text").take(at))
