"""Report files to section rows, in order, optionally spread over worker processes.

Sectioning is pure Python and CPU-bound (about 60 us per report), so a MIMIC-sized tree of
227k reports is parsed by ``workers`` processes (:mod:`..parallel`) in batches while the main process keeps
reading files; results come back in file order, so the output does not depend on the number of
workers. Corpora of one batch or less are parsed in-process (no start-up cost for the demo).
This module imports only what the workers need.
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from itertools import chain, islice

from ..errors import InputError
from ..parallel import default_workers, process_pool
from .sections import STUDY_SECTIONS, study_sections

_REPORT_PATH = re.compile(r"(?:^|/)files/(p1\d)/(p(\d{8}))/s(\d{8})\.txt$")
BATCH = 4000

#: (subject_id, study_id, relative path, sha1 of the bytes, sections in STUDY_SECTIONS order,
#: raw text when the study is in keep_raw else None)
ReportRow = tuple[int, int, str, str, tuple[str, ...], str | None]
#: (where, relative path, raw bytes)
ReportFile = tuple[str, str, bytes]


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


def parse_batch(batch: list[ReportFile], keep_raw: frozenset[int]) -> list[ReportRow]:
    rows = []
    for where, rel, data in batch:
        subject, study = parse_report_path(rel, where)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputError(where, f"not UTF-8 text (byte {err.start})", expected="a plain-text report") from None
        parts = study_sections(text)
        rows.append((subject, study, rel, hashlib.sha1(data).hexdigest(), tuple(parts[k] for k in STUDY_SECTIONS),
                     text if study in keep_raw else None))
    return rows


def parse_reports(files: Iterable[ReportFile], keep_raw: frozenset[int], *, workers: int | None = None,
                  batch_size: int = BATCH) -> Iterator[ReportRow]:
    """Parse ``files`` into rows in input order (the first error raised is the first bad file's)."""
    workers = default_workers() if workers is None else workers
    files = iter(files)
    batches = iter(lambda: list(islice(files, batch_size)), [])
    first = next(batches, [])
    if workers <= 1 or len(first) < batch_size:
        for batch in chain([first], batches):
            yield from parse_batch(batch, keep_raw)
        return
    with process_pool(workers) as pool:
        pending: deque[Future[list[ReportRow]]] = deque()
        for batch in chain([first], batches):
            pending.append(pool.submit(parse_batch, batch, keep_raw))
            if len(pending) > 2 * workers:  # bounded read-ahead: file bytes do not pile up
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
