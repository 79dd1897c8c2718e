"""`radialog-instruct pull` against a PhysioNet-like server on 127.0.0.1 (basic auth, ranges, faults).

The server serves a tree built from the demo corpus in PhysioNet's layout (mimic-cxr/2.0.0 with
mimic-cxr-reports.zip, mimic-cxr-jpg/2.0.0 with the three tables and a stand-in JPG per dicom, a
SHA256SUMS.txt per project version), plus public MIMIC-NLE query files and a Rad-ReStruct archive.
Like PhysioNet it honours basic auth only from a ``Wget/`` user agent, answers 401 to a bad login
and 403 to an account without access, and logs every request with its Range header.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest
from typer.testing import CliRunner

from radialog_instruct.flows.cli import app
from radialog_instruct.tasks.config import load_params
from radialog_instruct.tasks.errors import ConfigError, InputError, StageFailure
from radialog_instruct.tasks.sources import pull
from radialog_instruct.tasks.sources.archives import extract_folder
from radialog_instruct.tasks.sources.checksums import VerifiedRecord, parse_sha256sums
from radialog_instruct.tasks.sources.credentials import require_credentials
from radialog_instruct.tasks.sources.physionet_http import AccessError
from radialog_instruct.tasks.sources.rad_restruct import load_rad_restruct
from radialog_instruct.tasks.sources.sections import clean
from radialog_instruct.tasks.sources.transfer_progress import Progress
from radialog_instruct.tasks.workdir import Workdir

from reference import DEMO, REPO

USER, PASSWORD = "alice", "pw-Kq8!zR2-never-printed"
NO_DUA_USER, NO_DUA_PASSWORD = "bob", "pw-bob-7Yt"
ZIP_TIME = (2019, 9, 19, 0, 0, 0)
runner = CliRunner()


# --- the PhysioNet-like tree -------------------------------------------------------------------

def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(files):
            archive.writestr(zipfile.ZipInfo(name, ZIP_TIME), files[name])
    return buffer.getvalue()


def _with_sums(prefix: str, files: dict[str, bytes]) -> dict[str, bytes]:
    sums = "".join(f"{hashlib.sha256(files[rel]).hexdigest()} {rel}\n" for rel in sorted(files))
    return {f"{prefix}/{rel}": body for rel, body in {**files, "SHA256SUMS.txt": sums.encode()}.items()}


@pytest.fixture(scope="session")
def tree() -> dict[str, bytes]:
    """URL path -> body: the demo corpus laid out as PhysioNet (and GitHub) serve it."""
    reports = {p.relative_to(DEMO / "mimic-cxr").as_posix(): p.read_bytes()
               for p in sorted((DEMO / "mimic-cxr" / "files").rglob("*.txt"))}
    jpg_dir = DEMO / "mimic-cxr-jpg"
    jpg = {p.name: p.read_bytes() for p in sorted(jpg_dir.glob("*.csv.gz"))}
    split = pd.read_csv(jpg_dir / "mimic-cxr-2.0.0-split.csv.gz", dtype=str)
    for row in split.itertuples():
        rel = f"files/p{row.subject_id[:2]}/p{row.subject_id}/s{row.study_id}/{row.dicom_id}.jpg"
        jpg[rel] = b"\xff\xd8\xff\xe0" + hashlib.sha256(row.dicom_id.encode()).digest() * 8  # a stand-in JPG
    served = {**_with_sums("/files/mimic-cxr/2.0.0", {"mimic-cxr-reports.zip": _zip(reports)}),
              **_with_sums("/files/mimic-cxr-jpg/2.0.0", jpg)}
    for name in ("train", "dev", "test"):
        lines = (DEMO / "mimic-nle" / f"mimic-nle-{name}.json").read_text().splitlines()
        queries = [{k: v for k, v in json.loads(line).items() if k not in ("nle", "patient_ID", "report_ID")}
                   for line in lines if line.strip()]
        served[f"/public/mimic-nle/query/{name}-query.json"] = "".join(json.dumps(q) + "\n" for q in queries).encode()
    rr = DEMO / "rad-restruct"
    served["/public/Rad-ReStruct-demo.zip"] = _zip({f"Rad-ReStruct-demo/{p.relative_to(rr).as_posix()}": p.read_bytes()
                                                    for p in sorted(rr.rglob("*")) if p.is_file()})
    return served


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PhysioNetLike

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        path = urlsplit(self.path).path
        entry = {"path": path, "range": self.headers.get("Range"), "status": 0, "sent": 0,
                 "authorization": self.headers.get("Authorization")}
        srv.requests.append(entry)
        if path.startswith("/files/"):
            user = self._user()
            if user is None:
                return self._status(entry, 401, {"WWW-Authenticate": 'Basic realm="PhysioNet", charset="UTF-8"'})
            if user != USER:
                return self._status(entry, 403)
        body = srv.tree.get(path)
        if body is None:
            return self._status(entry, 404)
        if srv.failures.get(path):
            return self._status(entry, srv.failures[path].pop(0))
        if srv.corrupt.get(path):
            srv.corrupt[path] -= 1
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        start = int(entry["range"][6:-1]) if entry["range"] and not srv.ignore_range else 0
        if start >= len(body) > 0:
            return self._status(entry, 416, {"Content-Range": f"bytes */{len(body)}"})
        headers = {"Content-Length": str(len(body) - start)}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        entry["status"] = 206 if start else 200
        self.send_response(entry["status"])
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        stall = srv.stall_after.get(path)
        try:
            for offset in range(start, len(body), 16384):
                if stall is not None and offset >= stall and not srv.released.is_set():
                    srv.stalled.set()
                    srv.released.wait(60)
                    return
                self.wfile.write(body[offset:offset + 16384])
                self.wfile.flush()
                entry["sent"] += min(16384, len(body) - offset)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _user(self) -> str | None:
        """PhysioNet: basic auth only from wget-like agents; the user whose password matches."""
        header = self.headers.get("Authorization", "")
        if not self.headers.get("User-Agent", "").startswith(("Wget/", "libwfdb/")) or not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if {USER: PASSWORD, NO_DUA_USER: NO_DUA_PASSWORD}.get(user) == password else None

    def _status(self, entry: dict, code: int, headers: dict[str, str] | None = None) -> None:
        entry["status"] = code
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


class PhysioNetLike(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tree: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), Handler)
        self.tree = dict(tree)
        self.requests: list[dict] = []
        self.failures: dict[str, list[int]] = {}
        self.corrupt: dict[str, int] = {}
        self.stall_after: dict[str, int] = {}
        self.ignore_range = False
        self.stalled, self.released = threading.Event(), threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def gets(self, suffix: str = "") -> list[dict]:
        return [r for r in self.requests if r["path"].endswith(suffix)]


@pytest.fixture()
def server(tree):
    srv = PhysioNetLike(tree)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.released.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture()
def login(monkeypatch, tmp_path):
    monkeypatch.setenv("PHYSIONET_USERNAME", USER)
    monkeypatch.setenv("PHYSIONET_PASSWORD", PASSWORD)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


def overrides(server: PhysioNetLike, data: Path) -> list[str]:
    return [f"sources.mimic_cxr.reports={data}/mimic-cxr/2.0.0/mimic-cxr-reports.zip",
            f"sources.mimic_cxr.jpg_root={data}/mimic-cxr-jpg/2.0.0",
            f"sources.mimic_nle.dir={data}/mimic-nle",
            f"sources.rad_restruct.dir={data}/rad-restruct/data/radrestruct",
            f"sources.physionet.base_url={server.url}/files/",
            f"sources.physionet.mimic_nle_queries={server.url}/public/mimic-nle/query",
            f"sources.physionet.rad_restruct_archive={server.url}/public/Rad-ReStruct-demo.zip",
            "sources.physionet.retry_delay_s=0.01", "sources.physionet.timeout_s=20"]


def set_args(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def fetch_all(params: dict, wd: Workdir, *, force: bool = False) -> list[pull.Outcome]:
    """The PhysioNet files of a pull, without the flow (no retries, one thread)."""
    plan = pull.plan_pull(params, wd)
    with pull.Fetcher(plan, Progress()) as fetcher:
        sums = {p: pull.fetch_sums(p, fetcher, force=force) for p in plan.projects()}
        return [pull.fetch_verified(f, sums[f.project], fetcher, force=force) for f in plan.files()]


def secrets_in(*roots: Path) -> list[str]:
    """Files under ``roots`` holding the password or the Authorization header built from it."""
    needles = [PASSWORD.encode(), base64.b64encode(f"{USER}:{PASSWORD}".encode())]
    return [str(p) for root in roots for p in root.rglob("*")
            if p.is_file() and any(n in p.read_bytes() for n in needles)]


# --- end to end --------------------------------------------------------------------------------

@pytest.mark.slow
def test_pull_then_build_then_pull_again_downloads_nothing(server, login, tmp_path):
    data, work = tmp_path / "physionet", tmp_path / "work"
    sets = set_args(overrides(server, data))
    first = runner.invoke(app, ["pull", "--workdir", str(work), "--images", "test", *sets])
    assert first.exit_code == 0, first.output
    summary = json.loads((work / "reports" / "pull-summary.json").read_text())
    assert summary["files"] == summary["downloaded"] == 4
    assert summary["images_downloaded"] == summary["images_files"] > 0
    assert summary["nle_mismatches"] == 0 and summary["nle_written"] == 34
    assert summary["rad_restruct"] == "extracted"
    zip_path = data / "mimic-cxr" / "2.0.0" / "mimic-cxr-reports.zip"
    assert zip_path.read_bytes() == server.tree["/files/mimic-cxr/2.0.0/mimic-cxr-reports.zip"]
    assert not list(data.rglob("*.part"))
    # the reconstruction gives back the demo's NLE sentences, in MIMIC-NLE's released format
    for name in ("train", "dev", "test"):
        ours = [json.loads(line) for line in (data / "mimic-nle" / f"mimic-nle-{name}.json").read_text().splitlines()]
        demo = [json.loads(line) for line in (DEMO / "mimic-nle" / f"mimic-nle-{name}.json").read_text().splitlines()]
        assert [(r["sentence_ID"], r["patient_ID"], clean(r["nle"])) for r in ours] == \
               [(r["sentence_ID"], r["patient_ID"], clean(r["nle"])) for r in demo]
        assert list(ours[0]) == ["sentence_ID", "diagnosis_label", "evidence_label", "img_labels", "nle",
                                 "report_ID", "patient_ID"]

    server.requests.clear()
    second = runner.invoke(app, ["pull", "--workdir", str(work), "--images", "test", *sets])
    assert second.exit_code == 0, second.output
    assert server.requests == []  # nothing fetched, not even a checksum list
    again = json.loads((work / "reports" / "pull-summary.json").read_text())
    assert again["unchanged"] == 4 and again["images_unchanged"] == summary["images_files"]
    assert again["mimic_nle"] == "unchanged" and again["rad_restruct"] == "unchanged"

    built = runner.invoke(app, ["build", "--demo", "--workdir", str(work), *set_args(overrides(server, data)[:4])])
    assert built.exit_code == 0, built.output
    ingested = json.loads((work / "reports" / "ingest-summary.json").read_text())
    assert ingested["rows"]["reports"] == 300 and ingested["rows"]["nle"] == 34
    assert ingested["notes"]["nle_unresolved"] == 0 and ingested["notes"]["radrestruct_reports"] == 200
    images = pd.read_parquet(work / "interim" / "images.parquet")
    assert images["image_path"].isin([p[len("/files/mimic-cxr-jpg/2.0.0/"):] for p in server.tree]).all()

    server.requests.clear()
    by_version = runner.invoke(app, ["pull", "--workdir", str(work), "--images", "built", *sets])
    assert by_version.exit_code == 0, by_version.output
    counts = json.loads((work / "reports" / "pull-summary.json").read_text())
    used = set(pd.concat([pd.read_parquet(p, columns=["image_path"]) for p in (work / "shards").rglob("part-*.parquet")
                          if p.parent.name != "excluded"])["image_path"])
    assert counts["images_files"] == len({p for p in used if p.startswith("files/")})
    assert counts["images_downloaded"] == len(server.gets(".jpg")) == counts["images_files"] - counts["images_unchanged"]
    assert secrets_in(work, data, Path(os.environ["PREFECT_HOME"])) == []


@pytest.mark.slow
def test_wrong_password_exits_2_with_one_line_and_leaks_it_nowhere(server, tmp_path):
    data, work = tmp_path / "physionet", tmp_path / "work"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PHYSIONET_USERNAME=USER, PHYSIONET_PASSWORD=PASSWORD[::-1], NETRC=str(tmp_path / "none"))
    wrong = PASSWORD[::-1]
    result = subprocess.run([sys.executable, "-c", "from radialog_instruct.flows.cli import main; main()",
                             "pull", "--workdir", str(work), *set_args(overrides(server, data))],
                            env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert result.returncode == 2, output
    assert len(lines) == 1 and "login failed (HTTP 401)" in lines[0] and "PHYSIONET_PASSWORD" in lines[0], output
    assert wrong not in output and USER not in output
    recorded = [p for p in (work / ".prefect").rglob("*") if p.is_file() and b"login failed (HTTP 401)" in p.read_bytes()]
    assert recorded  # the failed flow run is in the work dir's Prefect database, message and all
    needles = [wrong.encode(), base64.b64encode(f"{USER}:{wrong}".encode())]
    leaked = [p for p in [*work.rglob("*"), *data.rglob("*")] if p.is_file() and any(n in p.read_bytes() for n in needles)]
    assert leaked == []
    assert {r["status"] for r in server.requests if r["path"].startswith("/files/")} == {401}


# --- resume, verification, errors --------------------------------------------------------------

KILL_SCRIPT = """
import json, sys
from radialog_instruct.tasks.config import load_params
from radialog_instruct.tasks.sources import pull
from radialog_instruct.tasks.sources.transfer_progress import Progress
from radialog_instruct.tasks.workdir import Workdir
plan = pull.plan_pull(load_params(None, json.loads(sys.argv[1])), Workdir.at(sys.argv[2]))
with pull.Fetcher(plan, Progress()) as fetcher:
    for item in plan.files():
        pull.fetch_verified(item, pull.fetch_sums(item.project, fetcher), fetcher)
"""


def test_killed_mid_file_resumes_without_fetching_a_byte_twice(server, login, tmp_path):
    data, work = tmp_path / "physionet", tmp_path / "work"
    zip_url = "/files/mimic-cxr/2.0.0/mimic-cxr-reports.zip"
    size = len(server.tree[zip_url])
    server.stall_after[zip_url] = 65536
    sets = overrides(server, data)
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, json.dumps(sets), str(work)], env=os.environ.copy())
    part = data / "mimic-cxr" / "2.0.0" / "mimic-cxr-reports.zip.part"
    try:
        assert server.stalled.wait(120), "the download never started"
        deadline = time.monotonic() + 30
        while not (part.exists() and part.stat().st_size == 65536) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert part.stat().st_size == 65536  # what arrived before the kill is on disk
    server.released.set()
    server.requests.clear()

    outcomes = fetch_all(load_params(None, sets), Workdir.at(work))
    assert [o.action for o in outcomes] == ["downloaded"] * 4
    resumed = server.gets("mimic-cxr-reports.zip")
    assert [(r["range"], r["status"], r["sent"]) for r in resumed] == [("bytes=65536-", 206, size - 65536)]
    assert server.gets("/mimic-cxr/2.0.0/SHA256SUMS.txt") == []  # complete before the kill: not fetched again
    assert (data / "mimic-cxr" / "2.0.0" / "mimic-cxr-reports.zip").read_bytes() == server.tree[zip_url]
    assert not part.exists()


def test_a_part_is_continued_only_while_it_can_be(server, login, tmp_path):
    data, work = tmp_path / "physionet", Workdir.at(tmp_path / "work")
    params = load_params(None, overrides(server, data))
    fetch_all(params, work)  # checksum lists cached; now leave only .part files of the split table
    table = data / "mimic-cxr-jpg" / "2.0.0" / "mimic-cxr-2.0.0-split.csv.gz"
    part, good = table.with_name(table.name + ".part"), table.read_bytes()

    def again(part_bytes: bytes) -> list[tuple[str | None, int]]:
        table.unlink()
        part.write_bytes(part_bytes)
        server.requests.clear()
        assert {Path(o.target).name: o.action for o in fetch_all(params, work)}[table.name] == "downloaded"
        assert table.read_bytes() == good and not part.exists()
        return [(r["range"], r["status"]) for r in server.requests]

    # the whole file already in the part (killed before the rename): nothing to fetch
    assert again(good) == [(f"bytes={len(good)}-", 416)]
    # a part that is not the start of this file: the mismatch earns one fresh download
    assert again(b"\0" * 100) == [("bytes=100-", 206), (None, 200)]
    # a server that ignores ranges sends the whole file: written from the start
    server.ignore_range = True
    assert again(good[:100]) == [("bytes=100-", 200)]


def test_a_changed_local_file_is_detected_and_replaced(server, login, tmp_path):
    data, work = tmp_path / "physionet", Workdir.at(tmp_path / "work")
    params = load_params(None, overrides(server, data))
    fetch_all(params, work)
    table = data / "mimic-cxr-jpg" / "2.0.0" / "mimic-cxr-2.0.0-split.csv.gz"
    good = table.read_bytes()
    table.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])  # one flipped bit, new mtime
    server.requests.clear()
    outcomes = {Path(o.target).name: o.action for o in fetch_all(params, work)}
    assert outcomes[table.name] == "replaced" and table.read_bytes() == good
    assert [r["path"] for r in server.requests] == ["/files/mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-split.csv.gz"]
    assert set(outcomes.values()) == {"unchanged", "replaced"}

    # same size and mtime put back: the record is trusted, --force hashes and catches it
    stat = table.stat()
    table.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])
    os.utime(table, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert {Path(o.target).name: o.action for o in fetch_all(params, work)}[table.name] == "unchanged"
    forced = {Path(o.target).name: o.action for o in fetch_all(params, work, force=True)}
    assert forced[table.name] == "replaced" and table.read_bytes() == good
    assert forced["mimic-cxr-reports.zip"] == "verified"


def test_a_checksum_mismatch_is_downloaded_once_more_then_fails_naming_the_file(server, login, tmp_path):
    data, work = tmp_path / "physionet", Workdir.at(tmp_path / "work")
    params = load_params(None, overrides(server, data))
    url = "/files/mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-metadata.csv.gz"
    server.corrupt[url] = 1
    assert {o.action for o in fetch_all(params, work)} == {"downloaded"}
    assert len(server.gets("metadata.csv.gz")) == 2

    target = data / "mimic-cxr-jpg" / "2.0.0" / "mimic-cxr-2.0.0-metadata.csv.gz"
    target.unlink()
    server.corrupt[url] = 2
    with pytest.raises(InputError, match=r"metadata\.csv\.gz: SHA-256 still differs from mimic-cxr-jpg 2\.0\.0"):
        fetch_all(params, work)
    assert not target.exists() and not target.with_name(target.name + ".part").exists()


def test_a_missing_file_is_a_404_naming_it(server, login, tmp_path):
    del server.tree["/files/mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-chexpert.csv.gz"]
    params = load_params(None, overrides(server, tmp_path / "physionet"))
    with pytest.raises(InputError, match=r"mimic-cxr-2\.0\.0-chexpert\.csv\.gz: not found on the server \(HTTP 404\)"):
        fetch_all(params, Workdir.at(tmp_path / "work"))


def test_an_account_without_the_data_use_agreement_gets_403(server, monkeypatch, tmp_path):
    monkeypatch.setenv("PHYSIONET_USERNAME", NO_DUA_USER)
    monkeypatch.setenv("PHYSIONET_PASSWORD", NO_DUA_PASSWORD)
    params = load_params(None, overrides(server, tmp_path / "physionet"))
    with pytest.raises(AccessError, match="access denied \\(HTTP 403\\): the login worked.*data use agreement") as err:
        fetch_all(params, Workdir.at(tmp_path / "work"))
    assert NO_DUA_PASSWORD not in str(err.value) and NO_DUA_USER not in str(err.value)


@pytest.mark.slow
def test_server_errors_are_retried_then_reported_in_one_line(server, login, tmp_path):
    from radialog_instruct.flows.pull import run_pull

    data, work = tmp_path / "physionet", tmp_path / "work"
    params = load_params(None, overrides(server, data))
    split_url = "/files/mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-split.csv.gz"
    server.failures[split_url] = [503, 502]
    summary = run_pull(params, str(work))
    assert summary["downloaded"] == 4
    assert [r["status"] for r in server.gets("split.csv.gz")] == [503, 502, 200]

    (data / "mimic-cxr-jpg" / "2.0.0" / "mimic-cxr-2.0.0-split.csv.gz").unlink()
    server.requests.clear()
    server.failures[split_url] = [500] * 10
    params = load_params(None, [*overrides(server, data), "sources.physionet.retries=2"])
    with pytest.raises(StageFailure, match=r"1 download\(s\) failed after retries: .*split\.csv\.gz: HTTP 500"):
        run_pull(params, str(work))
    assert [r["status"] for r in server.gets("split.csv.gz")] == [500, 500, 500]  # first try + 2 retries


# --- settings, credentials, formats ------------------------------------------------------------

def test_credentials_come_from_a_netrc_file_and_their_absence_is_one_line(monkeypatch, tmp_path):
    for key in ("PHYSIONET_USERNAME", "PHYSIONET_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    with pytest.raises(ConfigError, match="no PhysioNet credentials for physionet.org: set PHYSIONET_USERNAME"):
        require_credentials("physionet.org")
    (tmp_path / "netrc").write_text(f"machine physionet.org login {USER} password {PASSWORD}\n")
    (tmp_path / "netrc").chmod(0o600)
    found = require_credentials("physionet.org")
    assert (found.username, found.password, found.source) == (USER, PASSWORD, str(tmp_path / "netrc"))
    assert PASSWORD not in repr(found) and USER not in repr(found)


def test_settings_that_cannot_work_are_refused_before_any_download(tmp_path):
    def plan(*items: str) -> None:
        pull.plan_pull(load_params(None, list(items)), Workdir.at(tmp_path))

    with pytest.raises(ConfigError, match="points into the bundled demo corpus"):
        plan()
    zip_ok = f"sources.mimic_cxr.reports={tmp_path}/mimic-cxr-reports.zip"
    jpg_ok = f"sources.mimic_cxr.jpg_root={tmp_path}/jpg"
    with pytest.raises(ConfigError, match="must not contain a user name or password") as err:
        plan(zip_ok, jpg_ok, f"sources.physionet.base_url=https://{USER}:{PASSWORD}@physionet.org/files/")
    assert PASSWORD not in str(err.value)
    with pytest.raises(ConfigError, match="must use https"):
        plan(zip_ok, jpg_ok, "sources.physionet.base_url=http://physionet.org/files/")
    with pytest.raises(ConfigError, match="give the path of the zip"):
        plan(f"sources.mimic_cxr.reports={tmp_path}/reports", jpg_ok, "sources.rad_restruct.dir=null",
             "sources.mimic_nle.dir=null")
    with pytest.raises(ConfigError, match="mimic_cxr_jpg_version must be a version"):
        plan(zip_ok, jpg_ok, "sources.physionet.mimic_cxr_jpg_version=latest")


def test_sha256sums_lines_as_physionet_and_sha256sum_write_them(tmp_path):
    digest = hashlib.sha256(b"x").hexdigest()
    text = f"{digest} LICENSE.txt\n{digest.upper()}  files/p10/a b.jpg\n{digest} *mimic-cxr-reports.zip\n"
    assert parse_sha256sums(text, "SUMS") == {"LICENSE.txt": digest, "files/p10/a b.jpg": digest,
                                             "mimic-cxr-reports.zip": digest}
    with pytest.raises(InputError, match="SUMS: record line 2: not a checksum line"):
        parse_sha256sums(f"{digest} ok\n{digest[:10]} short\n", "SUMS")


def test_the_verified_record_survives_a_cut_line_and_stays_small(tmp_path):
    file, record_path = tmp_path / "a.bin", tmp_path / "verified.jsonl"
    file.write_bytes(b"abc")
    digest = hashlib.sha256(b"abc").hexdigest()
    record = VerifiedRecord(record_path)
    for _ in range(1500):
        record.add(file, digest)
    with open(record_path, "a") as fh:
        fh.write('{"path": "cut by a cra')
    reopened = VerifiedRecord(record_path)
    assert reopened.matches(file, digest) and not reopened.matches(file, "0" * 64)
    assert len(record_path.read_text().splitlines()) == 1  # 1501 lines for one file: rewritten
    os.utime(file, ns=(0, 0))
    assert not reopened.matches(file, digest)


def test_rad_restruct_folder_from_a_checkout_or_a_tar_archive(tmp_path):
    import tarfile

    target = tmp_path / "out" / "radrestruct"
    count = extract_folder(DEMO / "rad-restruct", "data/radrestruct", target, load_rad_restruct)
    assert count == sum(1 for p in (DEMO / "rad-restruct" / "data" / "radrestruct").rglob("*") if p.is_file())
    archive = tmp_path / "rr.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(DEMO / "rad-restruct" / "data", arcname="Rad-ReStruct-main/data")
        evil = tarfile.TarInfo("Rad-ReStruct-main/data/radrestruct/../../../escaped.txt")
        evil.size = 1
        tar.addfile(evil, io.BytesIO(b"x"))
    assert extract_folder(archive, "data/radrestruct", target, load_rad_restruct) == count
    assert not (tmp_path / "escaped.txt").exists() and not list(tmp_path.rglob("escaped.txt"))
    with pytest.raises(InputError, match="no data/radrestruct/ folder inside"):
        extract_folder(REPO / "tasks", "data/radrestruct", tmp_path / "x", load_rad_restruct)
    assert not (tmp_path / "x").exists()

