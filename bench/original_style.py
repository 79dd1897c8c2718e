"""The v1 dataset build done the way the original RaDialog scripts did it, for speed comparison.

This mirrors the shape of the original ``create_section_files.py`` + ``data/create_data.py`` code
path (see ../shared/reference/radialog-original.md, section 1): one sectioned CSV row per image
written and read back, ``iterrows`` loops, a per-row DataFrame filter for every lookup (labels,
report of a NLE, generated output of a replay row), a random split of the train images into six
parts, and one big ``json.dump(indent=4)`` of the fused list. Model inference is excluded the same
way as in our pipeline: replay outputs come from a dictionary filled before the clock starts.

It reuses our section parser (the original's is the same kind of regex pass over each report) so
that the comparison measures the data handling, not two sectioning implementations.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd

from radialog_instruct.tasks.instruct.templates import load_templates
from radialog_instruct.tasks.sources.sections import study_sections

LABELS = ["No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
          "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
          "Fracture", "Support Devices"]
NLE_ORDER = ["Atelectasis", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Lung Lesion", "Lung Opacity",
             "Pleural Effusion", "Pleural Other", "Pneumonia", "Pneumothorax"]
RG_PROMPT = ("<image>. Predicted Findings: {findings}. You are to act as a radiologist and write the finding "
             "section of a chest x-ray radiology report for this X-ray image and the given predicted findings.")
REPLAY = ("easy_language", "summarization", "region_qa", "correction")


def _instructions(task: str) -> list[str]:
    templates = load_templates(task)
    return [v.text for mode in templates.modes for v in templates.variants(mode)]


def pseudo_output(task: str, findings: str) -> str:
    """The stand-in for a generated answer (the same function feeds our pipeline's cache)."""
    return f"[{task}] " + findings[:400]


def section_files(corpus: Path, out_csv: Path) -> int:
    """create_section_files.py: one row per image with the report's sections, written as CSV."""
    jpg = corpus / "mimic-cxr-jpg"
    meta = pd.read_csv(jpg / "mimic-cxr-2.0.0-metadata.csv.gz")
    rows = []
    for path in sorted((corpus / "mimic-cxr" / "files").glob("p*/p*/s*.txt")):
        sections = study_sections(path.read_text())
        study_id = int(path.stem[1:])
        for _, image in meta[meta.study_id == study_id].iterrows():  # per-row filter
            rows.append({"study": path.stem, "impression": sections["impression"] or None,
                         "findings": sections["findings"] or None, "last_paragraph": sections["last_paragraph"],
                         "comparison": sections["comparison"], "dicom_id": image.dicom_id,
                         "Img_Folder": f"{path.parent.parent.name}/{path.parent.name}/{path.stem}",
                         "Note_file": path.name})
    pd.DataFrame(rows).to_csv(out_csv)
    return len(rows)


def train_dataset(corpus: Path, sectioned_csv: Path) -> pd.DataFrame:
    """MIMIC_Text_Dataset(split="train"): train images with findings and their positive labels."""
    jpg = corpus / "mimic-cxr-jpg"
    df = pd.read_csv(sectioned_csv)
    split = pd.read_csv(jpg / "mimic-cxr-2.0.0-split.csv.gz")
    df = df[df.findings.notna()]
    df = df[df.dicom_id.isin(split[split.split == "train"].dicom_id)]
    df["findings"] = df.findings.str.replace("\n", "")
    df["study_id"] = df.Note_file.str[1:-4].astype(int)
    labels = pd.read_csv(jpg / "mimic-cxr-2.0.0-chexpert.csv.gz")
    df = df.merge(labels, on="study_id", how="left")
    df["positive_labels"] = df.apply(lambda r: ", ".join(c for c in LABELS if r[c] == 1), axis=1)
    return df.reset_index(drop=True)


def replay_files(df: pd.DataFrame, outputs: dict[tuple[str, str], str], rng: random.Random, out: Path) -> None:
    """create_report_data_vicuna_instruct_large(): six random parts, per-task JSON files."""
    order = list(range(len(df)))
    rng.shuffle(order)
    parts = [order[i::6] for i in range(6)]
    named = dict(zip(("easy_language", "correction", "summarization", "_", "region_qa", "cpqa"), parts))
    for task in REPLAY:
        prompts = _instructions(task)
        records = []
        for _, row in df.iloc[named[task]].iterrows():
            instruction = rng.choice(prompts)
            records.append({"gt_report": row.findings, "task": instruction, "input": "",
                            "instruction": f"Report: {row.findings}\n{instruction}",
                            "output": outputs[(task, row.dicom_id)], "dicom": row.dicom_id, "task_type": task})
        (out / f"instruct_large_{task}.json").write_text(json.dumps(records))
    qa = df.iloc[named["cpqa"]]
    half = len(qa) // 2
    for task, part in (("CPbQA", qa.iloc[:half]), ("CPaQA", qa.iloc[half:])):
        records = []
        for _, row in part.iterrows():
            positives = [c for c in LABELS[1:] if row[c] == 1]
            if task == "CPbQA":
                if positives and rng.random() < 0.6:
                    label, answer = rng.choice(positives), "yes"
                else:
                    label, answer = rng.choice([c for c in LABELS[1:] if c not in positives]), "no"
                question = f"Is there any {label}?"
            else:
                question, answer = "List all findings.", ", ".join(c for c in LABELS if row[c] == 1)
            records.append({"gt_report": row.findings, "task": question, "input": "", "output": answer,
                            "dicom": row.dicom_id, "task_type": task})
        (out / f"instruct_large_{task}.json").write_text(json.dumps(records))


def nle_file(corpus: Path, sectioned: pd.DataFrame, rng: random.Random, out: Path) -> None:
    """The RE part: MIMIC-NLE lines whose sentence is in the study's findings."""
    prompts = _instructions("nle")
    records = []
    for line in (corpus / "mimic-nle" / "mimic-nle-train.json").read_text().splitlines():
        nle = json.loads(line)
        study = sectioned[sectioned.Note_file == nle["report_ID"] + ".txt"]  # per-row filter
        if len(study) == 0 or not isinstance(study.iloc[0].findings, str):
            continue
        findings = study.iloc[0].findings.replace("\n", "")
        if nle["nle"] not in findings:
            continue
        names = [n for n, flag in zip(NLE_ORDER, nle["diagnosis_label"]) if flag == 1]
        records.append({"gt_report": findings, "task": rng.choice(prompts).replace("{conditions}", ", ".join(names)),
                        "input": "", "output": nle["nle"], "dicom": study.iloc[0].dicom_id, "task_type": "RE"})
    (out / "instruct_large_RE.json").write_text(json.dumps(records))


def fuse(df: pd.DataFrame, rng: random.Random, out: Path) -> int:
    """fuse_instruct_dataset(): RG rows (two simulated epochs) + chat rows, shuffled, one JSON dump."""
    findings_rows = df[(df["No Finding"] != 1) & (df[LABELS[1:]] == 1).any(axis=1)]
    others = df.drop(findings_rows.index)
    rg = pd.concat([findings_rows, findings_rows])
    rg = pd.concat([rg, others.sample(min(len(others), int(len(rg) / 13)), random_state=rng.randrange(2**31))])
    samples = []
    for _, row in rg.iterrows():
        samples.append({"instruction": f"USER: {RG_PROMPT.format(findings=row.positive_labels.lower())} ASSISTANT:",
                        "input": "", "output": row.findings.strip(), "dicom": row.dicom_id})
    for path in sorted(out.glob("instruct_large_*.json")):
        for record in json.loads(path.read_text()):
            row = df[df.dicom_id == record["dicom"]]  # per-row filter
            labels = row.iloc[0].positive_labels.lower() if len(row) else "no common findings"
            history = f"USER: {RG_PROMPT.format(findings=labels)} ASSISTANT: {record['gt_report']}</s>"
            samples.append({"instruction": f"{history}USER: {record['task']} ASSISTANT:", "input": "",
                            "output": str(record["output"]).strip(), "dicom": record["dicom"]})
    rng.shuffle(samples)
    with open(out / "mimic_cxr_instruct_stratified.json", "w") as f:
        json.dump(samples, f, indent=4)
    return len(samples)


def outputs_for(corpus: Path) -> dict[tuple[str, str], str]:
    """Pre-filled replay outputs for every (task, dicom) the original path may ask for."""
    meta = pd.read_csv(corpus / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-metadata.csv.gz", usecols=["dicom_id", "study_id"])
    texts = {}
    for path in (corpus / "mimic-cxr" / "files").glob("p*/p*/s*.txt"):
        texts[int(path.stem[1:])] = (study_sections(path.read_text())["findings"] or "").replace("\n", "")
    return {(task, d): pseudo_output(task, texts.get(s, "")) for d, s in zip(meta.dicom_id, meta.study_id)
            for task in REPLAY}


def build(corpus: Path, out: Path, outputs: dict[tuple[str, str], str], seed: int = 0) -> int:
    """The whole original-style build; returns the number of samples in the fused JSON."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    section_files(corpus, out / "mimic_cxr_sectioned.csv")
    df = train_dataset(corpus, out / "mimic_cxr_sectioned.csv")
    replay_files(df, outputs, rng, out)
    nle_file(corpus, pd.read_csv(out / "mimic_cxr_sectioned.csv"), rng, out)
    return fuse(df, rng, out)

