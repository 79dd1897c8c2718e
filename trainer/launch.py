"""``radialog-instruct train`` started by a launcher (``accelerate launch`` / ``torchrun``, WORLD_SIZE > 1).

Every rank runs the train stage function itself, without the Prefect flow engine: each rank would
otherwise start its own temporary Prefect server on the one SQLite file under the work dir. The
rank rule (ranks as the launcher numbers them, ``RANK``):

* rank 0 alone holds the work-dir lock (``hold``), decides from the train stamp whether the stage
  is up to date and tells the others; it alone writes in the work dir: the demo model,
  checkpoints, the adapter, reports/train-summary.json and the stamp (recorded after training, as
  the flow would), and it prints the summary;
* ranks > 0 never take the lock (rank 0 holds it and waits for them at the first collective:
  their waiting on it would deadlock the run) and write nothing in the work dir; they read the
  params, the shards and the newest checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from ..flows.registry import freshness, skipped_summary, why_run
from ..tasks.stage import record
from ..tasks.workdir import Workdir
from . import distributed
from .run import run_train


def _log_to_stderr(rank: int) -> None:
    """Rank 0 logs progress; the other ranks only warnings (all prefixed with their rank)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"[rank {rank}] %(message)s"))
    logger = logging.getLogger(__package__)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)


def run_launched(params: dict[str, Any], wd: Workdir, *, force: bool, resume: bool,
                 hold: Callable[[], AbstractContextManager] = nullcontext) -> dict[str, Any] | None:
    """Train on this rank; rank 0 returns the summary (``skipped`` when up to date), the others None.

    ``hold``: the work-dir lock, entered by rank 0 alone for the whole run.
    """
    ranks = distributed.start()
    _log_to_stderr(ranks.rank)
    why: list[str | None] = [None]
    if not ranks.is_main:  # rank 0 tells whether the stage runs
        torch.distributed.broadcast_object_list(why, src=0)
        if why[0] is not None:
            run_train(params, wd, resume=resume, ranks=ranks)
        return None
    with hold():
        spec, state = freshness("train", params, wd)
        why[0] = why_run("train", state, force=force, options={"resume": resume})
        torch.distributed.broadcast_object_list(why, src=0)
        if why[0] is None:
            return skipped_summary(state)
        summary = run_train(params, wd, resume=resume, ranks=ranks)
        record(spec, wd, summary, key=state.key)
        return {**summary, "skipped": False, "rerun": why[0]}
