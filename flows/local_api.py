"""Prefect's temporary API server for one command, bound to that command's life.

Without ``PREFECT_API_URL`` Prefect starts a temporary server of its own at the first flow run,
after this process has imported everything, and a command killed with SIGKILL leaves it running.
This module starts the same server itself (Prefect's API app under uvicorn, UI off, on 127.0.0.1,
with the SQLite database in ``PREFECT_HOME``):

- early and without waiting (:func:`start`), so that its start-up overlaps the command's own
  imports; :meth:`LocalAPI.wait` then waits for its health check;
- once per process: every flow of the command uses it, and child processes (Dask workers) reach
  it through ``PREFECT_API_URL``;
- bound to this process: the server asks the kernel for SIGTERM when its parent dies
  (``PR_SET_PDEATHSIG`` on Linux; elsewhere a thread watches for the parent to go), whatever
  killed the parent; a normal exit stops it through ``atexit``.

The server's output goes to ``PREFECT_HOME/server.log``. A server that exits while starting ends
the command at once with the log's last line, instead of a wait for the start-up timeout.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..tasks.errors import ConfigError

HOST = "127.0.0.1"
APP = "prefect.server.api.server:create_app"
LOG_NAME = "server.log"
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
#: what Prefect's own temporary server sets (no UI, the ephemeral set of services, one app per
#: process), and errors on the console of the server, which is its log file
SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
              "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "ERROR"}
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)\b.*")


@dataclass
class LocalAPI:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/api"

    def wait(self, timeout: float | None = None) -> str:
        """Block until the server answers its health check; its API URL."""
        limit = timeout or float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 90))
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError(f"Prefect's temporary API server exited while starting (code "
                                  f"{self.process.returncode}): {last_error(self.log)} (log: {self.log})")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self.url
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise ConfigError(f"Prefect's temporary API server did not answer within {limit:.0f} s "
                          f"(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS; log: {self.log})")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_current: LocalAPI | None = None


def start(home: Path) -> LocalAPI:
    """This process's server, started now (without waiting for it) unless it is running."""
    global _current
    if _current is not None and _current.process.poll() is None:
        return _current
    home.mkdir(parents=True, exist_ok=True)
    log = home / LOG_NAME
    port = free_port()
    env = {**os.environ, **SERVER_ENV}
    env.pop("PREFECT_API_URL", None)
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", __name__, str(port), str(os.getpid())], env=env,
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    _current = LocalAPI(process, port, log)
    atexit.register(_current.stop)
    return _current


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def last_error(path: Path) -> str:
    """The log's last exception line ("module.SomeError: message"), else its last line."""
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except FileNotFoundError:
        return "(no log)"
    lines = [line for line in lines if line]
    return next((line for line in reversed(lines) if _EXCEPTION_LINE.match(line)), lines[-1] if lines else "(empty log)")


def bind_to_parent(parent: int) -> None:
    """Get SIGTERM when ``parent`` dies (in the server process, before anything else)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    else:
        import threading

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the signal was armed
        sys.exit(0)


def serve(port: int, parent: int) -> None:
    bind_to_parent(parent)
    import uvicorn

    uvicorn.run(APP, factory=True, host=HOST, port=port, log_level="error", lifespan="on")


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
