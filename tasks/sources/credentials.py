"""PhysioNet credentials: from the environment, a ``.netrc``, or a prompt - and nowhere else.

Order: ``PHYSIONET_USERNAME`` + ``PHYSIONET_PASSWORD``; the ``machine <host>`` entry of the netrc
file (``$NETRC`` or ``~/.netrc``); a terminal prompt (the command line asks once, before any flow
starts, and keeps the answer in this process only). Credentials never enter settings, Prefect
parameters, stamps, logs or error messages: the password field is left out of ``repr``, and the
errors here name where credentials were looked for, never their values.
"""

from __future__ import annotations

import getpass
import netrc
import os
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..errors import ConfigError

USER_ENV = "PHYSIONET_USERNAME"
PASSWORD_ENV = "PHYSIONET_PASSWORD"

_prompted: dict[str, Credentials] = {}


@dataclass(frozen=True)
class Credentials:
    username: str = field(repr=False)
    password: str = field(repr=False)
    source: str  # where they came from, for messages: "PHYSIONET_USERNAME/PHYSIONET_PASSWORD", "~/.netrc", ...

    def auth(self) -> httpx.BasicAuth:
        return httpx.BasicAuth(self.username, self.password)


def netrc_path() -> Path:
    return Path(os.environ.get("NETRC") or Path.home() / ".netrc")


def from_environment() -> Credentials | None:
    user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
    if user and password:
        return Credentials(user, password, f"{USER_ENV}/{PASSWORD_ENV}")
    return None


def from_netrc(host: str) -> Credentials | None:
    path = netrc_path()
    if not path.is_file():
        return None
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except netrc.NetrcParseError as err:
        # the parser's message can quote a token of the file, i.e. a password: name the line only
        raise ConfigError(f"{path}: cannot read line {err.lineno} (see `man netrc`; "
                          f"PhysioNet needs 'machine {host} login USER password PASSWORD')") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or type(err).__name__})") from None
    if entry is None or not entry[0] or not entry[2]:
        return None
    wanted = os.environ.get(USER_ENV)
    if wanted and wanted != entry[0]:
        return None  # the netrc login is another account than the one asked for
    return Credentials(entry[0], entry[2], str(path))


def ask(host: str) -> Credentials:
    """Prompt on the terminal (the password is not echoed); remembered for this process."""
    user = os.environ.get(USER_ENV) or input(f"PhysioNet user name for {host}: ").strip()
    password = getpass.getpass(f"PhysioNet password for {host}: ")
    if not user or not password:
        raise ConfigError("no PhysioNet user name or password entered")
    _prompted[host] = Credentials(user, password, "the prompt")
    return _prompted[host]


def find_credentials(host: str) -> Credentials | None:
    """Credentials without asking: environment, netrc, or an earlier prompt in this process."""
    return from_environment() or from_netrc(host) or _prompted.get(host)


def prepare_credentials(host: str, *, interactive: bool) -> None:
    """Called by the command line before a flow starts: ask now if nothing else provides them."""
    if find_credentials(host) is None and interactive:
        ask(host)


def require_credentials(host: str) -> Credentials:
    found = find_credentials(host)
    if found is None:
        raise ConfigError(f"no PhysioNet credentials for {host}: set {USER_ENV} and {PASSWORD_ENV}, add "
                          f"'machine {host} login USER password PASSWORD' to {netrc_path()}, "
                          "or run `radialog-instruct pull` in a terminal to be asked")
    return found
