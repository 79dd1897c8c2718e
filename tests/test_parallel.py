"""Background jobs (tasks.parallel.Background): result, errors across the process boundary, a
child that dies, and the in-process fallback while other threads run; transparent huge pages off
for a process and its children (tasks.hugepages)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from radialog_instruct.tasks import parallel
from radialog_instruct.tasks.errors import InputError
from radialog_instruct.tasks.hugepages import KEEP
from radialog_instruct.tasks.parallel import Background


@pytest.fixture
def alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process counts as running no other thread (other tests may leave some behind), so
    the job forks."""
    monkeypatch.setattr(parallel.threading, "active_count", lambda: 1)


def _pid_and_sum(*values: int) -> tuple[int, int]:
    return os.getpid(), sum(values)


def _bad_input(path: str) -> None:
    raise InputError(path, "QA item is not a 4-element list", record="item 3")


def _die() -> None:
    os._exit(7)


def test_background_runs_in_a_child_and_returns_its_result(alone: None):
    with Background(_pid_and_sum, 1, 2, 3) as job:
        pid, total = job.result()
    assert total == 6 and pid != os.getpid()


def test_background_raises_the_childs_input_error_intact(alone: None):
    with Background(_bad_input, "train_qa_pairs/7.json") as job, pytest.raises(InputError) as err:
        job.result()
    assert str(err.value) == "train_qa_pairs/7.json: record item 3: QA item is not a 4-element list"
    assert err.value.record == "item 3"


def test_background_child_that_dies_is_an_error_naming_the_job(alone: None):
    with Background(_die) as job, pytest.raises(RuntimeError, match=r"_die ended without a result \(exit code 7\)"):
        job.result()


def test_background_runs_in_process_while_other_threads_run():
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with Background(_pid_and_sum, 4) as job:
            assert job.result() == (os.getpid(), 4)
    finally:
        stop.set()
        other.join()


def _thp_enabled(env: dict[str, str]) -> str:
    """/proc/self/status's THP_enabled of a child of a process that turned huge pages off."""
    script = ("import subprocess\n"
              "from radialog_instruct.tasks.hugepages import disable_transparent_hugepages\n"
              "disable_transparent_hugepages()\n"
              "status = subprocess.run(['cat', '/proc/self/status'], capture_output=True, text=True).stdout\n"
              "print(status.split('THP_enabled:')[1].split()[0])\n")
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux") or "THP_enabled" not in Path("/proc/self/status").read_text(),
                    reason="per-process transparent huge pages are a Linux >= 5.0 setting")
def test_huge_pages_off_for_the_process_and_its_children_unless_kept():
    env = {k: v for k, v in os.environ.items() if k != KEEP}
    assert _thp_enabled(env) == "0"
    assert _thp_enabled({**env, KEEP: "1"}) == Path("/proc/self/status").read_text().split("THP_enabled:")[1].split()[0]
