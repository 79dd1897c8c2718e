"""Crash safety: SIGKILL a generation mid-run, rerun, and check the cache is exact."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import yaml

from radialog_instruct.tasks.generation.cache import GenerationCache
from radialog_instruct.tasks.generation.stage import run_generate
from radialog_instruct.tasks.io import sha256_file

from gen_fixtures import make_params, replay_messages, write_plan

pytest_plugins = ["gen_fixtures"]
pytestmark = pytest.mark.slow

REQUESTS, CHUNK = 48, 4


def chunk_hashes(path) -> list[str]:
    return pq.read_table(path, columns=["request_hash"]).column("request_hash").to_pylist()


def test_sigkill_mid_run_loses_only_the_chunk_in_flight(gen_wd, gen_tiny_model, tmp_path):
    write_plan(gen_wd, replay_messages(REQUESTS))
    params = make_params(model=str(gen_tiny_model), chunk_size=CHUNK, max_new_tokens=24, transformers={"batch_size": 4})
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    cache = GenerationCache.of(gen_wd)
    worker = subprocess.Popen([sys.executable, "-m", "radialog_instruct.tasks.generation", "--params",
                               str(params_file), "--workdir", str(gen_wd.root)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while len(cache.chunk_files()) < 2 and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.send_signal(signal.SIGKILL)
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == -signal.SIGKILL, stderr.decode()[-2000:]

    before = {p: (sha256_file(p), chunk_hashes(p)) for p in cache.chunk_files()}
    done = {h for _, hashes in before.values() for h in hashes}
    assert 2 <= len(before) < REQUESTS // CHUNK, "the kill must land mid-run"
    assert all(len(hashes) == CHUNK for _, hashes in before.values())  # finished chunks are whole

    summary = run_generate(params, gen_wd)
    assert summary["cache_hits"] == len(done)
    assert summary["model_calls"] == REQUESTS - len(done)
    assert not [p for p in cache.directory.iterdir() if p.name.startswith(".")]  # the killed writer's temp file is gone

    after = cache.chunk_files()
    assert all(p in after and sha256_file(p) == digest for p, (digest, _) in before.items())  # untouched
    new_hashes = [h for p in after if p not in before for h in chunk_hashes(p)]
    assert not set(new_hashes) & done  # finished chunks were not regenerated
    counts = collections.Counter(h for p in after for h in chunk_hashes(p))
    assert len(counts) == REQUESTS and set(counts.values()) == {1}  # every request exactly once
    assert os.path.exists(gen_wd.report("generate-summary.json"))
