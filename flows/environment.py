"""Process environment for Prefect and the model libraries, set before any of them is imported,
and the Prefect engine a command's flows run under.

Prefect runs without a server unless ``PREFECT_API_URL`` is set: the command starts a temporary
local API (:mod:`.local_api`) whose SQLite database lives in ``PREFECT_HOME``, by default
``<workdir>/.prefect``. A database that the installed Prefect cannot open (written by a newer
Prefect) is moved aside with a one-line notice; an older one is migrated by the server as it
starts. Telemetry of every library is switched off; nothing leaves the machine unless the user
configured it.
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from functools import cache
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

from . import local_api

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
DATABASE_URL_KEYS = ("PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL")
_REVISION = re.compile(r"^(down_revision|revision)\s*=\s*['\"]([0-9a-f]+)['\"]", re.MULTILINE)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def prepare(workdir: Path, notify: Callable[[str], None] = _say) -> None:
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
    if server_mode() == "ephemeral" and not any(os.environ.get(key) for key in DATABASE_URL_KEYS):
        check_database(home / "prefect.db", notify)


@cache
def migrations() -> tuple[frozenset[str], frozenset[str]]:
    """The installed Prefect's SQLite migrations: every revision, and the head(s). Read from the
    migration files, without importing Prefect."""
    spec = find_spec("prefect")
    if spec is None or not spec.submodule_search_locations:
        return frozenset(), frozenset()
    folder = Path(next(iter(spec.submodule_search_locations))) / "server/database/_migrations/versions/sqlite"
    revisions, parents = set(), set()
    for path in folder.glob("*.py"):
        for kind, value in _REVISION.findall(path.read_text(encoding="utf-8")):
            (revisions if kind == "revision" else parents).add(value)
    return frozenset(revisions), frozenset(revisions - parents)


def database_revision(db: Path) -> str | None:
    """The migration a Prefect SQLite database is at (None: no database, or none yet)."""
    if not db.exists():
        return None
    try:
        with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def check_database(db: Path, notify: Callable[[str], None] = _say) -> None:
    """Keep the temporary API from failing on ``db``: one written by a Prefect that the installed one
    does not know is moved aside (to ``prefect-<revision>.db``, run history kept there); one from an
    older Prefect is left to the server, which migrates it as it starts."""
    revision = database_revision(db)
    known, heads = migrations()
    if revision is None or not known or revision in heads:
        return
    installed = version("prefect")
    if revision in known:
        notify(f"{db}: from an older Prefect, migrating it to Prefect {installed} (once)")
        return
    backup = db.with_name(f"prefect-{revision}.db")
    for suffix in ("", "-wal", "-shm", "-journal"):
        source = db.with_name(db.name + suffix)
        if source.exists():
            os.replace(source, backup.with_name(backup.name + suffix))
    notify(f"{db}: written by another Prefect version (migration {revision} is unknown to the installed "
           f"Prefect {installed}); moved it to {backup.name} and starting a new database")


def server_mode() -> str:
    return "server" if os.environ.get("PREFECT_API_URL") else "ephemeral"


@contextmanager
def quiet_engine() -> Iterator[None]:
    """The engine for a command's flows. Without a configured server: this process's temporary API
    (:mod:`.local_api`), started before Prefect is imported here so that the two start-ups overlap,
    and offered to child processes (Dask workers) through ``PREFECT_API_URL``; and no flow heartbeat
    thread (heartbeats only let a server detect crashed runs, and joining the thread costs ~1 s per
    flow run; it cannot be disabled from the environment)."""
    if server_mode() == "server":
        yield
        return
    api = local_api.start(Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect")))
    import prefect.settings as ps

    url = api.wait()
    os.environ["PREFECT_API_URL"] = url
    try:
        with ps.temporary_settings(updates={ps.PREFECT_API_URL: url, ps.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield
    finally:
        os.environ.pop("PREFECT_API_URL", None)
