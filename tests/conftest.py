"""Session-wide test setup: no network, no telemetry, and the demo corpus ingested once."""

from __future__ import annotations

import os

import pytest

from radialog_instruct.tasks.config import DEMO_OVERLAY, section
from radialog_instruct.tasks.sources.ingest import SourcesConfig, ingest
from radialog_instruct.tasks.workdir import Workdir

for _key, _value in {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1", "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1", "VLLM_NO_USAGE_STATS": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}.items():
    os.environ.setdefault(_key, _value)


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory: pytest.TempPathFactory) -> Workdir:
    """A work dir holding the ingest stage's output for the bundled demo corpus (data/demo)."""
    wd = Workdir.at(tmp_path_factory.mktemp("demo-work"))
    ingest(section(SourcesConfig, DEMO_OVERLAY, "sources"), wd)
    return wd
