"""Background jobs (tasks.parallel.Background): result, errors across the process boundary, a
child that dies, and the in-process fallback while other threads run."""

from __future__ import annotations

import os
import threading

import pytest

from radialog_instruct.tasks import parallel
from radialog_instruct.tasks.errors import InputError
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
