"""CPU pipeline benchmark: ingest -> label -> plan -> assemble -> validate at 1x and 2x MIMIC scale.

    python bench/pipeline_cpu.py [--scales 1 2] [--subsample-studies 20000 100000] [--repeats 3] [--skip-full]

1. Side by side, first: corpora of 20,000 and 100,000 studies from bench/scale_corpus.py are each
   built by bench/original_style.py (the original scripts' way: a train dataset read item by item,
   per-row DataFrame filters, per-task JSON files, one JSON dump), once, and by our stages with the
   v1 preset (the same eight tasks; Parquet shards plus the same flat JSON), three times, and the
   samples/s of the original and of our median run are compared. Ours takes a few seconds there,
   and a run that short swings by a third with the VM's speed; the original's run of minutes evens
   that out. The original style is quadratic in places (a per-row filter over all images), so the
   ratio grows with the corpus: every size is recorded, and the headline ``speedup_vs_original``
   is the largest one's.
2. Full scale: on the MIMIC-sized corpus of bench/scale_corpus.py (227,835 studies, MIMIC-CXR-JPG's
   label frequencies; made if missing) our stages run in order - ingest, label (MIMIC's provided
   CheXpert table, no model), plan (preset radialog-v1.1), assemble, validate - with the generation
   cache filled between plan and assemble (not timed), so model inference is excluded. The sample
   count per task is set against the published release's ~580k. The chain is timed with the
   corpus in the page cache; just before it, the ingest stage runs once on the corpus dropped from
   the page cache (``posix_fadvise(DONTNEED)`` per file; directory entries stay cached), and that
   is recorded on its own (``ingest_cold``; ``samples_per_s_cold_ingest`` in ``scaling`` is the
   chain with it in place of the warm ingest). On this VM a cold read of the 227,835 report files
   cost anything from 12 to 26 s in runs an hour apart, a warm one 7-9 s.
3. The same at 2x MIMIC scale (455,670 studies, the label and split mix unchanged), so that the
   growth of time and memory with the corpus is visible.

Every stage runs in a fresh Python process (this script with ``--stage``), so the memory a stage
needs is its own. ``peak_rss_gib`` is the kernel's peak resident set size of the stage's largest
process (wait4's ``ru_maxrss``, which covers the worker processes a stage starts), the measure
earlier results used; ``tree_pss_gib`` is the largest total proportional set size of the stage's
whole process tree (pages shared between a parent and its forked workers counted once), sampled
every 0.1 s from /proc. Stage seconds are measured inside the stage process around the stage
function: imports are excluded, all Parquet and JSON I/O is included. ``cpu_user_s`` / ``cpu_sys_s``
are the stage process tree's CPU times (wait4, imports included), ``minor_faults`` its page faults.
Stage processes run with transparent huge pages off, as the CLI runs them (see
:mod:`tasks.hugepages`: on this VM a huge-page fault could cost 14 ms, which showed up as seconds
of ``cpu_sys_s`` that came and went with the host's memory). Stages are called as plain
functions, without Prefect. Results go to bench/results/pipeline-cpu.json with the machine and the
load average before every stage (the machine may be shared).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from radialog_instruct.tasks.config import deep_merge, load_params
from radialog_instruct.tasks.errors import InputError, StageFailure
from radialog_instruct.tasks.hugepages import disable_transparent_hugepages, turned_off
from radialog_instruct.tasks.io import read_json, write_json
from radialog_instruct.tasks.workdir import Workdir

from machine import machine_info
from scale_corpus import MIMIC_IMAGES, MIMIC_STUDIES, reports_zip

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "work"
PUBLISHED_SAMPLES = 580_000  # "about 580k samples" (RaDialog, MIDL 2025); no per-task counts were published
TARGETS = {"samples_per_s": 20_000, "peak_rss_gib": 2.5, "speedup_vs_original": 20.0, "peak_growth_2x": 1.25}
#: stage -> the function that runs it, called with (params, workdir)
STAGES = {
    "ingest": "radialog_instruct.tasks.sources.ingest:run_ingest",
    "label": "radialog_instruct.tasks.labeling.stage:run_label",
    "plan": "radialog_instruct.tasks.instruct.plan:run_plan",
    "assemble": "radialog_instruct.tasks.storage.assemble:run_assemble",
    "validate": "radialog_instruct.tasks.quality.validate:run_validate",
}
#: stages defined here: the generate stage's stand-in (not timed) and the original scripts' way
LOCAL_STAGES = ("prefill", "original")
UNTIMED = ("prefill",)


def params_for(corpus: Path, preset: str, reports: Path | None = None) -> dict[str, Any]:
    """The shipped params pointed at ``corpus`` (its report folder, or ``reports``), provided
    labels, a prefilled Vicuna cache."""
    return deep_merge(load_params(REPO / "params.yaml"), {
        "sources": {"mimic_cxr": {"reports": str(reports or corpus / "mimic-cxr"),
                                  "jpg_root": str(corpus / "mimic-cxr-jpg")},
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


# --- stage functions that exist only here (run inside a stage process) -------------------------

def prefill_cache(params: dict[str, Any], wd: Workdir) -> int:
    """A cached result for every replay request of the plan (a stand-in answer per prompt)."""
    import pyarrow.parquet as pq

    from radialog_instruct.tasks.generation.cache import GenerationCache, cache_row
    from radialog_instruct.tasks.generation.engine import Result
    from radialog_instruct.tasks.generation.requests import build_requests, request_settings

    import original_style

    settings = request_settings(params, wd)
    requests, _ = build_requests(pq.read_table(wd.table("plan")), settings)
    with GenerationCache(wd.cache / "generation").writer(50_000) as writer:
        for request in requests:
            text = original_style.pseudo_output("replay", request.prompt.rsplit("USER: ", 1)[-1])
            result = Result(request.request_hash, text, "stop", len(request.prompt) // 4, len(text) // 4, 0.0)
            writer.add(cache_row(request, result, backend="prefilled", model=settings.model,
                                 revision=settings.revision))
    return len(requests)


def stage_process(name: str, corpus: Path, workdir: Path, preset: str, result: Path,
                  reports: Path | None = None) -> int:
    """Inside a fresh process: import the stage, time it, write {"seconds", "returned"} to ``result``.
    Transparent huge pages are off, as the CLI has them (:mod:`tasks.hugepages`)."""
    disable_transparent_hugepages()
    params, wd = params_for(corpus, preset, reports), Workdir.at(workdir)
    if name == "original":
        import original_style

        outputs = original_style.outputs_for(corpus)  # stands in for generation: not timed

        def run(params: dict[str, Any], wd: Workdir) -> int:
            return original_style.build(corpus, wd.root, outputs)
    elif name == "prefill":
        run = prefill_cache
    else:
        module, function = STAGES[name].split(":")
        run = getattr(importlib.import_module(module), function)
    started, error = time.perf_counter(), None
    try:
        returned = run(params, wd)
    except (InputError, StageFailure) as err:  # the stage did its work and found the data wanting
        returned, error = None, str(err)
    seconds = time.perf_counter() - started
    write_json({"seconds": round(seconds, 2), "returned": returned if isinstance(returned, int) else None,
                "error": error}, result)
    return 0


# --- measuring a stage process from outside -----------------------------------------------------

def _process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            children.setdefault(int(stat[stat.rindex(b")") + 2:].split()[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreePss(threading.Thread):
    """Samples the summed PSS of a process and its descendants every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak_kib = pid, interval, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            self.peak_kib = max(self.peak_kib, sum(_pss_kib(p) for p in _process_tree(self.pid)))


def run_stage(name: str, corpus: Path, workdir: Path, preset: str, reports: Path | None = None) -> dict[str, Any]:
    result = workdir / f".bench-{name}.json"
    load = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--stage", name, "--corpus", str(corpus),
                             "--workdir", str(workdir), "--preset", preset, "--result", str(result),
                             *(["--reports", str(reports)] if reports else [])])
    sampler = TreePss(proc.pid)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"stage {name} failed with exit code {proc.returncode}")
    inner = read_json(result)
    result.unlink()
    out = {"seconds": inner["seconds"], "process_seconds": round(time.perf_counter() - started, 2),
           "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2), "tree_pss_gib": round(sampler.peak_kib / 2**20, 2),
           "cpu_user_s": round(usage.ru_utime, 2), "cpu_sys_s": round(usage.ru_stime, 2),
           "minor_faults": usage.ru_minflt, "load_average": load}
    if inner["returned"] is not None:
        out["returned"] = inner["returned"]
    if inner["error"]:
        out["error"] = inner["error"]
        print(f"  {name} reported: {inner['error']}", flush=True)
    print(f"  {name:<9} {out['seconds']:>8.2f} s   peak RSS {out['peak_rss_gib']:>5} GiB   "
          f"tree PSS {out['tree_pss_gib']:>5} GiB   user {out['cpu_user_s']:>6.2f} s   sys {out['cpu_sys_s']:>6.2f} s   "
          f"load {load[0]}", flush=True)
    return out


def page_cache(corpus: Path, *, keep: bool) -> None:
    """Every file of ``corpus`` but the reports zip read once (``keep``), so that the next read
    comes from the page cache, or dropped from the page cache (``posix_fadvise(DONTNEED)``; clean
    pages only, which a corpus's are), so that it comes from the disk."""
    for dirpath, _, names in os.walk(corpus):
        for name in names:
            if name == "mimic-cxr-reports.zip":
                continue
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                if keep:
                    while os.read(fd, 1 << 20):
                        pass
                else:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def fresh_dir(path: Path) -> Path:
    """``path`` as a new empty folder."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def ingest_alone(corpus: Path, title: str, reports: Path | None = None) -> dict[str, Any]:
    """The ingest stage once more on ``corpus`` (reading ``reports`` when given), in a scratch
    workdir that is removed afterwards."""
    workdir = fresh_dir(WORK / "pipeline-ingest")
    print(f"ingest {title}:", flush=True)
    out = run_stage("ingest", corpus, workdir, "radialog-v1.1", reports=reports)
    shutil.rmtree(workdir)
    return out


def cold_ingest(corpus: Path) -> dict[str, Any]:
    """The ingest stage on ``corpus`` dropped from the page cache (leaves it in the cache)."""
    page_cache(corpus, keep=False)
    return ingest_alone(corpus, "from a cold page cache")


def run_ours(corpus: Path, workdir: Path, preset: str, *, validate: bool) -> dict[str, Any]:
    fresh_dir(workdir)
    names = ["ingest", "label", "plan", "prefill", "assemble", *(["validate"] if validate else [])]
    stages = {name: run_stage(name, corpus, workdir, preset) for name in names}
    timed = {k: v for k, v in stages.items() if k not in UNTIMED}
    seconds = round(sum(s["seconds"] for s in timed.values()), 2)
    summary = read_json(Workdir.at(workdir).report("assemble-summary.json"))
    return {"preset": preset, "stages": stages, "seconds": seconds, "samples": summary["rows"],
            "samples_per_s": round(summary["rows"] / seconds), "rows_per_task": summary["rows_per_task"],
            "prefilled_requests": stages["prefill"].get("returned"),
            "cpu_user_s": round(sum(s["cpu_user_s"] for s in timed.values()), 2),
            "cpu_sys_s": round(sum(s["cpu_sys_s"] for s in timed.values()), 2),
            "peak_rss_gib": max(s["peak_rss_gib"] for s in timed.values()),
            "tree_pss_gib": max(s["tree_pss_gib"] for s in timed.values())}


def transparent_hugepages() -> dict[str, str | None]:
    """The system's transparent huge page settings, and what the stage processes use."""
    def setting(name: str) -> str | None:
        path = Path("/sys/kernel/mm/transparent_hugepage") / name
        return path.read_text().strip() if path.exists() else None
    return {"enabled": setting("enabled"), "defrag": setting("defrag"),
            "stage_processes": "off (prctl PR_SET_THP_DISABLE)" if turned_off() else "system"}


def ingest_from_zip(corpus: Path) -> dict[str, Any]:
    """The ingest stage again, reading the reports from the release-style zip instead of the folder."""
    archive = corpus / "mimic-cxr-reports.zip"
    if not archive.exists():
        print(f"packing {archive} ...", flush=True)
        reports_zip(corpus)
    return ingest_alone(corpus, "from the zip", reports=archive)


def corpus_at(path: Path, studies: int) -> dict[str, Any]:
    """The corpus in ``path``, made first if missing - in a child process, so that this driver stays
    small and the stage processes it forks do not start with the corpus generator's memory."""
    if not (path / "SCALE.json").exists():
        print(f"making a {studies}-study corpus in {path} ...", flush=True)
        images = round(studies * MIMIC_IMAGES / MIMIC_STUDIES)
        subprocess.run([sys.executable, str(REPO / "bench" / "scale_corpus.py"), str(path),
                        "--studies", str(studies), "--images", str(images)], check=True, stdout=subprocess.DEVNULL)
    return read_json(path / "SCALE.json")


def side_by_side(studies: int, repeats: int) -> dict[str, Any]:
    """The v1 tasks built the original scripts' way (once) and ours (``repeats`` times, the median
    run kept: a run of a few seconds swings by a third on this VM) on one ``studies``-study corpus."""
    sub = WORK / f"mimic-sub-{studies}"
    corpus = corpus_at(sub, studies)
    print(f"side by side on {studies} studies (v1 tasks):", flush=True)
    page_cache(sub, keep=True)  # both paths read the corpus from the page cache
    original_dir = fresh_dir(WORK / "original-style")
    original = run_stage("original", sub, original_dir, "radialog-v1")
    shutil.rmtree(original_dir)
    original["samples"] = original.pop("returned")
    original["samples_per_s"] = round(original["samples"] / original["seconds"])
    runs = []
    for _ in range(repeats):
        runs.append(run_ours(sub, WORK / "pipeline-sub", "radialog-v1", validate=False))
        shutil.rmtree(WORK / "pipeline-sub")
    ours = sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]
    ours["seconds_of_runs"] = [run["seconds"] for run in runs]
    return {"corpus": corpus, "original_style": original, "ours": ours,
            "speedup": round(ours["samples_per_s"] / original["samples_per_s"], 1)}


def scale_entry(corpus: dict[str, Any], run: dict[str, Any], cold: dict[str, Any]) -> dict[str, Any]:
    with_cold = run["seconds"] - run["stages"]["ingest"]["seconds"] + cold["seconds"]
    return {"studies": corpus["studies"], "images": corpus["images"], "samples": run["samples"],
            "seconds": run["seconds"], "samples_per_s": run["samples_per_s"], "peak_rss_gib": run["peak_rss_gib"],
            "tree_pss_gib": run["tree_pss_gib"], "samples_per_s_cold_ingest": round(run["samples"] / with_cold)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 2], help="multiples of MIMIC-CXR's size")
    parser.add_argument("--base-studies", type=int, default=MIMIC_STUDIES,
                        help="studies at scale 1 (smaller only to try the harness)")
    parser.add_argument("--subsample-studies", type=int, nargs="+", default=[20_000, 100_000],
                        help="corpus sizes for the side-by-side comparison")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of our pipeline per side-by-side size (the median is compared)")
    parser.add_argument("--skip-full", action="store_true", help="only the side-by-side comparison")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "pipeline-cpu.json")
    # internal: run one stage in this (fresh) process
    parser.add_argument("--stage", choices=[*STAGES, *LOCAL_STAGES], help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--reports", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        return stage_process(args.stage, args.corpus, args.workdir, args.preset, args.result, args.reports)

    result: dict[str, Any] = {"machine": machine_info(("pyarrow", "pandas", "numpy")), "targets": TARGETS,
                              "transparent_hugepages": transparent_hugepages(), "comparison": {}}
    for studies in args.subsample_studies:
        result["comparison"][str(studies)] = side_by_side(studies, args.repeats)
    # the headline is the largest subsample: the original's per-row filters grow with the corpus
    result["speedup_vs_original"] = result["comparison"][str(max(args.subsample_studies))]["speedup"]

    if not args.skip_full:
        result["scaling"], result["runs"] = {}, {}
        for scale in args.scales:
            studies = args.base_studies * scale
            corpus_dir = WORK / ("mimic-scale" if studies == MIMIC_STUDIES else f"mimic-scale-{studies}")
            corpus = corpus_at(corpus_dir, studies)
            print(f"{scale}x MIMIC scale ({corpus['studies']} studies):", flush=True)
            cold = cold_ingest(corpus_dir)
            print("our pipeline:", flush=True)
            run = run_ours(corpus_dir, WORK / f"pipeline-{scale}x", "radialog-v1.1", validate=True)
            result["runs"][f"{scale}x"] = {"corpus": corpus, "ingest_cold": cold, **run}
            result["scaling"][f"{scale}x"] = scale_entry(corpus, run, cold)
            if scale == args.scales[0]:
                result["ingest_from_zip"] = ingest_from_zip(corpus_dir)
        first = result["runs"][f"{args.scales[0]}x"]
        result["samples_per_s"] = first["samples_per_s"]
        result["peak_rss_gib"] = first["peak_rss_gib"]
        result["stages"] = first["stages"]
        result["samples"] = {"total": first["samples"], "per_task": first["rows_per_task"],
                             "published_total": PUBLISHED_SAMPLES, "gap": first["samples"] - PUBLISHED_SAMPLES,
                             "ratio": round(first["samples"] / PUBLISHED_SAMPLES, 3)}
        if 1 in args.scales and 2 in args.scales:
            result["peak_growth_2x"] = round(result["runs"]["2x"]["peak_rss_gib"] / result["runs"]["1x"]["peak_rss_gib"], 2)
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    write_json(result, args.out)
    print(json.dumps({k: result.get(k) for k in ("samples_per_s", "peak_rss_gib", "speedup_vs_original",
                                                 "peak_growth_2x")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
