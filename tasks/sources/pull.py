"""What ``radialog-instruct pull`` fetches, where it puts it, and fetching one verified file.

Targets are the folders ``sources:`` in params.yaml points at:

* ``sources.mimic_cxr.reports`` ending in ``.zip``: MIMIC-CXR's ``mimic-cxr-reports.zip`` goes
  there (the loader reads the zip as is). A folder that already holds an extracted ``files/`` tree
  is left alone;
* ``sources.mimic_cxr.jpg_root``: MIMIC-CXR-JPG's three tables and, with ``--images``, the JPGs
  under ``files/`` in PhysioNet's layout;
* ``sources.mimic_nle.dir`` and ``sources.rad_restruct.dir``: see :mod:`.nle_reconstruct` and
  :mod:`.archives` (fetched when ``sources.physionet.mimic_nle_queries`` /
  ``rad_restruct_archive`` say from where).

Every PhysioNet file is checked against its project version's ``SHA256SUMS.txt`` (kept in
``<workdir>/cache/pull/sums/``; published versions never change). A file already in place is
trusted when the verified record says it matched and is unchanged, else hashed; a mismatch means
one fresh download, and a second mismatch is an error naming the file.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx
import pyarrow.parquet as pq

from ..config import DEMO_ROOT, section
from ..errors import ConfigError, InputError
from ..import_graph import code_files
from ..io import atomic_path, sha256_file
from ..stage import StageSpec, is_fresh, read_stamp, record
from ..storage.assemble import AssembleConfig
from ..storage.shards import SPLIT_DIRS, shard_files
from ..workdir import Workdir
from .archives import extract_folder
from .checksums import SUMS_FILE, VerifiedRecord, parse_sha256sums
from .credentials import require_credentials
from .ingest import SourcesConfig, load_config
from .mimic_cxr import SPLIT, SPLITS, find_table, image_path, load_split
from .mimic_nle import NLE_SPLITS
from .nle_reconstruct import OUTPUT_FILE, QUERY_FILE, query_files, reconstruct_nle
from .physionet import JPG_TABLES, REPORTS_ZIP, PhysioNetConfig, Project, is_url
from .physionet_http import Login, download, open_client, part_path
from .rad_restruct import load_rad_restruct
from .transfer_progress import Progress

IMAGE_BATCH = 256  # images per Prefect task: one task per file would be 377k task runs
RR_FOLDER = "data/radrestruct"
#: the modules whose import closure each step's stamp covers
NLE_MODULES = frozenset({"radialog_instruct.tasks.sources.nle_reconstruct"})
RR_MODULES = frozenset({"radialog_instruct.tasks.sources.archives", "radialog_instruct.tasks.sources.rad_restruct"})


@dataclass(frozen=True)
class RemoteFile:
    """One file of a PhysioNet project version and where it goes."""

    project: Project
    rel: str
    target: Path
    visible: bool = True  # a progress bar of its own (not for images)


@dataclass(frozen=True)
class Outcome:
    target: str
    action: str  # unchanged (verified record) | verified (hashed) | downloaded | replaced (local copy was bad)
    fetched: int


@dataclass(frozen=True)
class PullPlan:
    sources: SourcesConfig
    wd: Workdir
    reports_zip: Path | None

    @property
    def config(self) -> PhysioNetConfig:
        return self.sources.physionet

    @property
    def jpg_root(self) -> Path:
        return self.sources.cxr_paths().jpg_root

    @property
    def cache(self) -> Path:
        return self.wd.cache / "pull"

    def sums_path(self, project: Project) -> Path:
        return self.cache / "sums" / f"{project.slug}-{project.version}-{SUMS_FILE}"

    def files(self) -> list[RemoteFile]:
        jpg = self.config.mimic_cxr_jpg()
        files = [RemoteFile(jpg, name, self.jpg_root / name) for name in JPG_TABLES]
        if self.reports_zip is not None:
            files.insert(0, RemoteFile(self.config.mimic_cxr(), REPORTS_ZIP, self.reports_zip))
        return files

    def projects(self) -> list[Project]:
        return list(dict.fromkeys(f.project for f in self.files()))


def plan_pull(params: dict[str, Any], wd: Workdir) -> PullPlan:
    """Where every download goes; settings that cannot work are a ConfigError before anything runs."""
    sources = load_config(params)
    cxr = sources.cxr_paths()
    cfg = sources.physionet
    for key, value in (("mimic_cxr.reports", cxr.reports), ("mimic_cxr.jpg_root", cxr.jpg_root),
                       ("mimic_nle.dir", sources.mimic_nle.dir if cfg.mimic_nle_queries else None),
                       ("rad_restruct.dir", sources.rad_restruct.dir if cfg.rad_restruct_archive else None)):
        if value is not None and Path(value).resolve().is_relative_to(DEMO_ROOT):
            raise ConfigError(f"params: sources.{key} points into the bundled demo corpus ({DEMO_ROOT}); "
                              "point sources: at the folders the downloads should go to (README, Building from MIMIC)")
    if cfg.mimic_nle_queries and not sources.mimic_nle.dir:
        raise ConfigError("params: sources.physionet.mimic_nle_queries is set but sources.mimic_nle.dir is not")
    if cfg.rad_restruct_archive and not sources.rad_restruct.dir:
        raise ConfigError("params: sources.physionet.rad_restruct_archive is set but sources.rad_restruct.dir is not")
    if cxr.reports.suffix == ".zip":
        reports: Path | None = cxr.reports
    elif (cxr.reports / "files").is_dir() or cxr.reports.name == "files":
        reports = None  # an extracted report tree is already there
    else:
        raise ConfigError(f"params: sources.mimic_cxr.reports is {cxr.reports}; `pull` downloads "
                          f"{REPORTS_ZIP}, so give the path of the zip (e.g. .../mimic-cxr/2.0.0/{REPORTS_ZIP})")
    return PullPlan(sources, wd, reports)


class Fetcher:
    """One pull's HTTP clients (PhysioNet with the login, public without), verified record and progress.

    The PhysioNet client is made on first use, so a run that finds everything in place needs no
    credentials at all.
    """

    def __init__(self, plan: PullPlan, progress: Progress):
        self.plan = plan
        self.progress = progress
        self.record = VerifiedRecord(plan.cache / "verified.jsonl")
        self._lock = threading.Lock()
        self._clients: dict[str, httpx.Client] = {}
        self._login_source = ""

    def _client(self, kind: str) -> httpx.Client:
        with self._lock:
            if kind not in self._clients:
                cfg = self.plan.config
                auth = None
                if kind == "physionet":
                    credentials = require_credentials(cfg.host)
                    auth, self._login_source = credentials.auth(), credentials.source
                self._clients[kind] = open_client(auth=auth, timeout_s=cfg.timeout_s, connections=cfg.concurrency)
            return self._clients[kind]

    def physionet(self, project: Project) -> tuple[httpx.Client, Login]:
        client = self._client("physionet")
        return client, Login(project, self._login_source)

    def public(self) -> httpx.Client:
        return self._client("public")

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fetch_sums(project: Project, fetcher: Fetcher, *, force: bool = False) -> dict[str, str]:
    """The project version's checksum list (downloaded once, then read from the cache)."""
    path = fetcher.plan.sums_path(project)
    if force or not path.exists():
        client, login = fetcher.physionet(project)
        _download_to(client, project.sums_url, path, name=f"{project.label} {SUMS_FILE}", login=login,
                     progress=fetcher.progress)
    return parse_sha256sums(path.read_text(encoding="utf-8"), project.sums_url)


def fetch_verified(item: RemoteFile, sums: dict[str, str], fetcher: Fetcher, *, force: bool = False) -> Outcome:
    """Make ``item.target`` a copy of the published file whose SHA-256 matches the checksum list."""
    expected = sums.get(item.rel)
    if expected is None:
        raise InputError(item.project.sums_url, f"{item.rel} is not listed, so it cannot be verified",
                         expected=f"a file of {item.project.label}")
    target = item.target
    replaced = target.exists()
    if replaced:
        if not force and fetcher.record.matches(target, expected):
            return Outcome(str(target), "unchanged", 0)
        if sha256_file(target) == expected:
            fetcher.record.add(target, expected)
            return Outcome(str(target), "verified", 0)
    client, login = fetcher.physionet(item.project)
    part, fetched = part_path(target), 0
    for _ in range(2):  # a mismatch (a stale part, a bad transfer) earns one fresh download
        digest, n = download(client, item.project.url(item.rel), part, name=item.rel, login=login,
                             progress=fetcher.progress, visible=item.visible)
        fetched += n
        if digest == expected:
            os.replace(part, target)
            fetcher.record.add(target, expected)
            return Outcome(str(target), "replaced" if replaced else "downloaded", fetched)
        part.unlink()
    raise InputError(target, f"SHA-256 still differs from {item.project.label}'s {SUMS_FILE} after a fresh download",
                     expected=f"sha256 {expected}")


def fetch_batch(items: Sequence[RemoteFile], sums: dict[str, str], fetcher: Fetcher, *,
                force: bool = False) -> list[Outcome]:
    outcomes = []
    for item in items:
        outcomes.append(fetch_verified(item, sums, fetcher, force=force))
        fetcher.progress.checked()
    return outcomes


# --- images ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageSelection:
    """``--images``: the JPGs of some splits, or those the shards of a built version refer to."""

    splits: tuple[str, ...] = ()
    version: str | None = None


def parse_images(spec: str, params: dict[str, Any]) -> ImageSelection:
    """``all``, split names (``train,validate``) or ``built[:VERSION]`` (default: assemble.version)."""
    spec = spec.strip()
    if spec == "built" or spec.startswith("built:"):
        return ImageSelection(version=spec.partition(":")[2] or section(AssembleConfig, params, "assemble").version)
    splits = SPLITS if spec == "all" else tuple(s.strip() for s in spec.split(",") if s.strip())
    if not splits or any(s not in SPLITS for s in splits):
        raise ConfigError(f"--images {spec!r}: expected all, split names ({', '.join(SPLITS)}) or built[:VERSION]")
    return ImageSelection(splits=splits)


def select_images(selection: ImageSelection, plan: PullPlan) -> list[str]:
    """Relative JPG paths (``files/pNN/pSUBJECT/sSTUDY/<dicom_id>.jpg``) of the selection."""
    if selection.version is not None:
        return built_images(plan.wd.shards(selection.version))
    frame = load_split(find_table(plan.jpg_root, SPLIT))
    frame = frame[frame["split"].isin(selection.splits)]
    return sorted(set(image_path(frame["subject_id"], frame["study_id"], frame["dicom_id"])))


def built_images(version_dir: Path) -> list[str]:
    files = [path for split in SPLIT_DIRS for path in shard_files(version_dir, split)]
    if not files:
        raise InputError(version_dir, "no shards", expected="a version built by `radialog-instruct build`")
    paths: set[str] = set()
    for path in files:
        column = pq.read_table(path, columns=["image_path"]).column("image_path")
        paths.update(p for p in column.to_pylist() if p and p.startswith("files/"))  # not Rad-ReStruct's IU images
    return sorted(paths)


def image_batches(plan: PullPlan, rels: Iterable[str]) -> list[list[RemoteFile]]:
    project = plan.config.mimic_cxr_jpg()
    items = [RemoteFile(project, rel, plan.jpg_root / rel, visible=False) for rel in rels]
    return [items[i:i + IMAGE_BATCH] for i in range(0, len(items), IMAGE_BATCH)]


# --- MIMIC-NLE and Rad-ReStruct ----------------------------------------------------------------

def fetch_public(url: str, target: Path, fetcher: Fetcher, *, force: bool = False) -> int:
    """A file from a public URL (no login, no published checksum); kept once complete. Returns bytes."""
    if target.exists() and not force:
        return 0
    return _download_to(fetcher.public(), url, target, name=target.name, login=None, progress=fetcher.progress)


def _download_to(client: httpx.Client, url: str, target: Path, *, name: str, login: Login | None,
                 progress: Progress) -> int:
    """``url`` into ``target`` through its ``.part`` file, unchecked; returns the bytes fetched."""
    part = part_path(target)
    _, fetched = download(client, url, part, name=name, login=login, progress=progress)
    os.replace(part, target)
    return fetched


def pull_mimic_nle(plan: PullPlan, fetcher: Fetcher, *, force: bool = False) -> dict[str, Any]:
    """Query files into ``<mimic_nle.dir>/query/``, then ``mimic-nle-{split}.json`` rebuilt from the reports."""
    source, out_dir = plan.config.mimic_nle_queries, plan.sources.mimic_nle.dir
    if not source or not out_dir:
        return {"mimic_nle": "not configured (sources.physionet.mimic_nle_queries)"}
    out, query_dir = Path(out_dir), Path(out_dir) / "query"
    fetched = 0
    for split in NLE_SPLITS:
        name = QUERY_FILE.format(split=split)
        if is_url(source):
            fetched += fetch_public(f"{source.rstrip('/')}/{name}", query_dir / name, fetcher, force=force)
        else:
            src = Path(source) / name
            if not src.is_file():
                raise InputError(src, "MIMIC-NLE query file not found", expected="sources.physionet.mimic_nle_queries "
                                 "= the folder holding {train,dev,test}-query.json")
            if not (query_dir / name).is_file() or (query_dir / name).read_bytes() != src.read_bytes():
                with atomic_path(query_dir / name) as tmp:
                    shutil.copyfile(src, tmp)
    reports = plan.sources.cxr_paths().reports
    spec = StageSpec("pull-mimic-nle", [*query_files(query_dir).values(), reports],
                     [out / OUTPUT_FILE.format(split=split) for split in NLE_SPLITS], code=code_files(NLE_MODULES))
    if not force and is_fresh(spec, plan.wd):
        before = (read_stamp(plan.wd, spec.name) or {}).get("summary", {})
        return {**before, "mimic_nle": "unchanged", "nle_query_bytes": fetched}
    summary = {**reconstruct_nle(query_dir, reports, out), "mimic_nle": "rebuilt", "nle_query_bytes": fetched}
    record(spec, plan.wd, summary)
    return summary


def pull_rad_restruct(plan: PullPlan, fetcher: Fetcher, *, force: bool = False) -> dict[str, Any]:
    """The repository's ``data/radrestruct`` at ``sources.rad_restruct.dir``, checked by its loader."""
    source, target = plan.config.rad_restruct_archive, plan.sources.rad_restruct.dir
    if not source or not target:
        return {"rad_restruct": "not configured (sources.physionet.rad_restruct_archive)"}
    spec = StageSpec("pull-rad-restruct", [] if is_url(source) else [Path(source)], [Path(target)],
                     settings={"source": source}, code=code_files(RR_MODULES))
    if not force and is_fresh(spec, plan.wd):
        return {"rad_restruct": "unchanged"}
    fetched = 0
    if is_url(source):
        archive = plan.cache / "downloads" / (PurePosixPath(urlsplit(source).path).name or "rad-restruct-archive")
        fetched = fetch_public(source, archive, fetcher, force=force)
    else:
        archive = Path(source)
    files = extract_folder(archive, RR_FOLDER, Path(target), load_rad_restruct)
    summary = {"rad_restruct": "extracted", "rad_restruct_files": files, "rad_restruct_bytes": fetched}
    record(spec, plan.wd, summary)
    return summary


# --- summary -----------------------------------------------------------------------------------

def summarize(outcomes: Iterable[Outcome]) -> dict[str, int]:
    counts = {"files": 0, "downloaded": 0, "replaced": 0, "verified": 0, "unchanged": 0, "bytes_downloaded": 0}
    for outcome in outcomes:
        counts["files"] += 1
        counts[outcome.action] += 1
        counts["bytes_downloaded"] += outcome.fetched
    return counts
