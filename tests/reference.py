"""Where the tests find real public reference files.

The published MIMIC-CXR example report is copied into ``tests/data``; the Rad-ReStruct sample is
part of the demo corpus; the MIMIC-NLE query files are read from the shared reference folder
(``$RADIALOG_REFERENCE_DATA`` or ``../shared/data`` next to the checkout), and tests that need them
are skipped with a reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MIMIC_EXAMPLE = REPO / "tests" / "data" / "mimic-cxr-example" / "mit-lcp_example_report.txt"
RAD_RESTRUCT = REPO / "data" / "demo" / "rad-restruct" / "data" / "radrestruct"
DEMO = REPO / "data" / "demo"


def shared_data() -> Path:
    return Path(os.environ.get("RADIALOG_REFERENCE_DATA", REPO.parent / "shared" / "data"))


def mimic_nle_queries() -> Path:
    folder = shared_data() / "mimic-nle-query"
    if not (folder / "dev-query.json").exists():
        pytest.skip(f"MIMIC-NLE query files not found under {folder} (set RADIALOG_REFERENCE_DATA)")
    return folder
