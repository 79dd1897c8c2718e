"""Session-wide test setup: no network, no telemetry, and the demo corpus ingested once.

``demo_workdir`` is that one ingest, to be read only; a test or fixture that writes takes a
private copy from ``ingested_copy``.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from radialog_instruct.tasks.config import DEMO_OVERLAY, section
from radialog_instruct.tasks.sources.ingest import SourcesConfig, ingest
from radialog_instruct.tasks.workdir import Workdir

for _key, _value in {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1", "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1", "VLLM_NO_USAGE_STATS": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}.items():
    os.environ.setdefault(_key, _value)

# Prefect: a throw-away home (its SQLite API database) for the whole session, set before any import
from radialog_instruct.flows import environment  # noqa: E402

environment.prepare(Path(tempfile.mkdtemp(prefix="radialog-tests-")))


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory: pytest.TempPathFactory) -> Workdir:
    """The ingest stage's output for the bundled demo corpus (data/demo), once per session. Read only."""
    wd = Workdir.at(tmp_path_factory.mktemp("demo-work"))
    ingest(section(SourcesConfig, DEMO_OVERLAY, "sources"), wd)
    return wd


@pytest.fixture(scope="session")
def ingested_copy(demo_workdir: Workdir, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Workdir]:
    """``ingested_copy(name)``: a new work dir holding a copy of the demo ingest."""
    def copy(name: str) -> Workdir:
        wd = Workdir.at(tmp_path_factory.mktemp(name))
        shutil.copytree(demo_workdir.root, wd.root, dirs_exist_ok=True)
        return wd

    return copy


@pytest.fixture(scope="session")
def demo_params() -> dict:
    """The demo settings (bundled corpus, rule labeler, tiny generator)."""
    from radialog_instruct.tasks.config import load_params

    return load_params(demo=True)


@pytest.fixture(scope="session")
def planned_workdir(ingested_copy: Callable[[str], Workdir], demo_params: dict) -> Workdir:
    """A work dir of its own after the demo's ingest, label (rule labeler) and plan stages."""
    from radialog_instruct.tasks.instruct.plan import run_plan
    from radialog_instruct.tasks.labeling.stage import run_label

    wd = ingested_copy("planned")
    run_label(demo_params, wd)
    run_plan(demo_params, wd)
    return wd


@pytest.fixture
def network_attempts(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Refuses every connection and name lookup this test makes; the list collects the attempts."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts
