"""Resumable downloads over HTTP(S) with httpx, and PhysioNet's status codes as one-line errors.

httpx (already a dependency of the project, maintained by Encode) gives a thread-safe pooled
client, streamed bodies, per-phase timeouts, ``auth=`` that keeps credentials out of URLs, and
drops the Authorization header on redirects to another origin. Nothing shells out to wget.

A download writes ``<file>.part`` next to its target. When a ``.part`` exists the request asks for
the rest only (``Range: bytes=<size>-``) and appends what the server sends (206); a server that
ignores ranges (200) sends the whole file again, which then starts over. The SHA-256 of the whole
file is computed while it streams (seeded from the bytes already there), so a fresh download is
read from disk zero times. Only connection failures, timeouts and HTTP 408/425/429/5xx are worth a
retry (:class:`TransientError`); 401/403 are :class:`AccessError` (no retry, one line).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import httpx

from .. import __version__
from ..errors import ConfigError, InputError
from ..io import sha256_file, sha256_of
from .physionet import Project
from .transfer_progress import Progress

CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE = re.compile(r"^bytes \*/(\d+)$")
#: Wget's prefix, which PhysioNet needs for basic authentication (see :mod:`.physionet`), then our name.
USER_AGENT = f"Wget/1.21 (compatible; radialog-instruct/{__version__}; httpx/{httpx.__version__})"


class TransientError(RuntimeError):
    """A failure worth retrying: connection lost, timeout, HTTP 408/425/429/5xx (one line)."""


class AccessError(ConfigError):
    """The server refused the login (401) or the account's access to the project (403)."""


@dataclass(frozen=True)
class Login:
    """Who is asking, for messages: the project and where the credentials came from (no values)."""

    project: Project
    source: str


def open_client(*, auth: httpx.Auth | None, timeout_s: float, connections: int) -> httpx.Client:
    """A pooled client; ``Accept-Encoding: identity`` so ranges count the file's own bytes."""
    return httpx.Client(auth=auth, timeout=httpx.Timeout(timeout_s), follow_redirects=True,
                        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
                        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections))


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def download(client: httpx.Client, url: str, part: Path, *, name: str, login: Login | None,
             progress: Progress, visible: bool = True) -> tuple[str, int]:
    """Fetch ``url`` into ``part``, continuing what is there; returns (sha256 of ``part``, bytes fetched)."""
    part.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = _transfer(client, url, part, name, login, progress, visible)
        if result is None:  # the part cannot be continued (longer than the file, or another range came)
            part.unlink(missing_ok=True)
            result = _transfer(client, url, part, name, login, progress, visible)
    except httpx.TransportError as err:
        raise TransientError(f"{url}: {type(err).__name__} ({' '.join(str(err).split()) or 'no detail'})") from None
    if result is None:
        raise TransientError(f"{url}: the server answered a request for the whole file with a part of it")
    return result


def _transfer(client: httpx.Client, url: str, part: Path, name: str, login: Login | None, progress: Progress,
              visible: bool) -> tuple[str, int] | None:
    offset = part.stat().st_size if part.exists() else 0
    with client.stream("GET", url, headers={"Range": f"bytes={offset}-"} if offset else {}) as response:
        if response.status_code == 416 and offset:
            match = _UNSATISFIED_RANGE.match(response.headers.get("Content-Range", ""))
            if match and int(match.group(1)) == offset:  # the part already holds the whole file
                return sha256_file(part, CHUNK), 0
            return None
        raise_for_status(response, url, login)
        if response.status_code == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != offset:
                return None
            digest, mode = sha256_of(part, CHUNK), "ab"
        else:  # 200: the whole file, whatever was asked
            digest, mode, offset = hashlib.sha256(), "wb", 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        handle = progress.start(name, total, offset, visible=visible)
        fetched = 0
        try:
            with open(part, mode) as fh:
                for chunk in response.iter_raw():  # as it arrives, so a kill loses no received byte
                    fh.write(chunk)
                    digest.update(chunk)
                    fetched += len(chunk)
                    progress.advance(handle, len(chunk))
        finally:
            progress.finish(handle)
    if total is not None and offset + fetched != total:
        raise TransientError(f"{url}: connection closed after {offset + fetched} of {total} bytes")
    return digest.hexdigest(), fetched


def raise_for_status(response: httpx.Response, url: str, login: Login | None) -> None:
    code = response.status_code
    if code < 300:
        return
    if code == 401:
        if login is None:
            raise InputError(url, "the server asks for a login (HTTP 401)", expected="a public URL or a local path")
        raise AccessError(f"{login.project.label}: login failed (HTTP 401): the server did not accept the "
                          f"user name and password from {login.source}")
    if code == 403:
        if login is None:
            raise InputError(url, "access denied (HTTP 403)", expected="a public URL or a local path")
        raise AccessError(f"{login.project.label}: access denied (HTTP 403): the login worked, but this account "
                          f"may not download {login.project.label}; sign its data use agreement (credentialed "
                          f"access also needs approved credentialing and training) on {login.project.page}")
    if code == 404:
        raise InputError(url, "not found on the server (HTTP 404)",
                         expected="the file in this project version: check sources.physionet.base_url and "
                                  "the *_version settings" if login else "a URL that exists")
    if code in (408, 425, 429) or code >= 500:
        raise TransientError(f"{url}: HTTP {code} from the server")
    raise InputError(url, f"HTTP {code} from the server", expected="200 or 206")
