"""Labeling benchmark: speed of the rule labeler and of CheXbert, and the rule labeler's agreement.

    python bench/labeling.py [--device cpu|cuda] [--n-reports N] [--random-bert-base] [--scale-corpus DIR]

Speed is measured on synthetic reports made of sentences from the hand-labelled gold set and the
demo corpus, in two regimes: sentences repeated across reports as in real corpora ("pooled"), and
every sentence distinct ("distinct", the rule labeler's worst case: it analyses each distinct
sentence once). CheXbert runs its real code path on random weights (no hub needed): a tiny model,
and with ``--random-bert-base`` a model of bert-base-uncased's shape (768 hidden, 12 layers,
vocabulary 30,522) whose WordPiece vocabulary is learnt from the demo text. Agreement of the rule
labeler is measured against bench/data/labeler_gold.csv (all rows; the even rows were the
development half whose errors were inspected while writing the phrase files, the odd rows were
not), against the demo corpus's provided CheXpert CSV (synthetic: written by the demo generator)
and - the figure that matters - on 1,924 real IU X-ray reports against the collection's manual
index terms (``../shared/data/iu-xray-dev``, mapped by :mod:`tasks.labeling.openi`; also on its two
fixed halves, :func:`tasks.labeling.openi.halves`), next to two naive baselines on the same mentions
(:mod:`labeling_engines`). With ``--scale-corpus`` the whole
label stage (rules, cold cache, then warm) runs on the MIMIC-sized corpus of ``scale_corpus.py``.
Results go to bench/results/labeling-<device>.json.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from labeling_engines import DEV_SET, run_engine
from labeling_engines import summary as rounded_scores
from pipeline_cpu import params_for

from radialog_instruct.tasks.config import DEMO_OVERLAY, deep_merge, section
from radialog_instruct.tasks.io import write_json
from radialog_instruct.tasks.labeling.cache import lookup_or_label
from radialog_instruct.tasks.labeling.conditions import CONDITIONS
from radialog_instruct.tasks.labeling.metrics import compare_labels, f1_table
from radialog_instruct.tasks.labeling.openi import halves, load_indexed_reports, score_positives
from radialog_instruct.tasks.labeling.rules import RuleLabeler
from radialog_instruct.tasks.labeling.stage import run_label
from radialog_instruct.tasks.sources.ingest import SourcesConfig, ingest, run_ingest
from radialog_instruct.tasks.text.sentences import split_sentences
from radialog_instruct.tasks.workdir import Workdir

from machine import machine_info

BENCH = Path(__file__).resolve().parent
GOLD = BENCH / "data" / "labeler_gold.csv"


def sentence_pool(wd: Workdir) -> list[str]:
    texts = pd.read_csv(GOLD)["report"].tolist() if GOLD.exists() else []
    reports = pd.read_parquet(wd.table("reports"))
    texts += [t for t in pd.concat([reports["findings"], reports["impression"]]) if t]
    return sorted({s for t in texts for s in split_sentences(t)})


def make_reports(pool: list[str], n: int, *, distinct: bool, seed: int = 0) -> list[str]:
    """``n`` reports of 4-9 sentences drawn from ``pool``; with ``distinct`` each sentence is made
    unique by a number before its final period."""
    rng = random.Random(seed)
    reports, counter = [], 0
    for _ in range(n):
        sentences = rng.sample(pool, rng.randint(4, 9))
        if distinct:
            sentences = [f"{s.rstrip('.')} (series {counter + i})." for i, s in enumerate(sentences)]
            counter += len(sentences)
        reports.append(" ".join(sentences))
    return reports


def timed(fn: Any, arg: Any, repeats: int) -> tuple[float, float]:
    """Best wall time and best CPU time (this process, all its threads) of ``repeats`` calls
    ``fn(arg)``. On a shared, loaded machine the CPU time is the steadier figure."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn(arg)
        wall, cpu = min(wall, time.perf_counter() - started), min(cpu, time.process_time() - started_cpu)
    return wall, cpu


def rates(n: int, wall: float, cpu: float) -> dict[str, float]:
    return {"seconds": round(wall, 3), "reports_per_s": round(n / wall, 1),
            "cpu_seconds": round(cpu, 3), "reports_per_cpu_s": round(n / cpu, 1)}


def rules_speed(pool: list[str], n: int) -> dict[str, Any]:
    labeler = RuleLabeler()
    out: dict[str, Any] = {"labeler_version": labeler.version}
    for regime in ("pooled", "distinct"):
        reports = make_reports(pool, n, distinct=regime == "distinct")
        wall, cpu = timed(labeler.label, reports, 3)
        out[regime] = {"reports": n, "mean_chars": round(float(np.mean([len(r) for r in reports])), 1),
                       **rates(n, wall, cpu)}
        print(f"rules ({regime} sentences): {n / wall:,.0f} reports/s, {n / cpu:,.0f} per CPU second", flush=True)
    reports = make_reports(pool, n, distinct=False)
    with tempfile.TemporaryDirectory(prefix="bench-label-cache-") as cache:
        for regime in ("cache_cold", "cache_warm"):  # through the per-text cache, as the label stage does
            wall, cpu = timed(lambda texts: lookup_or_label(labeler, texts, cache), reports, 1)
            out[regime] = {"reports": n, **rates(n, wall, cpu)}
            print(f"rules through the label cache ({regime}): {n / wall:,.0f} reports/s, "
                  f"{n / cpu:,.0f} per CPU second", flush=True)
    return out


def chexbert_speed(kind: str, model_dir: Path, texts: list[str], pool: list[str], device: str,
                   batch_size: int) -> dict[str, Any]:
    from radialog_instruct.tasks.labeling.chexbert import ChexbertLabeler
    from radialog_instruct.tasks.models.tiny_bert import BERT_BASE, TINY, build_chexbert

    built = build_chexbert(model_dir, pool, BERT_BASE if kind == "bert-base" else TINY)
    labeler = ChexbertLabeler(built.checkpoint, str(built.encoder_dir), batch_size=batch_size, device=device)
    labeler.label(texts[:2 * batch_size])  # warm-up: weights load, CUDA context, kernels
    seconds, _ = timed(labeler.label, texts, 1 if kind == "bert-base" and device == "cpu" else 2)
    tokens = [len(ids) for ids in labeler.encode(texts)]
    print(f"chexbert {kind} on {device} ({labeler.dtype}): {len(texts) / seconds:,.1f} reports/s", flush=True)
    return {"model": kind, "device": device, "dtype": str(labeler.dtype).removeprefix("torch."),
            "batch_size": batch_size, "reports": len(texts), "mean_tokens": round(float(np.mean(tokens)), 1),
            "seconds": round(seconds, 3), "reports_per_s": round(len(texts) / seconds, 1),
            "parameters": sum(p.numel() for p in labeler.model.parameters())}


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    keep = ("n", "ce_macro_f1", "ce_macro_precision", "ce_macro_recall", "mean_agreement")
    per = {name: {"f1_positive": row["positive"]["f1"], "f1_negative": row["negative"]["f1"],
                  "f1_uncertain": row["uncertain"]["f1"], "agreement": row["agreement"],
                  "support_positive": row["positive"]["support"]}
           for name, row in result["per_condition"].items()}
    return {**{k: result[k] for k in keep}, "per_condition": per}


def gold_agreement() -> dict[str, Any]:
    if not GOLD.exists():
        print(f"{GOLD} not found: skipping the gold-set agreement")
        return {"skipped": f"{GOLD.name} not found"}
    gold = pd.read_csv(GOLD)
    pred = RuleLabeler().label(gold["report"].tolist())
    ref = gold[list(CONDITIONS)].to_numpy(np.float32)
    out = {}
    for part, rows in (("all", np.arange(len(gold))), ("development_even_rows", np.arange(0, len(gold), 2)),
                       ("held_out_odd_rows", np.arange(1, len(gold), 2))):
        result = compare_labels(pred[rows], ref[rows])
        out[part] = summarize(result)
        if part != "development_even_rows":
            print(f"\nrules vs {GOLD.name} ({part}):\n{f1_table(result)}")
    return out


def real_report_agreement() -> dict[str, Any]:
    """The rule labeler and two naive baselines on the real IU X-ray dev set (see tasks.labeling.openi)."""
    if not DEV_SET.exists():
        print(f"{DEV_SET} not found: skipping the real-report evaluation")
        return {"skipped": f"{DEV_SET} not found"}
    dev = load_indexed_reports(DEV_SET)
    labelers = {"rules": "rules", "baseline_mention_only": "mention", "baseline_negation_window": "negation-window"}
    out: dict[str, Any] = {
        "data": "IU X-ray (Open-i) development half: findings + impression, manual index terms mapped to "
                "CheXpert by tasks/labeling/openi.py; rows marked 'No Indexing' dropped",
        "reports": len(dev.text),
        "scoring": "positive = label 1 against an indexed term; uncertain counts as not positive (RaDialog's "
                   "CE mapping; the prompts carry positives only); *_uncertain_positive counts -1 as positive",
    }
    half = halves(dev.uid)
    for name, engine in labelers.items():  # labeling_engines.ENGINES
        pred, _ = run_engine(engine, dev.text)
        out[name] = rounded_scores(score_positives(pred, dev.reference))
        out[name + "_uncertain_positive"] = rounded_scores(score_positives(pred, dev.reference, uncertain_positive=True))
        if name == "rules":  # the two fixed halves every labeler change is checked on
            out["rules_by_half"] = {f"half_{h}": {"reports": int((half == h).sum()), **rounded_scores(
                score_positives(pred[half == h], dev.reference[half == h]))} for h in (0, 1)}
    print("\nreal reports (IU X-ray dev, index terms; rules on the halves: "
          + ", ".join(f"{k} {v['macro_f1']:.3f}" for k, v in out["rules_by_half"].items()) + "):")
    for name in labelers:
        row = out[name]
        print(f"  {name:26s} macro-F1 {row['macro_f1']:.3f}  " + "  ".join(
            f"{c} {v['f1']:.2f}" for c, v in row["per_condition"].items()))
    return out


def scale_label_stage(corpus: Path, work: Path) -> dict[str, Any]:
    """The label stage with the rule labeler on the corpus of scale_corpus.py: cold cache, then warm."""
    params = deep_merge(params_for(corpus, "radialog-v1.1"), {"label": {"labeler": "rules"}})
    wd = Workdir.at(work)
    started = time.perf_counter()
    run_ingest(params, wd)
    out: dict[str, Any] = {"corpus": str(corpus), "ingest_seconds_untimed_stage": round(time.perf_counter() - started, 1)}
    for run in ("cold_cache", "warm_cache"):
        started, started_cpu = time.perf_counter(), time.process_time()
        summary = run_label(params, wd)
        out[run] = {"seconds": round(time.perf_counter() - started, 1),
                    "cpu_seconds": round(time.process_time() - started_cpu, 1), "rows": summary["rows"],
                    "labeled": summary["labeled"], "cache_hits": summary["cache_hits"]}
        print(f"label stage on {corpus.name} ({run}): {out[run]['seconds']} s ({out[run]['cpu_seconds']} CPU s) "
              f"for {summary['rows']:,} studies ({summary['labeled']:,} texts labelled)", flush=True)
    return out


def demo_agreement(wd: Workdir) -> dict[str, Any]:
    summary = run_label({"label": {"labeler": "rules", "text_column": "findings", "chexbert": {}}}, wd, compare=True)
    result = summary["compare"]
    print(f"\nrules vs the demo corpus's provided CheXpert CSV (SYNTHETIC labels from the demo generator):\n"
          f"{f1_table(result)}")
    return {"note": "synthetic: the demo generator's own labels for its phrase bank, not real MIMIC labels",
            **summarize(result)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--n-reports", type=int, default=4000, help="reports for the speed runs")
    parser.add_argument("--n-chexbert", type=int, default=None,
                        help="reports for the CheXbert runs (default: --n-reports, 256 for bert-base on CPU)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--random-bert-base", action="store_true", help="also time a bert-base-sized random model")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/labeling-<device>.json")
    parser.add_argument("--scale-corpus", type=Path, default=None,
                        help="also time the label stage on this scale_corpus.py output (e.g. bench/work/mimic-scale)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-labeling-") as tmp:
        wd = Workdir.at(Path(tmp) / "work")
        ingest(section(SourcesConfig, DEMO_OVERLAY, "sources"), wd)
        pool = sentence_pool(wd)
        results: dict[str, Any] = {"machine": machine_info(), "sentence_pool": len(pool),
                                   "rules_speed": rules_speed(pool, args.n_reports)}
        chexbert = []
        for kind in ("tiny", "bert-base") if args.random_bert_base else ("tiny",):
            default = 256 if (kind == "bert-base" and args.device == "cpu") else args.n_reports
            texts = make_reports(pool, args.n_chexbert or default, distinct=False, seed=1)
            chexbert.append(chexbert_speed(kind, Path(tmp) / kind, texts, pool, args.device, args.batch_size))
        results["chexbert_speed"] = chexbert
        results["rules_vs_gold"] = gold_agreement()
        results["rules_vs_demo_provided"] = demo_agreement(wd)
        results["rules_vs_real_reports"] = real_report_agreement()
        if args.scale_corpus:
            results["label_stage_at_scale"] = scale_label_stage(args.scale_corpus, Path(tmp) / "scale")
    results["load_average_end"] = os.getloadavg()  # the machine is shared: load at start is in "machine"
    out = args.out or BENCH / "results" / f"labeling-{args.device}.json"
    write_json(results, out)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
