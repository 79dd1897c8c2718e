"""Report files to section columns, in file order, read and parsed by worker processes.

The main process does no per-report work. For a folder it lists only the top two levels of the
tree (``files/`` and ``files/pNN/``); for the released zip it reads the central directory. The
work is cut into batches of patient folders or zip members, and each worker walks its folders
itself (each report costs open, read, read, close) or slices its members out of a memory map of
the zip (no system call per report), checks and sections the text and returns an Arrow record
batch. Batches come back in input order, so the rows - and the first bad file's error - do not
depend on the number of workers; a corpus of one batch or less is parsed in-process (no start-up
cost for the demo). This module imports only what the workers need.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from itertools import islice
from typing import Any

import pyarrow as pa

from ..errors import InputError
from ..parallel import default_workers, ordered_map
from .sections import STUDY_SECTIONS, study_sections

_REPORT_PATH = re.compile(r"(?:^|/)files/(p1\d)/(p(\d{8}))/s(\d{8})\.txt$")
BATCH = 1000  # patient folders (about 3.5 reports each in MIMIC-CXR) or zip members per batch
_CHUNK = 1 << 16

#: One row per report, in file order.
REPORT_ROWS = pa.schema([pa.field("subject_id", pa.int64()), pa.field("study_id", pa.int64()),
                         pa.field("report_path", pa.string()), pa.field("text_sha1", pa.string()),
                         *(pa.field(name, pa.string()) for name in STUDY_SECTIONS)])

#: A report file, or a patient folder the worker walks: (path, path from the reports root, is a folder).
FolderUnit = tuple[str, str, bool]
#: A zip member: (name, local header offset, compressed size, CRC-32, compression method, flag bits).
ZipMember = tuple[str, int, int, int, int, int]
#: Parsed rows of one batch, and what ``raw_as`` made of the raw text of its studies in ``keep_raw``.
ParsedBatch = tuple[pa.RecordBatch, dict[int, Any]]
#: What is kept of a kept study's raw text (a picklable function: it runs in the workers).
RawAs = Callable[[str], Any]
#: A report: (where, for errors; path from the reports root; raw bytes).
Report = tuple[str, str, bytes]
#: Which reports to read, by path from the reports root.
Want = Callable[[str], bool]

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, 22 bytes, file name length, extra field length


def parse_report_path(rel: str, where: str) -> tuple[int, int]:
    match = _REPORT_PATH.search(rel)
    if match is None:
        raise InputError(where, "unexpected file in the reports tree",
                         expected="files/pNN/pSUBJECT/sSTUDY.txt (8-digit ids)")
    group, _, subject, study = match.groups()
    if not match.group(2).startswith(group):
        raise InputError(where, f"patient folder {match.group(2)} is not under its group folder {group}",
                         expected=f"files/{match.group(2)[:3]}/{match.group(2)}/...")
    return int(subject), int(study)


class _Batch:
    """Rows of parsed reports, collected in order."""

    def __init__(self, keep_raw: frozenset[int], raw_as: RawAs):
        self.rows: list[tuple] = []
        self.raw: dict[int, Any] = {}
        self.keep_raw, self.raw_as = keep_raw, raw_as

    def add(self, where: str, rel: str, data: bytes) -> None:
        subject, study = parse_report_path(rel, where)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputError(where, f"not UTF-8 text (byte {err.start})", expected="a plain-text report") from None
        parts = study_sections(text)
        self.rows.append((subject, study, rel, hashlib.sha1(data).hexdigest(), *(parts[k] for k in STUDY_SECTIONS)))
        if study in self.keep_raw:
            self.raw[study] = self.raw_as(text)

    def result(self) -> ParsedBatch:
        columns = list(zip(*self.rows)) if self.rows else [[] for _ in REPORT_ROWS]
        return pa.RecordBatch.from_arrays([pa.array(c, f.type) for c, f in zip(columns, REPORT_ROWS)],
                                          schema=REPORT_ROWS), self.raw


# --- folders -----------------------------------------------------------------------------------

def read_file(path: str) -> bytes:
    """The whole file: open, read until a read returns nothing, close (no stat, no buffering)."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            chunks = [os.read(fd, _CHUNK)]
            while chunks[-1]:
                chunks.append(os.read(fd, _CHUNK))
        finally:
            os.close(fd)
    except OSError as err:
        raise InputError(path, f"cannot read report ({err.strerror or err})") from None
    return b"".join(chunks)


def _walk(base: str, rel_base: str) -> Iterator[tuple[str, str]]:
    """(path, path from the reports root) of the files under ``base``, in os.walk order with names
    sorted; names starting with "." are skipped."""
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        prefix = rel_base + dirpath[len(base):].replace(os.sep, "/") + "/"
        dirpath += os.sep
        for name in sorted(filenames):
            if not name.startswith("."):
                yield dirpath + name, prefix + name


def _scan(path: str) -> tuple[list[str], list[str]]:
    """(file names, names of folders that are not links), each sorted, as os.walk sees them (an
    unreadable folder is empty; a link to a folder is neither a file nor entered)."""
    files, folders = [], []
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                if not is_dir:
                    files.append(entry.name)
                elif not entry.is_symlink():
                    folders.append(entry.name)
    except OSError:
        pass
    return sorted(files), sorted(folders)


def folder_units(root: str) -> list[FolderUnit]:
    """The work in the ``files`` folder ``root``, in os.walk order: the files of the top two levels
    and the folders of the second level (the patient folders, which the workers walk)."""
    units: list[FolderUnit] = []
    files, groups = _scan(root)
    units += [(f"{root}{os.sep}{name}", f"files/{name}", False) for name in files if not name.startswith(".")]
    for group in groups:
        path, rel = f"{root}{os.sep}{group}", f"files/{group}"
        files, patients = _scan(path)
        units += [(f"{path}{os.sep}{name}", f"{rel}/{name}", False) for name in files if not name.startswith(".")]
        units += [(f"{path}{os.sep}{name}", f"{rel}/{name}", True) for name in patients]
    return units


def _folder_reports(units: Sequence[FolderUnit], want: Want | None = None) -> Iterator[Report]:
    """(file path, path from the reports root, bytes) of the reports in ``units`` that ``want``
    accepts (default: all), in os.walk order; unwanted files are not read."""
    for path, rel, is_folder in units:
        for file, file_rel in _walk(path, rel) if is_folder else ((path, rel),):
            if want is None or want(file_rel):
                yield file, file_rel, read_file(file)


def parse_folder_batch(units: Sequence[FolderUnit], keep_raw: frozenset[int], raw_as: RawAs = str) -> ParsedBatch:
    batch = _Batch(keep_raw, raw_as)
    for where, rel, data in _folder_reports(units):
        batch.add(where, rel, data)
    return batch.result()


# --- the released zip --------------------------------------------------------------------------

def zip_members(archive: str) -> list[ZipMember]:
    """The report members (``.txt`` under a ``files/`` folder) from the central directory."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise InputError(archive, f"cannot read the zip's table of contents ({err})",
                         expected="mimic-cxr-reports.zip as released") from None
    return [(i.filename, i.header_offset, i.compress_size, i.CRC, i.compress_type, i.flag_bits) for i in infos
            if not i.is_dir() and i.filename.endswith(".txt") and "files/" in i.filename]


def member_bytes(archive: str, view: mmap.mmap, member: ZipMember) -> bytes:
    """A member's bytes sliced from the mapped archive (stored or deflated; other compression
    methods go through :mod:`zipfile`), CRC-checked."""
    name, offset, size, crc, method, flags = member
    if flags & 0x1:
        raise zipfile.BadZipFile("encrypted member")
    signature, name_length, extra_length = _LOCAL_HEADER.unpack_from(view, offset)
    if signature != b"PK\x03\x04":
        raise zipfile.BadZipFile("bad local file header")
    start = offset + _LOCAL_HEADER.size + name_length + extra_length
    if method == zipfile.ZIP_STORED:
        data = view[start:start + size]
    elif method == zipfile.ZIP_DEFLATED:
        data = zlib.decompress(view[start:start + size], -15)
    else:
        with zipfile.ZipFile(archive) as zf:
            return zf.read(name)
    if zlib.crc32(data) != crc:
        raise zipfile.BadZipFile("CRC-32 mismatch")
    return data


def _zip_reports(archive: str, members: Sequence[ZipMember], want: Want | None = None) -> Iterator[Report]:
    """(``archive!path``, path from the reports root, bytes) of the ``members`` that ``want``
    accepts (default: all), in order; unwanted members are not decompressed."""
    with open(archive, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
        for member in members:
            name = member[0]
            rel = name[name.index("files/"):]
            if want is not None and not want(rel):
                continue
            try:
                data = member_bytes(archive, view, member)
            except (zipfile.BadZipFile, zlib.error, struct.error, EOFError) as err:
                raise InputError(f"{archive}!{name}", f"cannot read report ({err})") from None
            yield f"{archive}!{rel}", rel, data


def parse_zip_batch(archive: str, members: Sequence[ZipMember], keep_raw: frozenset[int],
                    raw_as: RawAs = str) -> ParsedBatch:
    batch = _Batch(keep_raw, raw_as)
    for where, rel, data in _zip_reports(archive, members):
        batch.add(where, rel, data)
    return batch.result()


# --- both --------------------------------------------------------------------------------------

def iter_report_bytes(source: str, *, is_zip: bool, want: Want | None = None) -> Iterator[tuple[str, bytes]]:
    """(path from the reports root, raw bytes) of every report under ``source`` (the ``files``
    folder, or the zip) that ``want`` accepts (default: all; the others are not read), in file
    order, in this process (for readers that need the raw files)."""
    reports = _zip_reports(source, zip_members(source), want) if is_zip else _folder_reports(folder_units(source), want)
    for _, rel, data in reports:
        yield rel, data


def parse_reports(source: str, *, is_zip: bool, keep_raw: frozenset[int], raw_as: RawAs = str,
                  workers: int | None = None, batch_size: int = BATCH) -> tuple[pa.Table, dict[int, Any]]:
    """Every report under ``source`` (the ``files`` folder, or the zip) as rows of
    :data:`REPORT_ROWS` in file order, and ``raw_as(raw text)`` of the studies in ``keep_raw``
    (made in the workers: e.g. MIMIC-NLE's sentence numbering). Workers default to the CPU count
    (at most 8); one batch or less is parsed in-process."""
    units: list = zip_members(source) if is_zip else folder_units(source)
    task = partial(parse_zip_batch, source) if is_zip else parse_folder_batch
    units_iter = iter(units)
    batches = iter(lambda: list(islice(units_iter, batch_size)), [])
    workers = default_workers() if workers is None else workers
    parsed, raw = [], {}
    for batch, batch_raw in ordered_map(partial(task, keep_raw=keep_raw, raw_as=raw_as), batches,
                                        workers if len(units) > batch_size else 1):
        parsed.append(batch)
        raw.update(batch_raw)
    return pa.Table.from_batches(parsed, schema=REPORT_ROWS), raw
