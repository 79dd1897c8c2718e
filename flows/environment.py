"""Process environment for Prefect and the model libraries, set before any of them is imported.

Prefect runs without a server unless ``PREFECT_API_URL`` is set: it starts a temporary local API
whose SQLite database lives in ``PREFECT_HOME``, by default ``<workdir>/.prefect``. Telemetry of
every library is switched off; nothing leaves the machine unless the user configured it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
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
    # prefect 3.7 does not derive these two from PREFECT_HOME (they default to ~/.prefect)
    home = Path(os.environ["PREFECT_HOME"])
    os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(home / "storage"))
    os.environ.setdefault("PREFECT_SERVER_MEMO_STORE_PATH", str(home / "memo_store.toml"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # Prefect's console handler would print a traceback for every failed task; the CLI prints the
    # one-line error instead. The runs' logs still reach the Prefect API (and its UI).
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")


def server_mode() -> str:
    return "server" if os.environ.get("PREFECT_API_URL") else "ephemeral"


@contextmanager
def quiet_engine() -> Iterator[None]:
    """Without a server, no flow heartbeat thread: heartbeats only let a server detect crashed runs,
    and joining the thread costs ~1 s per flow run (it cannot be disabled from the environment)."""
    import prefect.settings as ps

    if server_mode() == "server":
        yield
        return
    with ps.temporary_settings(updates={ps.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
