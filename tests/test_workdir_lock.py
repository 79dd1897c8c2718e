"""The work-dir lock: a second command waits (after one line naming the holder) and never repeats
the first one's work; a holder killed with SIGKILL releases the lock."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading

import pyarrow.parquet as pq
import pytest

from radialog_instruct.tasks import workdir_lock
from radialog_instruct.tasks.generation.cache import CHUNK_GLOB, cache_dir
from radialog_instruct.tasks.workdir import Workdir

from cli_process import CLI, cli_env

HOLD = """
import sys, time
from radialog_instruct.tasks.workdir_lock import hold
with hold(sys.argv[1], "holder-under-test"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_second_holder_waits_for_a_killed_first_one(tmp_path):
    first = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "held"
        told: list[str] = []
        acquired = threading.Event()

        def second() -> None:
            with workdir_lock.hold(tmp_path, "second", notify=told.append):
                acquired.set()

        waiter = threading.Thread(target=second)
        waiter.start()
        assert not acquired.wait(1.0)
        assert len(told) == 1 and f"pid {first.pid} (holder-under-test" in told[0] and "waiting" in told[0]
        first.send_signal(signal.SIGKILL)
        assert acquired.wait(10)
        waiter.join(10)
        assert workdir_lock.holder(tmp_path).startswith(f"pid {os.getpid()} (second")
    finally:
        first.kill()
        first.wait()


def test_reentrant_within_a_process_and_free_afterwards(tmp_path):
    told: list[str] = []
    with workdir_lock.hold(tmp_path, "outer", notify=told.append):
        with workdir_lock.hold(tmp_path, "inner", notify=told.append):
            pass
        assert workdir_lock.holder(tmp_path).startswith(f"pid {os.getpid()} (outer")
    probe = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(120)", "pass"), str(tmp_path)],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "held" and not told


def waiting_notice(run: subprocess.Popen[str]) -> str:
    """The line in which a command says that it waits for the work dir (read up to it)."""
    for line in run.stderr:
        if "is in use by pid" in line:
            return line
    raise AssertionError(f"exited ({run.wait()}) without waiting for the work dir")


def chunk_rows(wd: Workdir) -> tuple[set[str], int, list[str]]:
    """Writer pids of the generation chunks, their rows, and their request hashes."""
    chunks = sorted(cache_dir(wd).glob(CHUNK_GLOB))
    tables = [pq.read_table(path) for path in chunks]
    hashes = [h for table in tables for h in table.column("request_hash").to_pylist()]
    return {path.name.split("-")[-2] for path in chunks}, sum(t.num_rows for t in tables), hashes


@pytest.mark.slow
def test_two_concurrent_generate_commands_make_one_set_of_chunks(planned_workdir, tmp_path):
    """Both commands start while the work dir is held, so both wait; then one generates and the
    other finds the stage done without starting Prefect (~30 s: two CLI start-ups, one Prefect
    server, one generation of the demo's replay requests, 4 tokens each)."""
    wd = Workdir.at(tmp_path / "work")
    shutil.copytree(planned_workdir.root, wd.root, ignore=shutil.ignore_patterns("generation"))
    with workdir_lock.hold(wd.root, "test"):
        runs = [subprocess.Popen([CLI, "generate", "--demo", "--workdir", str(wd.root), "--set",
                                  "generate.max_new_tokens=4"], env=cli_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        notices = [waiting_notice(run) for run in runs]  # each one says that it waits, then blocks
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert all("(test, since" in line for line in notices), notices
    assert sorted("generate: unchanged, skipped" in out for out, _ in outputs) == [False, True], outputs
    writers, rows, hashes = chunk_rows(wd)
    assert len(writers) == 1 and rows == len(set(hashes)) > 0
