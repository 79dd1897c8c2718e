"""Review benchmark: the cost of saving a decision, and of a list page over MIMIC-many replay rows.

    python bench/review.py [--rows N]

1. Saving: :func:`append_decisions` rewrites ``reviews/decisions.parquet`` under a lock (see
   :mod:`tasks.quality.review.decisions`); measured as the time of one more save with 1,000,
   10,000 and 100,000 decisions already stored (median of 20 saves).
2. Browsing: the review app's per-request work on a synthetic replay table of ``--rows`` rows
   (default 146,915: the distinct replay requests of the MIMIC-scale pipeline bench) with the
   columns the app filters on: applying the decisions to every row, the filters (task, reason,
   free text over answer, instruction and generator conversation), the stratified queue order,
   and taking one page of 50 rows. Median of 5 runs each.

Results go to bench/results/review-cpu.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from radialog_instruct.tasks.io import write_json
from radialog_instruct.tasks.quality.review.decisions import append_decisions, for_rows, new_decisions
from radialog_instruct.tasks.quality.review.replay import Filters, queue_draws, queue_order, strata
from radialog_instruct.tasks.workdir import Workdir

from machine import machine_info

OUT = Path(__file__).resolve().parent / "results" / "review-cpu.json"
TASKS = ("correction", "easy_language", "region_qa", "summarization")
WORDS = "the lungs are clear heart size normal small left pleural effusion mild edema no pneumothorax".split()


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 5)


def decisions(n: int, offset: int = 0) -> pa.Table:
    ids = [f"s{offset + i:08d}" for i in range(n)]
    return new_decisions(ids, [f"h{i}" for i in ids], ["accept", "reject"] * (n // 2) + ["accept"] * (n % 2),
                         ["a note"] * n, ["bench"] * n, ["fail"] * n, origin="bench")


def bench_saves() -> dict[str, float]:
    out = {}
    for stored in (1_000, 10_000, 100_000):
        with tempfile.TemporaryDirectory() as tmp:
            wd = Workdir.at(tmp)
            append_decisions(wd, decisions(stored))
            one = iter(range(10**6))
            out[f"save_with_{stored}_stored_s"] = median_seconds(
                lambda: append_decisions(wd, decisions(1, offset=10**7 + next(one))), 20)
    return out


def replay_table(n: int, rng: np.random.Generator) -> pa.Table:
    answers = [" ".join(rng.choice(WORDS, 12)) for _ in range(n)]
    reasons = [[] if rng.random() < 0.6 else ["dropped: Edema"] if rng.random() < 0.5 else ["truncated", "added: Edema"]
               for _ in range(n)]
    audit = pa.array([{"verdict": "fail" if r else "pass", "reasons": r} for r in reasons],
                     pa.struct([("verdict", pa.string()), ("reasons", pa.list_(pa.string()))]))
    prompts = pa.array([[{"role": "user", "content": "Report: " + a + "\nSummarize."}] for a in answers],
                       pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])))
    return pa.table({"sample_id": [f"{i:016x}" for i in range(n)], "task": rng.choice(TASKS, n).tolist(),
                     "split": rng.choice(["train", "validate", "test"], n).tolist(),
                     "verdict": ["fail" if r else "pass" for r in reasons], "audit": audit, "answer": answers,
                     "instruction": ["Please summarize the report."] * n, "gen_messages": prompts,
                     "request_hash": [f"h{i}" for i in range(n)]})


def bench_browsing(n: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    table = replay_table(n, rng)
    stored = pa.table({"sample_id": table.column("sample_id").take(pa.array(rng.choice(n, 2_000, replace=False)))})
    history = new_decisions(stored.column("sample_id").to_pylist(),
                            [f"h{int(s, 16)}" for s in stored.column("sample_id").to_pylist()],
                            ["reject"] * 2_000, [""] * 2_000, ["bench"] * 2_000, ["fail"] * 2_000, origin="bench")
    applied = for_rows(history, table.column("sample_id"), table.column("request_hash"))
    decision = applied.column("decision")
    codes, draws = strata(table), queue_draws(table, 0)
    page = pa.array(np.arange(50), pa.int64())
    return {
        "rows": n, "decisions": history.num_rows,
        "apply_decisions_s": median_seconds(
            lambda: for_rows(history, table.column("sample_id"), table.column("request_hash")), 5),
        "filter_task_s": median_seconds(lambda: Filters(task="summarization").mask(table, decision), 5),
        "filter_reason_s": median_seconds(lambda: Filters(reason="dropped").mask(table, decision), 5),
        "filter_free_text_s": median_seconds(lambda: Filters(q="effusion").mask(table, decision), 5),
        "queue_order_undecided_s": median_seconds(
            lambda: queue_order(codes, draws, np.flatnonzero(Filters(decision="undecided").mask(table, decision))), 5),
        "queue_draws_once_per_seed_s": median_seconds(lambda: queue_draws(table, 1), 1),
        "page_of_50_rows_s": median_seconds(lambda: table.take(page).to_pylist(), 5),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=146_915)
    args = parser.parse_args(argv)
    result = {"machine": machine_info(("pyarrow", "pandas", "numpy")), "saves": bench_saves(),
              "browsing": bench_browsing(args.rows)}
    write_json(result, OUT)
    print(result)


if __name__ == "__main__":
    main(sys.argv[1:])
