"""A MIMIC-sized synthetic corpus in the real layouts, with MIMIC-CXR-JPG's label prevalences.

    python bench/scale_corpus.py [OUT] [--studies 227835] [--images 377110] [--labels mimic|demo] [--zip]

Writes MIMIC-CXR reports (files/pNN/pSUBJECT/sSTUDY.txt) and the metadata / split / CheXpert
tables for 227,835 studies with about 377k images (the generator's extra views are dropped at
random down to the target), the MIMIC-NLE files that go with them, and a full-size Rad-ReStruct
(all 3,597 listed report ids, each with the QA file of a sample report of its split, so ~176k QA
pairs). ``OUT/SCALE.json`` records the counts and the label prevalences reached. ``--zip`` also
packs the reports as the release does (``OUT/mimic-cxr-reports.zip``, members
``mimic-cxr-reports/files/...``). Deterministic; nothing here is MIMIC data.

The study ids, layouts and views come from the demo generator (tasks/sources/demo.py); three
MIMIC proportions replace the demo's:

* subjects are assigned to the official splits in the official study proportions
  (222,758 train / 1,808 validate / 3,269 test);
* about 27% of studies have no FINDINGS section - the share implied by the commonly used R2Gen
  version of MIMIC-CXR, which keeps 270,790 of the 368,960 train images (those with findings);
* with ``--labels mimic`` (the default) each study's CheXpert labels are drawn with the
  frequencies published for MIMIC-CXR-JPG, and its sentences are picked from the demo phrase bank
  to say exactly that. ``--labels demo`` keeps the demo generator's phrase-bank mix (about 72%
  of studies with a positive finding, far more than MIMIC).

Source of the frequencies: the table "Frequency of labels in MIMIC-CXR-JPG on the training subset
of 222,750 unique radiologic studies" of Johnson et al., *MIMIC-CXR-JPG, a large publicly
available database of labeled chest radiographs*, arXiv:1901.07042, as printed by the notebook
that generated the preprint's tables (MIT-LCP/mimic-cxr, ``notebooks/generate-stats-from-paper
.ipynb``). The table counts a label only where the CheXpert and NegBio labelers agree; a further
0.0-2.6% of studies per label are "disagreement" and are not counted, so the CheXpert file's own
frequencies are somewhat higher (by at most that share). The table gives marginal frequencies
only: the draw is two-stage (No Finding with its published share; otherwise at least one of the
twelve pathologies, each drawn independently; Support Devices independent of both), and the
rates are fitted on a simulated sample so that the corpus' marginals match the table despite the
phrase bank's coupled sentences (an uncertain pneumonia or atelectasis sentence also states a
lung opacity). The bank has no Support Devices negation, so that label is never 0 here (1.4% in
MIMIC).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

from radialog_instruct.tasks.io import atomic_path
from radialog_instruct.tasks.labeling.conditions import CSV_ORDER, FINDINGS, NO_FINDING, SUPPORT_DEVICES
from radialog_instruct.tasks.sources import demo_phrases as bank
from radialog_instruct.tasks.sources.demo import (
    Study,
    add_devices,
    add_phrase,
    build_studies,
    finish_study,
    write_mimic_cxr,
    write_mimic_nle,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "demo" / "rad-restruct" / "data" / "radrestruct"
MIMIC_STUDIES, MIMIC_IMAGES = 227_835, 377_110
SPLIT_STUDIES = {"train": 222_758, "validate": 1_808, "test": 3_269}
NO_FINDINGS_SHARE = 1 - 270_790 / 368_960

#: MIMIC-CXR-JPG, train split, 222,750 studies: (positive, negative, uncertain) per label, counted
#: where CheXpert and NegBio agree (see the module docstring for the source).
PUBLISHED_STUDIES = 222_750
PUBLISHED_COUNTS: dict[str, tuple[int, int, int]] = {
    "Atelectasis": (44_012, 921, 9_623),
    "Cardiomegaly": (38_002, 15_563, 5_753),
    "Consolidation": (10_199, 7_791, 2_913),
    "Edema": (25_549, 24_746, 11_426),
    "Enlarged Cardiomediastinum": (6_798, 5_158, 9_015),
    "Fracture": (3_675, 871, 295),
    "Lung Lesion": (5_939, 822, 996),
    "Lung Opacity": (49_512, 2_794, 2_052),
    "No Finding": (74_019, 0, 0),
    "Pleural Effusion": (51_680, 26_532, 5_184),
    "Pleural Other": (1_884, 120, 707),
    "Pneumonia": (15_333, 23_771, 17_313),
    "Pneumothorax": (9_159, 41_250, 848),
    "Support Devices": (63_971, 3_014, 95),
}
#: The twelve findings whose positive or uncertain mention rules out No Finding.
PATHOLOGIES = tuple(c for c in FINDINGS if c != SUPPORT_DEVICES)
VALUES = {1: 0, 0: 1, -1: 2}  # label value -> index in a (positive, negative, uncertain) triple


def published_shares() -> dict[str, tuple[float, float, float]]:
    return {c: tuple(n / PUBLISHED_STUDIES for n in counts) for c, counts in PUBLISHED_COUNTS.items()}


@dataclass(frozen=True)
class LabelRates:
    """Draw probabilities. Pathology positive/uncertain rates apply to studies drawn abnormal;
    negative rates to a condition that no sentence has labelled yet."""
    no_finding: float
    positive: dict[str, float]
    uncertain: dict[str, float]
    negative: dict[str, float]


def initial_rates() -> LabelRates:
    shares = published_shares()
    abnormal = 1 - shares[NO_FINDING][0]
    positive = {c: shares[c][0] / abnormal for c in PATHOLOGIES} | {SUPPORT_DEVICES: shares[SUPPORT_DEVICES][0]}
    uncertain = {c: shares[c][2] / abnormal for c in PATHOLOGIES}
    negative = {c: shares[c][1] / (1 - shares[c][0] - shares[c][2]) for c in PATHOLOGIES}
    return LabelRates(shares[NO_FINDING][0], positive, uncertain, negative)


def draw_targets(rng: random.Random, rates: LabelRates) -> dict[str, int]:
    """Positive (1) and uncertain (-1) labels of one study; abnormal studies get at least one."""
    target: dict[str, int] = {}
    if rng.random() >= rates.no_finding:
        while not target:
            for cond in PATHOLOGIES:
                u = rng.random()
                if u < rates.positive[cond]:
                    target[cond] = 1
                elif u < rates.positive[cond] + rates.uncertain[cond]:
                    target[cond] = -1
    if rng.random() < rates.positive[SUPPORT_DEVICES]:
        target[SUPPORT_DEVICES] = 1
    return target


def compose_mimic_study(study: Study, rng: random.Random, rates: LabelRates) -> None:
    """Replace a study's sentences and labels with a draw at MIMIC's label frequencies (its ids,
    layout, views and portable flag stay as the demo generator made them)."""
    study.findings, study.impression, study.labels, study.nle = [], [], {}, []
    for cond, value in draw_targets(rng, rates).items():
        if cond == SUPPORT_DEVICES:
            add_devices(study, rng)
            continue
        phrases = (bank.POSITIVE if value == 1 else bank.UNCERTAIN)[cond]
        add_phrase(study, rng.choice(phrases), rng, impression=True)
    for cond in PATHOLOGIES:
        if cond not in study.labels and rng.random() < rates.negative[cond]:
            add_phrase(study, rng.choice(bank.NEGATIVE[cond]), rng, impression=False)
    if not study.findings:
        neutral = [p for p in bank.NORMAL if not p.effects]
        for phrase in rng.sample(neutral, rng.randint(1, len(neutral))):
            add_phrase(study, phrase, rng, impression=False)
    finish_study(study, rng, shuffle=True)


def label_shares(studies: list[Study]) -> dict[str, tuple[float, float, float]]:
    """(positive, negative, uncertain) share of studies per label, in CSV order."""
    counts = {c: [0, 0, 0] for c in CSV_ORDER}
    for study in studies:
        for cond, value in study.labels.items():
            counts[cond][VALUES[value]] += 1
    return {c: tuple(n / len(studies) for n in triple) for c, triple in counts.items()}


def fit_rates(seed: int, *, sample: int = 20_000, rounds: int = 4) -> LabelRates:
    """Scale the draw probabilities until a simulated sample's label shares match the published
    ones (the phrase bank couples some labels, and abnormal studies are redrawn until one
    pathology is mentioned, so the plain published shares would overshoot)."""
    target = published_shares()
    rates = initial_rates()
    for round_ in range(rounds):
        rng = random.Random(f"{seed}-fit-{round_}")
        studies = [Study(0, 0, "train") for _ in range(sample)]
        for study in studies:
            compose_mimic_study(study, rng, rates)
        got = label_shares(studies)

        def scaled(rate: float, cond: str, index: int) -> float:
            return min(1.0, rate * target[cond][index] / got[cond][index]) if got[cond][index] else rate

        rates = replace(rates,
                        positive={c: scaled(r, c, 0) for c, r in rates.positive.items()},
                        uncertain={c: scaled(r, c, 2) for c, r in rates.uncertain.items()},
                        negative={c: scaled(r, c, 1) for c, r in rates.negative.items()})
    return rates


def mimic_labels(studies: list[Study], seed: int) -> None:
    rates = fit_rates(seed)
    rng = random.Random(f"{seed}-labels")
    for study in studies:
        compose_mimic_study(study, rng, rates)


def mimic_proportions(studies: list, seed: int) -> None:
    """Official split proportions per subject; a FINDINGS-less share of standard-layout studies."""
    rng = random.Random(seed)
    names, weights = zip(*SPLIT_STUDIES.items())
    subject_split: dict[int, str] = {}
    for study in studies:
        study.split = subject_split.setdefault(study.subject_id, rng.choices(names, weights)[0])
        if study.layout == "standard" and rng.random() < NO_FINDINGS_SHARE:
            study.layout = "no_findings"


def trim_images(studies: list, target: int, seed: int) -> int:
    """Drop extra views (never a study's first) at random until about ``target`` images remain."""
    total = sum(len(s.views) for s in studies)
    extra = total - target
    if extra <= 0:
        return total
    rng = random.Random(seed)
    candidates = [s for s in studies if len(s.views) > 1]
    p = min(1.0, extra / sum(len(s.views) - 1 for s in candidates))
    for study in candidates:
        study.views = [study.views[0]] + [v for v in study.views[1:] if rng.random() >= p]
    return sum(len(s.views) for s in studies)


def full_rad_restruct(out: Path) -> int:
    """Every listed id gets a QA file (cycling through the sample's files of the same split)."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(SAMPLE, out, ignore=shutil.ignore_patterns("*_qa_pairs"))
    pairs = 0
    for split in ("train", "val", "test"):
        ids = json.loads((SAMPLE / f"{split}_ids.json").read_text())
        sample = sorted((SAMPLE / f"{split}_qa_pairs").glob("*.json"))
        target = out / f"{split}_qa_pairs"
        target.mkdir()
        for i, report_id in enumerate(ids):
            source = sample[i % len(sample)]
            shutil.copyfile(source, target / f"{report_id}.json")
            pairs += len(json.loads(source.read_text()))
    return pairs


def reports_zip(out: Path) -> Path:
    """``out/mimic-cxr``'s reports packed like mimic-cxr-reports.zip (deflated, in path order)."""
    archive = out / "mimic-cxr-reports.zip"
    files = out / "mimic-cxr" / "files"
    with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(files.rglob("*.txt")):
            zf.write(path, "mimic-cxr-reports/" + path.relative_to(files.parent).as_posix())
    return archive


def scale_corpus(out: Path, *, studies: int = MIMIC_STUDIES, images: int = MIMIC_IMAGES, seed: int = 7,
                 labels: str = "mimic") -> dict:
    started = time.perf_counter()
    corpus = build_studies(seed, studies)
    mimic_proportions(corpus, seed)
    if labels == "mimic":
        mimic_labels(corpus, seed)
    n_images = trim_images(corpus, images, seed)
    for sub in ("mimic-cxr", "mimic-cxr-jpg", "mimic-nle"):
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    write_mimic_cxr(corpus, out, random.Random(seed + 1))
    n_nle = write_mimic_nle(corpus, out)
    qa = full_rad_restruct(out / "rad-restruct" / "data" / "radrestruct")
    shares = label_shares(corpus)
    counts = {"studies": len(corpus), "images": n_images, "labels": labels,
              "splits": {name: sum(s.split == name for s in corpus) for name in SPLIT_STUDIES},
              "without_findings": sum(s.layout == "no_findings" for s in corpus), "nle": n_nle, "radrestruct_qa_pairs": qa,
              "label_shares": {c: {"corpus": [round(x, 4) for x in shares[c]],
                                   "published": [round(x, 4) for x in published_shares()[c]]} for c in CSV_ORDER},
              "seconds": round(time.perf_counter() - started, 1)}
    (out / "SCALE.json").write_text(json.dumps(counts, indent=2) + "\n")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, default=REPO / "bench" / "work" / "mimic-scale")
    parser.add_argument("--studies", type=int, default=MIMIC_STUDIES)
    parser.add_argument("--images", type=int, default=MIMIC_IMAGES)
    parser.add_argument("--labels", choices=("mimic", "demo"), default="mimic",
                        help="label mix: MIMIC-CXR-JPG's published frequencies, or the demo generator's")
    parser.add_argument("--zip", action="store_true", help="also write mimic-cxr-reports.zip")
    args = parser.parse_args(argv)
    print(json.dumps(scale_corpus(args.out, studies=args.studies, images=args.images, labels=args.labels)))
    if args.zip:
        print(reports_zip(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
