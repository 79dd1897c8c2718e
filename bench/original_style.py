"""The v1 dataset build done the way the original RaDialog scripts did it, for speed comparison.

This mirrors the original ``create_section_files.py`` + ``data/create_data.py`` +
``data/instruct_tasks.py`` code path (see ../shared/reference/radialog-original.md, section 1):

* one sectioned CSV row per image, written and read back, with a per-row DataFrame filter to find a
  study's images;
* the train dataset (``MIMIC_Text_Dataset``) built twice - for the task files and again in
  ``fuse_instruct_dataset`` - each time reading the CSVs, ``apply``-ing lambdas per row and
  deriving every row's positive labels from a per-row label Series;
* every sample read through the dataset's ``__getitem__`` (``iloc``, the label Series cast to
  float, a conversation object rendered to the report-generation prompt), both for the report
  generation rows and for the rows of every task file;
* a conversation object per task record, a random split of the train images into six parts,
  per-task JSON files written and read back, per-row DataFrame filters for every lookup (the report
  of a MIMIC-NLE line - twice, as the original does - and the labels of a task record), and one big
  ``json.dump(indent=4)`` of the fused list.

What it leaves out, so the figures are a lower bound for the original: the ``DataLoader`` batching
and collation around ``__getitem__`` (the original ran it with 200 worker processes), the
``tqdm`` bars, the images listed per study from the JPG folder (a filter on the metadata table
stands in), and model inference - replay outputs come from a dictionary filled before the clock
starts, as our pipeline's come from a pre-filled cache. Seeds are set (the original set none).

It reuses our section parser (the original's is the same kind of regex pass over each report) and
our conversation format, so that the comparison measures the data handling, not two sectioning
implementations or prompt lengths.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radialog_instruct.tasks.instruct.templates import load_templates
from radialog_instruct.tasks.sources.sections import study_sections
from radialog_instruct.tasks.text.conversation import load_conversation

LABELS = ["No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
          "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
          "Fracture", "Support Devices"]
NLE_ORDER = ["Atelectasis", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Lung Lesion", "Lung Opacity",
             "Pleural Effusion", "Pleural Other", "Pneumonia", "Pneumothorax"]
RG_PROMPT = ("<image>. Predicted Findings: {findings}. You are to act as a radiologist and write the finding "
             "section of a chest x-ray radiology report for this X-ray image and the given predicted findings.")
REPLAY = ("easy_language", "summarization", "region_qa", "correction")
FORMAT = load_conversation()


def chat_prompt(*turns: str) -> str:
    """The original's per-sample conversation: ``turns`` (user, assistant, user, ...) rendered with
    the system prompt and an open assistant turn at the end (our conversation format's renderer)."""
    return FORMAT.render([{"role": ("user", "assistant")[i % 2], "content": text} for i, text in enumerate(turns)])


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
                         "Img_Folder": f"files/{path.parent.parent.name}/{path.parent.name}/{path.stem}",
                         "Note_file": path.name})
    pd.DataFrame(rows).to_csv(out_csv)
    return len(rows)


class TrainDataset:
    """MIMIC_Text_Dataset(split="train"): train images with findings, their labels and positive
    labels; samples are read one at a time with ``[index]``."""

    def __init__(self, corpus: Path, sectioned_csv: Path):
        jpg = corpus / "mimic-cxr-jpg"
        split = pd.read_csv(jpg / "mimic-cxr-2.0.0-split.csv.gz")
        reports = pd.read_csv(sectioned_csv).dropna(subset=["findings"])
        train_ids = set(split.loc[split["split"] == "train", "dicom_id"])
        ann = reports.loc[reports["dicom_id"].isin(train_ids)].copy()
        ann["findings"] = ann["findings"].apply(lambda x: x.replace("\n", ""))
        ann["subject_id"] = ann["Img_Folder"].apply(lambda x: int(x.split("/")[2].lstrip("p")))
        ann["study_id"] = ann["Note_file"].apply(lambda x: int(x.lstrip("s").removesuffix(".txt")))
        labels = pd.read_csv(jpg / "mimic-cxr-2.0.0-chexpert.csv.gz").drop(columns="subject_id")
        ann = pd.merge(ann, labels, how="left", on="study_id")
        ann["positive_labels"] = ann.apply(
            lambda row: ", ".join(LABELS[i] for i in np.where(row[LABELS].values == 1)[0]), axis=1)
        self.annotation = ann

    def __len__(self) -> int:
        return len(self.annotation)

    def __getitem__(self, index: int) -> dict[str, Any]:
        ann = self.annotation.iloc[index]
        labels = ann[LABELS].astype(float).values
        no_labels = bool(np.all(np.isnan(labels) | (labels == 0) | (labels == -1.0)))
        findings = "no common findings" if no_labels else ann["positive_labels"].lower().strip()
        return {"text_input": chat_prompt(RG_PROMPT.format(findings=findings)),
                "text_target": ann["findings"].strip(), "chexpert_labels": labels, "dicom": ann["dicom_id"]}


def _dump(records: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w") as f:
        json.dump(records, f, ensure_ascii=False, indent=4)


def task_files(ds: TrainDataset, outputs: dict[tuple[str, str], str], rng: random.Random, out: Path) -> None:
    """create_report_data_vicuna_instruct_large(): six random parts, per-task JSON files."""
    order = list(range(len(ds)))
    rng.shuffle(order)
    parts = [order[i::6] for i in range(6)]
    named = dict(zip(("easy_language", "correction", "summarization", "_", "region_qa", "cpqa"), parts))
    for task in REPLAY:  # create_direct_task_data
        prompts = _instructions(task)
        records = []
        for index in named[task]:
            item, instruction = ds[index], rng.choice(prompts)
            records.append({"gt_report": item["text_target"], "task": instruction,
                            "instruction": chat_prompt(f"Report: {item['text_target']}\n{instruction}"),
                            "input": "", "output": outputs[(task, item["dicom"])], "dicom": item["dicom"],
                            "task_type": task})
        _dump(records, out / f"instruct_large_{task}.json")
    cpqa = named["cpqa"]
    half = len(cpqa) // 2
    for task, part in (("CPbQA", cpqa[:half]), ("CPaQA", cpqa[half:])):  # create_cp_task_data
        records = []
        for index in part:
            item = ds[index]
            positives = [LABELS[i] for i in np.where(item["chexpert_labels"] == 1.0)[0]]
            if task == "CPbQA":
                positives = [c for c in positives if c != "No Finding"]
                if positives and rng.random() < 0.6:
                    label, answer = rng.choice(positives), "yes"
                else:
                    label, answer = rng.choice([c for c in LABELS[1:] if c not in positives]), "no"
                question = f"Is there any {label}?"
            else:
                question, answer = "List all findings.", ", ".join(positives)
            records.append({"gt_report": item["text_target"], "task": question, "input": "", "output": answer,
                            "dicom": item["dicom"], "task_type": task})
        _dump(records, out / f"instruct_large_{task}.json")


def nle_file(corpus: Path, sectioned_csv: Path, rng: random.Random, out: Path) -> None:
    """create_nle_task_data(): MIMIC-NLE lines whose sentence is in the study's findings."""
    prompts = _instructions("nle")
    reports = pd.read_csv(sectioned_csv).dropna(subset=["findings"])
    reports["findings"] = reports["findings"].apply(lambda x: x.replace("\n", ""))
    records = []
    for line in (corpus / "mimic-nle" / "mimic-nle-train.json").read_text().splitlines():
        nle = json.loads(line)
        note = nle["report_ID"] + ".txt"
        found = reports[reports["Note_file"] == note]["findings"].tolist()  # per-row filter
        if not found or nle["nle"] not in found[0]:
            continue
        dicom = reports[reports["Note_file"] == note]["dicom_id"].tolist()[0]  # and again, as the original
        names = ", ".join(n for n, flag in zip(NLE_ORDER, nle["diagnosis_label"]) if flag == 1)
        records.append({"gt_report": found[0], "task": rng.choice(prompts).replace("{conditions}", " and ".join(names.rsplit(", ", 1))),
                        "input": "", "output": nle["nle"], "dicom": dicom, "task_type": "RE"})
    _dump(records, out / "instruct_large_RE.json")


def fuse(corpus: Path, sectioned_csv: Path, rng: random.Random, out: Path) -> int:
    """fuse_instruct_dataset(): the train dataset built again, RG rows (two simulated epochs) read
    through it, the task files' records turned into chat prompts, shuffled, one JSON dump."""
    ds = TrainDataset(corpus, sectioned_csv)
    ann = ds.annotation
    no_finding = ann[(ann["No Finding"] == 1) | ((ann[LABELS] == 1).sum(axis=1) == 0)].index
    finding = ann.index.difference(no_finding).tolist() * 2
    no_finding = no_finding.tolist()
    indices = finding + rng.sample(no_finding, min(len(no_finding), int(len(finding) * 14 / 13 / 14)))
    samples = []
    for index in indices:
        item = ds[index]
        samples.append({"instruction": item["text_input"], "input": "", "output": item["text_target"],
                        "dicom": item["dicom"]})
    for path in sorted(out.glob("instruct_large_*.json")):
        all_findings = path.stem.endswith("CPaQA")
        for record in json.loads(path.read_text()):
            instruction = chat_prompt(RG_PROMPT, record["gt_report"], record["task"])
            row = ann[ann["dicom_id"] == record["dicom"]]  # per-row filter
            labels = row.iloc[0]["positive_labels"].lower().strip() if len(row) else "no common findings"
            output = str(record["output"])
            samples.append({"instruction": instruction.replace("{findings}", labels), "input": "",
                            "output": output.lower().strip() if all_findings else output.strip(),
                            "dicom": record["dicom"]})
    rng.shuffle(samples)
    _dump(samples, out / "mimic_cxr_instruct_stratified.json")
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
    sectioned = out / "mimic_cxr_sectioned.csv"
    section_files(corpus, sectioned)
    task_files(TrainDataset(corpus, sectioned), outputs, rng, out)
    nle_file(corpus, sectioned, rng, out)
    return fuse(corpus, sectioned, rng, out)
