"""Process environment for Prefect and the model libraries, set before any of them is imported.

Prefect runs without a server unless ``PREFECT_API_URL`` is set: it starts a temporary local API
whose SQLite database lives in ``PREFECT_HOME``, by default ``<workdir>/.prefect``. Telemetry of
every library is switched off; nothing leaves the machine unless the user configured it.
"""

from __future__ import annotations

import os
from pathlib import Path

QUIET = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def prepare(workdir: Path) -> None:
    for key, value in QUIET.items():
        os.environ.setdefault(key, value)
    if "PREFECT_HOME" not in os.environ:
        home = workdir / ".prefect"
        home.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("PREFECT_MEMO_STORE_PATH", str(Path(os.environ["PREFECT_HOME"]) / "memo_store.toml"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def server_mode() -> str:
    return "server" if os.environ.get("PREFECT_API_URL") else "ephemeral"
