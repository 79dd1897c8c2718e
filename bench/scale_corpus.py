"""A MIMIC-sized synthetic corpus in the real layouts, from the demo generator.

    python bench/scale_corpus.py [OUT] [--studies 227835] [--images 377110]

Writes MIMIC-CXR reports (files/pNN/pSUBJECT/sSTUDY.txt) and the metadata / split / CheXpert
tables for 227,835 studies with about 377k images (the generator's extra views are dropped at
random down to the target), the MIMIC-NLE files that go with them, and a full-size Rad-ReStruct
(all 3,597 listed report ids, each with the QA file of a sample report of its split, so ~176k QA
pairs). Deterministic; nothing here is MIMIC data.

Two MIMIC-like proportions replace the demo generator's: subjects are assigned to the official
splits in the official study proportions (222,758 train / 1,808 validate / 3,269 test), and
about 27% of studies have no FINDINGS section - the share implied by the commonly used R2Gen
version of MIMIC-CXR, which keeps 270,790 of the 368,960 train images (those with findings).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

from radialog_instruct.tasks.sources.demo import build_studies, write_mimic_cxr, write_mimic_nle

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "demo" / "rad-restruct" / "data" / "radrestruct"
MIMIC_STUDIES, MIMIC_IMAGES = 227_835, 377_110
SPLIT_STUDIES = {"train": 222_758, "validate": 1_808, "test": 3_269}
NO_FINDINGS_SHARE = 1 - 270_790 / 368_960


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


def scale_corpus(out: Path, *, studies: int = MIMIC_STUDIES, images: int = MIMIC_IMAGES, seed: int = 7) -> dict:
    started = time.perf_counter()
    corpus = build_studies(seed, studies)
    mimic_proportions(corpus, seed)
    n_images = trim_images(corpus, images, seed)
    for sub in ("mimic-cxr", "mimic-cxr-jpg", "mimic-nle"):
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    write_mimic_cxr(corpus, out, random.Random(seed + 1))
    n_nle = write_mimic_nle(corpus, out)
    qa = full_rad_restruct(out / "rad-restruct" / "data" / "radrestruct")
    counts = {"studies": len(corpus), "images": n_images,
              "splits": {name: sum(s.split == name for s in corpus) for name in SPLIT_STUDIES},
              "without_findings": sum(s.layout == "no_findings" for s in corpus), "nle": n_nle, "radrestruct_qa_pairs": qa,
              "seconds": round(time.perf_counter() - started, 1)}
    (out / "SCALE.json").write_text(json.dumps(counts, indent=2) + "\n")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, default=REPO / "bench" / "work" / "mimic-scale")
    parser.add_argument("--studies", type=int, default=MIMIC_STUDIES)
    parser.add_argument("--images", type=int, default=MIMIC_IMAGES)
    args = parser.parse_args(argv)
    print(json.dumps(scale_corpus(args.out, studies=args.studies, images=args.images)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
