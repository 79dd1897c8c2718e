"""``plan.fidelity: original`` end to end on the demo corpus with the fixture checkout imported
(tests/data/radialog-checkout): the v1 records as RaDialog's scripts write them, rebuilt here from
the sources with this module's own transcription of the original algorithm, read the way RaDialog's
``finetune.py`` reads its data, and validated, audited and released without audit exclusion.

A quarter of the studies with findings are relabelled with nothing positive, so the original's
empty answers and ``Predicted Findings: .`` occur. The generation cache is :mod:`fake_generator`'s.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from radialog_instruct.schemas import LABELS
from radialog_instruct.tasks.config import load_params
from radialog_instruct.tasks.errors import ConfigError
from radialog_instruct.tasks.generation.requests import build_requests, request_settings
from radialog_instruct.tasks.instruct.fidelity import fuse_text, near_equal_blocks
from radialog_instruct.tasks.instruct.import_original import CSV_LISTS, import_original
from radialog_instruct.tasks.instruct.plan import load_config, run_plan
from radialog_instruct.tasks.instruct.presets import get_preset
from radialog_instruct.tasks.io import read_json, write_parquet
from radialog_instruct.tasks.labeling.conditions import CONDITIONS, FINDINGS, NLE_CLASSES, RADIALOG_ORDER, column
from radialog_instruct.tasks.quality.audit import run_audit
from radialog_instruct.tasks.quality.validate import run_validate
from radialog_instruct.tasks.release.physionet import run_release
from radialog_instruct.tasks.storage.assemble import run_assemble
from radialog_instruct.tasks.text.conversation import params_conversation
from radialog_instruct.tasks.workdir import Workdir

from fake_generator import write_generation_cache
from reference import REPO

CHECKOUT = REPO / "tests" / "data" / "radialog-checkout"
SYSTEM = "You are a careful radiology assistant talking with a clinician. Answer briefly and precisely."
USER, ASSISTANT = "CLINICIAN", "ASSISTANT"
RG_KEY = "fixture_rg_prompt"
INTERIM = ("reports", "images", "nle", "radrestruct_qa", "labels", "prediction_labels", "chexpert_provided")
#: (task, task_mode) -> the original list the question comes from
LIST_OF = {(task, mode if task in ("findings_qa", "correction") else None): stem
           for stem, (task, mode) in CSV_LISTS.items()}


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("faithful-templates") / "original"
    import_original(CHECKOUT, out)
    return out


def blank_some_studies(wd: Workdir) -> set[int]:
    """Every fourth study with findings: all 14 labels negative, nothing positive."""
    labels = pq.read_table(wd.table("labels")).to_pandas()
    reports = pq.read_table(wd.table("reports")).to_pandas()
    with_findings = sorted(reports.loc[reports["has_findings"], "study_id"])
    blank = set(with_findings[::4])
    rows = labels["study_id"].isin(blank)
    for name in CONDITIONS:
        labels.loc[rows, column(name)] = 0.0
    labels.loc[rows, "structured_findings"] = ""
    labels["positive_findings"] = [[] if b else list(p) for b, p in zip(rows, labels["positive_findings"])]
    write_parquet(pa.Table.from_pandas(labels, schema=LABELS, preserve_index=False), wd.table("labels"))
    return blank


@pytest.fixture(scope="module")
def faithful(tmp_path_factory: pytest.TempPathFactory, planned_workdir: Workdir, imported: Path) -> dict[str, Any]:
    params = load_params(demo=True, overrides=["plan.preset=radialog-v1", f"plan.templates_dir={imported}"])
    params["generate"] = {**params["generate"], "model_preset": "vicuna-7b-v1.5", "model": "test/faithful-writer",
                          "revision": "r1"}
    wd = Workdir.at(tmp_path_factory.mktemp("faithful"))
    for name in INTERIM:
        wd.table(name).parent.mkdir(parents=True, exist_ok=True)
        wd.table(name).write_bytes(planned_workdir.table(name).read_bytes())
    blank = blank_some_studies(wd)
    summaries = {"plan": run_plan(params, wd)}
    write_generation_cache(params, wd)
    summaries.update(audit=run_audit(params, wd), assemble=run_assemble(params, wd), validate=run_validate(params, wd),
                     release=run_release(params, wd))
    version = params["assemble"]["version"]
    shards = wd.shards(version)
    rows = pa.concat_tables([pq.read_table(p) for p in sorted((shards / "train").glob("part-*.parquet"))]).to_pandas()
    tables = {n: pq.read_table(wd.table(n)).to_pandas() for n in ("reports", "labels", "nle", "plan")}
    return {"params": params, "wd": wd, "summaries": summaries, "blank": blank, "shards": shards, "rows": rows,
            "flat": wd.exports / version / "train" / "mimic_cxr_instruct_stratified.json", **tables}


def csv_list(stem: str) -> list[str]:
    with open(CHECKOUT / "data" / "instruct_prompts" / f"{stem}_prompts.csv", newline="", encoding="utf-8") as fh:
        return [r["instruction"] for r in csv.DictReader(fh)]


def rg_prompt() -> str:
    return json.loads((CHECKOUT / "vicuna_prompts.json").read_text())[RG_KEY]


# --- a transcription of the original algorithm (RaDialog data/create_data.py, my reading) ----------

def original_get_prompt(messages: list[tuple[str, str | None]]) -> str:
    """``Conversation.get_prompt`` with ``SeparatorStyle.TWO``, sep " ", sep2 "</s>"."""
    seps = [" ", "</s>"]
    ret = SYSTEM + seps[0]
    for i, (role, message) in enumerate(messages):
        ret += role + ": " + message + seps[i % 2] if message else role + ":"
    return ret


def positive_labels(label_row: pd.Series) -> str:
    """``convert_to_finding_labels``: the columns equal to 1, in the original's column order."""
    return ", ".join(c for c in RADIALOG_ORDER if label_row[column(c)] == 1)


def original_instruction(row: pd.Series, report: str, labels: pd.Series) -> str:
    """The fused record's instruction: a report-generation row, or an instruct row with the report
    turn, its question and the whole string formatted with the (possibly empty) label string."""
    positives = positive_labels(labels)
    if row["task"] == "report_generation":
        findings = positives.lower().strip() if positives else "no common findings"
        return original_get_prompt([(USER, rg_prompt().format(findings=findings)), (ASSISTANT, None)])
    question = row["messages"][-2]["content"]
    chat = original_get_prompt([(USER, rg_prompt()), (ASSISTANT, report), (USER, question), (ASSISTANT, None)])
    return chat.format(findings=positives.lower().strip())


def names_pattern(names: tuple[str, ...]) -> str:
    one = "|".join(re.escape(n) for n in names)
    return rf"(?:{one})(?:, (?:{one}))*(?: and (?:{one}))?"


def variant_patterns(stem: str, names: tuple[str, ...]) -> list[re.Pattern[str]]:
    """Each original variant of ``stem`` as a regex whose placeholders take capitalised names."""
    out = []
    for text in csv_list(stem):
        pattern = re.escape(text)
        for slot in ("<X>", "<add>", "<rem>"):
            pattern = pattern.replace(re.escape(slot), f"({names_pattern(names)})")
        out.append(re.compile(pattern))
    return out


def split_names(listing: str) -> list[str]:
    head, _, last = listing.rpartition(" and ")
    return [*head.split(", "), last] if head else [last]


# --- the tests ---------------------------------------------------------------------------------

def test_the_build_is_v1_in_the_original_fidelity_and_validates(faithful: dict[str, Any]):
    plan = faithful["summaries"]["plan"]
    assert plan["fidelity"] == "original" and plan["splits"] == ["train"]
    assert set(plan["rows_per_task"]) == set(get_preset("radialog-v1").tasks)
    assert set(faithful["plan"]["split"]) == {"train"}
    report = read_json(faithful["wd"].report("validation.json"))
    assert report["success"] and report["preset"] == "radialog-v1" and report["fidelity"] == "original"
    assert {"min_rows.impression_generation", "min_rows.rad_restruct_qa", "min_rows.view_classification"} \
        <= set(report["unchecked_bounds"])
    assert "Bounds on tasks outside the preset, not checked" in faithful["wd"].report("validation.md").read_text()


def test_flat_records_have_the_original_shape(faithful: dict[str, Any]):
    records = json.loads(faithful["flat"].read_text())
    assert len(records) == len(faithful["rows"])
    prefix = f"{SYSTEM} {USER}: Picture: " + "<IMG>" * 32 + ". Labels so far: "
    for record in records:
        assert list(record) == ["instruction", "input", "output", "dicom"] and record["input"] == ""
        assert record["instruction"].startswith(prefix) and record["instruction"].endswith(f" {ASSISTANT}:")
        assert record["instruction"].count("<IMG>") == 32


def test_flat_records_are_what_the_original_scripts_write(faithful: dict[str, Any]):
    """Every record rebuilt from the sources with the transcription above: same instruction and dicom;
    targets as the original takes them."""
    records = json.loads(faithful["flat"].read_text())
    reports = faithful["reports"].set_index("study_id")["findings"]
    labels = faithful["labels"].set_index("study_id")
    nle = faithful["nle"].set_index("sentence_id")
    for record, (_, row) in zip(records, faithful["rows"].iterrows()):
        report = reports[row["study_id"]]
        if row["task"] == "correction":
            report = reports[int(row["source_ref"].removeprefix("retrieved:s"))]
        assert record["instruction"] == original_instruction(row, report, labels.loc[row["study_id"]])
        assert record["dicom"] == row["dicom_id"]
        positives = positive_labels(labels.loc[row["study_id"]])
        if row["task"] == "report_generation":
            assert record["output"] == report
        elif row["task"] == "findings_qa" and row["task_mode"] == "complete":
            assert record["output"] == positives.lower().strip()
        elif row["task"] == "nle":
            assert record["output"] == nle.loc[row["source_ref"], "nle"].strip()


def test_finetune_reads_the_flat_export(faithful: dict[str, Any], tmp_path: Path):
    """RaDialog's finetune.py data path: ``load_dataset("json", data_files=...)``, then
    ``Prompter("vicuna_v11").generate_prompt`` (``prompt_no_input = "{instruction}"``, the label appended
    with no separator; ``"{instruction} {input}"`` only when there is an input), the user prompt masked,
    ``get_response`` splitting at "ASSISTANT:"; the model looks for 32 consecutive <IMG> tokens."""
    from datasets import load_dataset

    data = load_dataset("json", data_files=str(faithful["flat"]), cache_dir=str(tmp_path))["train"]
    assert set(data.column_names) == {"instruction", "input", "output", "dicom"}
    assert len(data) == len(faithful["rows"])
    template = {"prompt_input": "{instruction} {input}", "prompt_no_input": "{instruction}",
                "response_split": "ASSISTANT:"}  # RaDialog's data/templates/vicuna_v11.json

    def generate_prompt(instruction: str, input: str | None = None, label: str | None = None) -> str:
        res = template["prompt_input"].format(instruction=instruction, input=input) if input else \
            template["prompt_no_input"].format(instruction=instruction)
        return f"{res}{label}" if label else res

    for point in data:
        full = generate_prompt(point["instruction"], point["input"], point["output"])
        user = generate_prompt(point["instruction"], point["input"])
        assert full.startswith(user) and full[len(user):] == point["output"]
        assert full.split(template["response_split"])[-1].strip() == point["output"].strip()
        assert re.search(r"(?:<IMG>){32}", user) and not re.search(r"(?:<IMG>){33}", user)
    assert any(p["output"] == "" for p in data)  # the original's empty answers load as they are


def test_questions_are_the_imported_variants_with_capitalised_names(faithful: dict[str, Any]):
    rows = faithful["rows"][faithful["rows"]["task"] != "report_generation"]
    labels = faithful["labels"].set_index("study_id")
    seen = set()
    for _, row in rows.iterrows():
        key = (row["task"], row["task_mode"] if row["task"] in ("findings_qa", "correction") else None)
        stem = LIST_OF[key]
        names = NLE_CLASSES if row["task"] == "nle" else FINDINGS
        question = row["messages"][-2]["content"]
        matches = [m for m in (p.fullmatch(question) for p in variant_patterns(stem, names)) if m]
        assert matches, (stem, question)
        seen.add(stem)
        if stem == "CPbQA":
            (asked,) = matches[0].groups()
            assert (labels.loc[row["study_id"], column(asked)] == 1) == (row["output"] == "yes")
    assert seen == set(CSV_LISTS)


def test_generator_prompts_use_the_imported_wording(faithful: dict[str, Any]):
    plan = faithful["plan"]
    reports = faithful["reports"].set_index("study_id")["findings"]
    corrections = plan[plan["task"] == "correction"]
    assert len(corrections)
    for _, row in corrections.iterrows():
        gen = list(row["gen_messages"])
        assert gen[0]["content"] == "Write the report for this chest film."
        assert gen[1]["content"] == reports[int(row["source_ref"].removeprefix("retrieved:s"))]
        question = row["messages"][-1]["content"]
        lists = {"add": None, "remove": None}
        for stem, mode in (("CO_add", "add"), ("CO_rem", "remove"), ("CO_both", "both")):
            for text in csv_list(stem):
                pattern = re.escape(text).replace(re.escape("<add>"), f"(?P<add>{names_pattern(FINDINGS)})")
                pattern = pattern.replace(re.escape("<rem>"), f"(?P<remove>{names_pattern(FINDINGS)})")
                match = re.fullmatch(pattern, question)
                if match:
                    lists.update({k: v for k, v in match.groupdict().items()})
        expected = "Rewrite the report. " + (f"Leave out {lists['remove']}. " if lists["remove"] else "") + \
            (f"Include {lists['add']}. " if lists["add"] else "")
        assert gen[2]["content"] == expected.strip()
        assert all(name in FINDINGS for name in split_names(lists["add"] or lists["remove"]))
    for _, row in plan[plan["task"].isin(["easy_language", "summarization", "region_qa"])].iterrows():
        assert row["gen_messages"][0]["content"] == \
            f"Findings text: {reports[row['study_id']]}\n{row['messages'][-1]['content']}"
    settings = request_settings(faithful["params"], faithful["wd"])
    requests, _ = build_requests(faithful["plan"], settings, params_conversation(faithful["params"]))
    assert requests and all(r.prompt.startswith(f"{SYSTEM} {USER}: ") for r in requests)


def test_the_originals_quirks_without_positive_labels(faithful: dict[str, Any]):
    rows = faithful["rows"]
    blank = rows[rows["study_id"].isin(faithful["blank"])]
    complete = blank[(blank["task"] == "findings_qa") & (blank["task_mode"] == "complete")]
    assert len(complete) and (complete["output"] == "").all()
    instruct = blank[blank["task"] != "report_generation"]
    assert len(instruct) and all(". Labels so far: . Write" in h[0]["content"] for h in instruct["history"])
    rg = blank[blank["task"] == "report_generation"]
    assert len(rg) and rg["instruction"].str.contains("Labels so far: no common findings. Write").all()
    answered = rows[~rows["study_id"].isin(faithful["blank"]) & ~rows["is_pseudo_label"]]
    assert (answered["output"] != "").all()
    assert (rows.loc[rows["is_pseudo_label"], "output"] == "").any()  # kept, as the original keeps them


def test_images_are_allocated_like_random_split(faithful: dict[str, Any]):
    plan, notes = faithful["plan"], faithful["summaries"]["plan"]["notes"]
    images = pq.read_table(faithful["wd"].table("images")).to_pandas()
    reports = faithful["reports"].set_index("study_id")["has_findings"]
    eligible = images[images["has_report"] & (images["split"] == "train")]
    n = int(eligible["study_id"].map(reports).fillna(False).astype(bool).sum())
    sizes = [n // 6 + (i < n % 6) for i in range(6)]
    per_task = plan["task"].value_counts()
    assert [per_task["easy_language"], notes["correction_candidates"], per_task["summarization"],
            per_task["region_qa"], per_task["findings_qa"]] == [sizes[0], sizes[1], sizes[2], sizes[4], sizes[5]]
    modes = plan.loc[plan["task"] == "findings_qa", "task_mode"].value_counts()
    assert (modes["binary"], modes["complete"]) == (sizes[5] - sizes[5] // 2, sizes[5] // 2)


def test_failed_pseudo_labels_are_kept_and_the_audit_reported(faithful: dict[str, Any]):
    manifest = read_json(faithful["shards"] / "manifest.json")
    audit = faithful["summaries"]["audit"]
    assert manifest["audit_exclusion"] is False and manifest["excluded"]["rows"] == 0
    assert not (faithful["shards"] / "excluded").exists()
    verdicts = faithful["rows"]["audit"].dropna().map(lambda a: a["verdict"])
    assert (verdicts == "fail").sum() == read_json(faithful["wd"].report("audit-summary.json"))["failed"] > 0
    assert audit["rows"] == int(faithful["rows"]["is_pseudo_label"].sum())
    card = (Path(faithful["summaries"]["release"]["folder"]) / "README.md").read_text()
    assert "Rows that failed are kept" in card and "| fidelity | original |" in card
    assert "Its prompts are the original's" in card


# --- settings and the small pieces ----------------------------------------------------------------

def test_fidelity_resolution(imported: Path):
    def cfg(**plan: Any):
        return load_config({"plan": {"preset": "radialog-v1.1", **plan}})

    assert cfg().fidelity == "improved" and cfg(preset="radialog-v1").fidelity == "improved"
    assert cfg(templates_dir=str(imported)).fidelity == "improved"
    faithful = cfg(preset="radialog-v1", templates_dir=str(imported))
    assert faithful.fidelity == "original" and faithful.splits == ["train"]
    assert cfg(preset="radialog-v1", templates_dir=str(imported), fidelity="improved").splits == \
        ["train", "validate", "test"]
    with pytest.raises(ConfigError, match="built radialog-v1 only"):
        cfg(fidelity="original", templates_dir=str(imported))
    with pytest.raises(ConfigError, match="needs the original prompts: run `radialog-instruct import-prompts"):
        cfg(preset="radialog-v1", fidelity="original")
    with pytest.raises(ConfigError, match="leaves out"):
        cfg(preset="radialog-v1", templates_dir=str(imported), splits=["test"])
    with pytest.raises(ConfigError, match="plan.fidelity 'exact' is unknown"):
        cfg(fidelity="exact")


def test_near_equal_blocks_are_random_splits_lengths():
    u = np.random.default_rng(0).random(17)
    labels = near_equal_blocks(u, ["a", "b", "c", "d", "e", "f"])
    assert [int((labels == x).sum()) for x in "abcdef"] == [3, 3, 3, 3, 3, 2]
    assert list(labels[np.argsort(u)]) == list("aaabbbcccdddeeeff")


def test_fuse_text_is_str_format_with_findings():
    assert fuse_text("Labels: {findings}.", "") == "Labels: ."
    assert fuse_text("a {{b}} c", "x") == "a {b} c"
    assert fuse_text("a {b} c", "x") is None and fuse_text("a { c", "x") is None
