"""``radialog-instruct train`` started by a launcher (``accelerate launch`` / ``torchrun``, WORLD_SIZE > 1).

Every rank runs the train stage function itself, without the Prefect flow engine: each rank would
otherwise start its own temporary Prefect server on the one SQLite file under the work dir. The
rank rule (``RANK`` as the launcher sets it):

* every rank reads the params, the train stamp (all skip an unchanged stage alike), the shards and
  the newest checkpoint;
* rank 0 alone writes in the work dir: the demo model, checkpoints, the adapter,
  reports/train-summary.json and the stamp (recorded after training, as the flow would); it alone
  takes the work-dir lock and prints the summary;
* ranks > 0 write nothing there and never take the work-dir lock (rank 0 holds it and waits for
  them at the first collective, so their waiting on it would deadlock the run).
"""

from __future__ import annotations

import logging
from typing import Any

from ..flows.registry import skipped_summary
from ..tasks.stage import is_fresh, record
from ..tasks.workdir import Workdir
from .distributed import rank
from .run import run_train, stage_spec


def _log_to_stderr(this_rank: int) -> None:
    """Rank 0 logs progress; the other ranks only warnings (all prefixed with their rank)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"[rank {this_rank}] %(message)s"))
    logger = logging.getLogger(__package__)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if this_rank == 0 else logging.WARNING)


def run_launched(params: dict[str, Any], wd: Workdir, *, force: bool, resume: bool) -> dict[str, Any] | None:
    """Train on this rank; rank 0 records the stamp and returns the summary, the others return None."""
    this_rank = rank()
    _log_to_stderr(this_rank)
    spec = stage_spec(params, wd)
    if not force and is_fresh(spec, wd):
        summary = skipped_summary(wd, "train")
    else:
        summary = run_train(params, wd, resume=resume)
        if this_rank == 0:
            record(spec, wd, summary)
        summary = {**summary, "skipped": False}
    return summary if this_rank == 0 else None
