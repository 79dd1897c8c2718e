"""CPU pipeline benchmark: ingest -> label -> plan -> assemble -> validate at MIMIC scale.

    python bench/pipeline_cpu.py [--corpus DIR] [--subsample-studies 20000] [--skip-full]

1. Full scale: on the MIMIC-sized synthetic corpus of bench/scale_corpus.py (made if missing), our
   stage functions run in order - ingest, label (MIMIC's provided CheXpert table, no model), plan
   (preset radialog-v1.1), assemble, validate - with the generation cache filled before the clock
   starts, so model inference is excluded. Wall time per stage, samples/s and peak resident
   memory (ru_maxrss) are recorded. Parquet reads and writes of every stage are inside the timings.
2. Side by side, in the same process: a smaller corpus from the same generator is built both by
   bench/original_style.py (the original scripts' way: iterrows, per-row DataFrame filters, one
   JSON dump) and by our stages with the v1 preset (the same eight tasks; Parquet shards plus the
   same flat JSON), and the samples/s of the two are compared. The original style is quadratic in places (a per-row filter over all
   images), so its disadvantage grows with the corpus; the subsample understates it.

Stages are called as plain functions (no Prefect): the orchestration overhead, a few seconds per
stage, is not what is measured. Results go to bench/results/pipeline-cpu.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from radialog_instruct.tasks.config import deep_merge, load_params
from radialog_instruct.tasks.generation.cache import GenerationCache, cache_row
from radialog_instruct.tasks.generation.engine import Result
from radialog_instruct.tasks.generation.requests import build_requests, request_settings
from radialog_instruct.tasks.instruct.plan import run_plan
from radialog_instruct.tasks.io import write_json
from radialog_instruct.tasks.labeling.stage import run_label
from radialog_instruct.tasks.quality.validate import run_validate
from radialog_instruct.tasks.sources.ingest import run_ingest
from radialog_instruct.tasks.storage.assemble import run_assemble
from radialog_instruct.tasks.workdir import Workdir

import original_style
from machine import machine_info
from scale_corpus import MIMIC_IMAGES, MIMIC_STUDIES, scale_corpus

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "work"
TARGETS = {"samples_per_s": 20_000, "peak_rss_gib": 4.0, "speedup_vs_original": 20.0}


def params_for(corpus: Path, preset: str) -> dict[str, Any]:
    """The shipped params pointed at ``corpus``, provided labels, a prefilled Vicuna cache."""
    return deep_merge(load_params(REPO / "params.yaml"), {
        "sources": {"mimic_cxr": {"reports": str(corpus / "mimic-cxr"), "jpg_root": str(corpus / "mimic-cxr-jpg")},
                    "mimic_nle": {"dir": str(corpus / "mimic-nle")},
                    # the v1 tasks do not use Rad-ReStruct
                    "rad_restruct": {"dir": str(corpus / "rad-restruct" / "data" / "radrestruct")
                                     if preset == "radialog-v1.1" else None}},
        "label": {"labeler": "provided"},
        "plan": {"preset": preset, "templates_dir": str(REPO / "prompt_templates")},
        "generate": {"model_preset": "vicuna-7b-v1.5", "revision": "bench-prefilled"},
        # the original wrote one flat JSON: in the comparison we write the shards and that export
        "assemble": {"exclude_failed_audit": False, **({} if preset == "radialog-v1.1" else {"exports": ["flat"]})},
    })


def prefill_cache(params: dict[str, Any], wd: Workdir) -> int:
    """A cached result for every replay request of the plan (a stand-in answer per prompt)."""
    settings = request_settings(params, wd)
    requests, _ = build_requests(pq.read_table(wd.table("plan")), settings)
    with GenerationCache(wd.cache / "generation").writer(50_000) as writer:
        for request in requests:
            text = original_style.pseudo_output("replay", request.prompt.rsplit("USER: ", 1)[-1])
            result = Result(request.request_hash, text, "stop", len(request.prompt) // 4, len(text) // 4, 0.0)
            writer.add(cache_row(request, result, backend="prefilled", model=settings.model,
                                 revision=settings.revision))
    return len(requests)


def peak_rss_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def timed(stages: dict[str, Callable[[], Any]]) -> dict[str, dict[str, float]]:
    out = {}
    for name, run in stages.items():
        started = time.perf_counter()
        run()
        out[name] = {"seconds": round(time.perf_counter() - started, 2), "peak_rss_gib_after": peak_rss_gib()}
        print(f"  {name:<10} {out[name]['seconds']:>8.2f} s   peak RSS {out[name]['peak_rss_gib_after']} GiB",
              flush=True)
    return out


def run_ours(corpus: Path, workdir: Path, preset: str, *, validate: bool) -> dict[str, Any]:
    shutil.rmtree(workdir, ignore_errors=True)
    wd = Workdir.at(workdir)
    params = params_for(corpus, preset)
    before = timed({"ingest": lambda: run_ingest(params, wd), "label": lambda: run_label(params, wd),
                    "plan": lambda: run_plan(params, wd)})
    prefilled = prefill_cache(params, wd)  # stands in for the generate stage: not timed
    after = timed({"assemble": lambda: run_assemble(params, wd),
                   **({"validate": lambda: run_validate(params, wd)} if validate else {})})
    stages = {**before, **after}
    seconds = round(sum(s["seconds"] for s in stages.values()), 2)
    samples = json.loads(wd.report("assemble-summary.json").read_text())["rows"]
    return {"preset": preset, "stages": stages, "seconds": seconds, "samples": samples,
            "samples_per_s": round(samples / seconds), "prefilled_requests": prefilled, "peak_rss_gib": peak_rss_gib()}


def run_original(corpus: Path, workdir: Path) -> dict[str, Any]:
    shutil.rmtree(workdir, ignore_errors=True)
    outputs = original_style.outputs_for(corpus)  # stands in for generation: not timed
    started = time.perf_counter()
    samples = original_style.build(corpus, workdir, outputs)
    seconds = round(time.perf_counter() - started, 2)
    print(f"  original   {seconds:>8.2f} s", flush=True)
    return {"seconds": seconds, "samples": samples, "samples_per_s": round(samples / seconds)}


def corpus_at(path: Path, studies: int) -> dict[str, Any]:
    if not (path / "SCALE.json").exists():
        print(f"making a {studies}-study corpus in {path} ...", flush=True)
        scale_corpus(path, studies=studies, images=round(studies * MIMIC_IMAGES / MIMIC_STUDIES))
    return json.loads((path / "SCALE.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=WORK / "mimic-scale")
    parser.add_argument("--subsample-studies", type=int, default=20_000)
    parser.add_argument("--skip-full", action="store_true", help="only the side-by-side comparison")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "pipeline-cpu.json")
    args = parser.parse_args(argv)

    result: dict[str, Any] = {"machine": machine_info(("pyarrow", "pandas", "numpy")), "targets": TARGETS}
    # the comparison first: both paths start from the same fresh process
    sub = WORK / f"mimic-sub-{args.subsample_studies}"
    result["subsample_corpus"] = corpus_at(sub, args.subsample_studies)
    print(f"side by side on {args.subsample_studies} studies (v1 tasks):", flush=True)
    original = run_original(sub, WORK / "original-style")
    ours = run_ours(sub, WORK / "pipeline-sub", "radialog-v1", validate=False)
    result["comparison"] = {"original_style": original, "ours": ours,
                            "speedup": round(ours["samples_per_s"] / original["samples_per_s"], 1)}
    result["speedup_vs_original"] = result["comparison"]["speedup"]

    if not args.skip_full:
        result["corpus"] = corpus_at(args.corpus, MIMIC_STUDIES)
        print("full scale, our pipeline:", flush=True)
        result["full"] = run_ours(args.corpus, WORK / "pipeline-full", "radialog-v1.1", validate=True)
        result["samples_per_s"] = result["full"]["samples_per_s"]
        result["peak_rss_gib"] = result["full"]["peak_rss_gib"]
    write_json(result, args.out)
    print(json.dumps({k: result.get(k) for k in ("samples_per_s", "peak_rss_gib", "speedup_vs_original")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
