"""The chunked generation cache: atomic chunks, tolerant reader, deterministic dedupe, lookup."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from radialog_instruct.schemas import GENERATION_CACHE
from radialog_instruct.tasks.generation.cache import GenerationCache, cache_row, host_tag
from radialog_instruct.tasks.generation.engine import Request, Result, Sampling
from radialog_instruct.tasks.io import write_parquet

pytest_plugins = ["gen_fixtures"]


def row(key: str, text: str = "t") -> dict:
    request = Request(key, "prompt " + key, Sampling(8), 0, "1/vicuna_v1.1@1")
    return cache_row(request, Result(key, text, "length", 3, 8, 0.1), backend="transformers", model="m", revision="r")


def test_chunks_are_written_every_chunk_size_rows(gen_wd):
    cache = GenerationCache.of(gen_wd)
    with cache.writer(chunk_size=3) as writer:
        for i in range(7):
            writer.add(row(f"h{i}"))
        assert len(cache.chunk_files()) == 2  # 3 + 3 written, 1 in hand
    files = cache.chunk_files()
    assert sorted(pq.read_metadata(p).num_rows for p in files) == [1, 3, 3]
    assert cache.hashes() == {f"h{i}" for i in range(7)}
    assert not [p for p in cache.directory.iterdir() if p.name.startswith(".")]


def test_rows_in_hand_are_written_when_the_block_fails(gen_wd):
    cache = GenerationCache.of(gen_wd)
    with pytest.raises(RuntimeError):
        with cache.writer(chunk_size=10) as writer:
            writer.add(row("a"))
            writer.add(row("b"))
            raise RuntimeError("backend crashed")
    assert cache.hashes() == {"a", "b"}


def write_chunk(path, rows) -> None:
    write_parquet(pa.Table.from_pylist(rows, schema=GENERATION_CACHE), path)


def test_reader_skips_temp_and_corrupt_files_and_dedupes_by_chunk_name(gen_wd, caplog):
    cache = GenerationCache.of(gen_wd)
    directory = cache.directory
    directory.mkdir(parents=True)
    first = directory / "chunk-20260101T000000-h-1-00000001.parquet"
    write_chunk(directory / "chunk-20260101T000001-h-1-00000002.parquet", [row("a", "second"), row("c", "second")])
    write_chunk(first, [row("a", "first"), row("b", "first")])
    (directory / f".{first.name}.tmp-1-deadbeef").write_bytes(b"half a file")
    truncated = directory / "chunk-20260101T000002-h-1-00000003.parquet"
    truncated.write_bytes(first.read_bytes()[: first.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        table = cache.read().to_pandas().set_index("request_hash")
    assert sorted(table.index) == ["a", "b", "c"]
    assert table.loc["a", "text"] == "first" and table.loc["c", "text"] == "second"
    assert "skipping unreadable chunk" in caplog.text and truncated.name in caplog.text


def test_lookup_returns_one_row_per_cached_hash(gen_wd):
    cache = GenerationCache.of(gen_wd)
    assert cache.lookup(["a"]).empty and list(cache.lookup([]).columns) == GENERATION_CACHE.names
    with cache.writer(chunk_size=10) as writer:
        writer.add(row("a", "A"))
        writer.add(row("b", "B"))
    frame = cache.lookup(["b", None, "missing", "a", "b"])
    assert frame["request_hash"].tolist() == ["b", "a"] and frame["text"].tolist() == ["B", "A"]
    assert frame.loc[0, "sampling"] == '{"max_new_tokens":8,"temperature":0.0,"top_p":1.0}'
    assert list(frame.columns) == GENERATION_CACHE.names


def test_two_writers_share_a_folder(gen_wd):
    cache = GenerationCache.of(gen_wd)
    with cache.writer(2) as one, GenerationCache(cache.directory).writer(2) as two:
        for i in range(6):
            (one if i % 2 else two).add(row(f"h{i}"))
    assert len(cache.chunk_files()) == 4
    assert len(cache.read()) == 6


def test_stale_temp_files_of_dead_writers_are_removed(gen_wd):
    cache = GenerationCache.of(gen_wd)
    directory = cache.directory
    directory.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    host = host_tag()
    stale = directory / f".chunk-20260101T000000-{host}-{dead}-0123abcd.parquet.tmp-{dead}-89abcdef"
    live = directory / f".chunk-20260101T000000-{host}-{os.getpid()}-0123abcd.parquet.tmp-{os.getpid()}-89abcdef"
    other_host = directory / f".chunk-20260101T000000-elsewhere-{dead}-0123abcd.parquet.tmp-{dead}-89abcdef"
    for path in (stale, live, other_host):
        path.write_bytes(b"partial")
    assert cache.remove_stale_temps() == [stale]
    assert live.exists() and other_host.exists()
