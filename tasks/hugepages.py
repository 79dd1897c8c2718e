"""Transparent huge pages off for the pipeline's processes.

numpy and Arrow's allocator (mimalloc) ask the kernel for 2 MiB transparent huge pages for large
buffers (``madvise``). A huge-page fault needs a free 2 MiB block; where those are scarce, or on a
virtual machine whose balloon driver hands free blocks of that size back to the host (virtio free
page reporting), each such fault costs milliseconds instead of microseconds. Measured on the
development VM: touching 1 GiB through huge pages took 7.3 s (14 ms a fault), and the plan stage at
MIMIC scale spent 5.0 s of system time with them and 1.1 s without (9.5 s -> 5.2 s wall), with the
same user time. The pipeline's buffers gain little from huge pages, so the CLI turns them off for
itself and every process it starts (``prctl(PR_SET_THP_DISABLE)`` is inherited across fork and
exec). Set ``RADIALOG_THP=1`` to keep the system's setting.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_THP_DISABLE = 41  # linux/prctl.h
KEEP = "RADIALOG_THP"


def turned_off() -> bool:
    """Whether the pipeline turns huge pages off here: on Linux, unless ``RADIALOG_THP=1``."""
    return sys.platform.startswith("linux") and os.environ.get(KEEP) != "1"


def disable_transparent_hugepages() -> bool:
    """Turn transparent huge pages off for this process and its future children (when
    :func:`turned_off`); returns whether they are off."""
    if not turned_off():
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
