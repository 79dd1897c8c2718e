"""The plan stage on the demo: every builder's prompt, target and history; allocation presets;
context dropping; Rad-ReStruct balancing on the real sample; seeded per-row determinism."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from radialog_instruct.tasks.augment.balancing import balance_yes_no
from radialog_instruct.tasks.augment.context_dropping import MODES, draw_modes, partial_report
from radialog_instruct.tasks.errors import ConfigError, InputError
from radialog_instruct.tasks.hashing import units
from radialog_instruct.tasks.instruct import base
from radialog_instruct.tasks.instruct.base import BuildContext
from radialog_instruct.tasks.instruct.correction import label_masks
from radialog_instruct.tasks.instruct.findings_qa import binary_questions
from radialog_instruct.tasks.instruct.inputs import IMAGE_COLUMNS, LABEL_COLUMNS, REPORT_COLUMNS, image_frame
from radialog_instruct.tasks.instruct.plan import build_plan, effective_preset, load_config, load_inputs
from radialog_instruct.tasks.instruct.presets import ALL_TASKS, get_preset
from radialog_instruct.tasks.instruct.rad_restruct_qa import expand_images
from radialog_instruct.tasks.instruct.registry import BUILDERS
from radialog_instruct.tasks.io import read_parquet
from radialog_instruct.tasks.labeling.conditions import CONDITIONS, FINDINGS, column
from radialog_instruct.tasks.sources.rad_restruct import load_rad_restruct
from radialog_instruct.tasks.text.conversation import load_conversation
from radialog_instruct.tasks.text.sentences import split_sentences

from reference import RAD_RESTRUCT

IMG = load_conversation().image_prefix


@pytest.fixture(scope="module")
def plan(planned_workdir) -> pd.DataFrame:
    return pd.read_parquet(planned_workdir.table("plan"))


@pytest.fixture(scope="module")
def sources(planned_workdir) -> dict[str, pd.DataFrame]:
    names = ("reports", "images", "labels", "nle")
    frames = {n: pd.read_parquet(planned_workdir.table(n)) for n in names}
    frames["studies"] = frames["reports"].merge(frames["labels"], on=["study_id", "subject_id"])
    return frames


def study(sources, study_id) -> pd.Series:
    return sources["studies"].set_index("study_id").loc[study_id]


def test_all_ten_tasks_are_planned(plan):
    assert set(plan["task"]) == set(ALL_TASKS)
    assert plan["sample_id"].is_unique and plan["sample_key"].is_unique
    assert (plan["template_id"].str.contains("@")).all()


def test_report_generation_rows(plan, sources):
    rows = plan[plan["task"] == "report_generation"]
    for _, row in rows.head(40).iterrows():
        s = study(sources, row["study_id"])
        assert row["output"] == s["findings"] and s["has_findings"]
        findings = s["structured_findings"].lower() or "no common findings"
        assert row["instruction"].startswith(f"{IMG}Predicted Findings: {findings}. You are to act as a radiologist")
        assert len(row["history"]) == 0 and [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert not rows["study_id"].isin(sources["reports"].loc[~sources["reports"]["has_findings"], "study_id"]).any()


def test_report_generation_stratification(plan, sources):
    """Train: finding images twice, no-finding images int(2F/13) (RaDialog's stratified sample)."""
    rows = plan[(plan["task"] == "report_generation") & (plan["split"] == "train")]
    finding = rows[rows["task_mode"] == "finding"]
    assert (finding.groupby("dicom_id").size() == 2).all()
    assert (rows["task_mode"] == "no_finding").sum() == int(len(finding) / 13)
    evaluation = plan[(plan["task"] == "report_generation") & (plan["split"] != "train")]
    assert evaluation["dicom_id"].is_unique


def test_report_based_tasks_carry_the_report_turn(plan, sources):
    for task in ("impression_generation", "nle", "easy_language", "summarization", "correction"):
        rows = plan[plan["task"] == task]
        assert len(rows), task
        for _, row in rows.head(10).iterrows():
            history = list(row["history"])
            assert [m["role"] for m in history] == ["user", "assistant"], task
            assert history[0]["content"].startswith(f"{IMG}Predicted Findings:")
            if task != "correction":  # correction shows the erroneous report instead
                assert history[1]["content"] == study(sources, row["study_id"])["findings"]


def test_impression_generation_target(plan, sources):
    rows = plan[plan["task"] == "impression_generation"]
    for _, row in rows.iterrows():
        s = study(sources, row["study_id"])
        assert row["output"] == s["impression"] != ""


def test_findings_qa_targets(plan, sources):
    rows = plan[plan["task"] == "findings_qa"]
    assert set(rows["task_mode"]) == {"complete", "binary"}
    for _, row in rows.iterrows():
        s = study(sources, row["study_id"])
        if row["task_mode"] == "complete":
            assert row["output"] == (s["structured_findings"].lower() or "no common findings")
        else:
            asked = [c for c in FINDINGS if c.lower() in row["instruction"].lower()
                     or (c == "Pleural Other" and "other pleural abnormality" in row["instruction"])]
            assert len(asked) >= 1
            positive = any(s[column(c)] == 1 for c in asked)
            assert row["output"] == ("yes" if positive else "no")


def test_binary_qa_asks_a_positive_finding_sixty_percent_of_the_time():
    rng = np.random.default_rng(0)
    n = 4000
    frame = pd.DataFrame({column(c): np.where(rng.random(n) < 0.3, 1.0, np.nan) for c in CONDITIONS})
    frame[column("Cardiomegaly")] = 1.0  # every row has a positive finding
    keys = pd.Series([f"k{i}" for i in range(n)])
    ctx = BuildContext(seed=3, preset=get_preset("radialog-v1"))
    conditions, answers = binary_questions(ctx, frame, keys)
    share = list(answers).count("yes") / n
    assert abs(share - 0.6) < 0.03
    for cond, answer, (_, row) in zip(conditions, answers, frame.iterrows()):
        assert (row[column(FINDINGS[cond])] == 1) == (answer == "yes")


def test_context_dropping_modes_are_uniform_and_partial_keeps_half():
    modes = draw_modes(units(11, "context:findings_qa", [f"row{i}" for i in range(30000)]))
    shares = pd.Series(modes).value_counts(normalize=True)
    assert set(shares.index) == set(MODES) and (abs(shares - 1 / 3) < 0.015).all()
    report = "One. Two is here. Three is there. Four. Five ends."
    kept = split_sentences(partial_report(5, "k", report))
    assert len(kept) == math.ceil(5 / 2)
    originals = split_sentences(report)
    assert [originals.index(s) for s in kept] == sorted(originals.index(s) for s in kept)  # order kept


def test_context_modes_in_the_plan(plan, sources):
    dropped = plan[plan["task"].isin(["findings_qa", "region_qa"])]
    for task in ("findings_qa", "region_qa"):
        assert set(dropped.loc[dropped["task"] == task, "context_mode"]) == set(MODES), task
    others = plan[~plan["task"].isin(["findings_qa", "region_qa", "view_classification"])]
    assert set(others["context_mode"]) == {"full"}
    for _, row in dropped.iterrows():
        history = list(row["history"])
        findings = study(sources, row["study_id"])["findings"]
        if row["context_mode"] == "none":
            assert history == [] and row["instruction"].startswith(IMG)
        elif row["context_mode"] == "full":
            assert history[1]["content"] == findings
        else:
            kept = split_sentences(history[1]["content"])
            assert len(kept) == math.ceil(len(split_sentences(findings)) / 2)
            assert all(s in split_sentences(findings) for s in kept)


def test_view_classification_follows_the_image_alone(plan):
    """Image only by default, as RaDialog's evaluation asks it: no report history, context mode none."""
    rows = plan[plan["task"] == "view_classification"]
    assert len(rows) and set(rows["context_mode"]) == {"none"}
    assert all(len(h) == 0 for h in rows["history"]) and rows["instruction"].str.startswith(IMG).all()


def test_view_classification_context_dropping_on_request(planned_workdir, demo_params):
    params = {**demo_params, "plan": {**demo_params["plan"], "view_classification_context": "context_dropping"}}
    cfg = load_config(params)
    ctx = BuildContext(seed=demo_params["seed"], preset=effective_preset(cfg))
    rows = pa.concat_tables(BUILDERS["view_classification"](ctx, load_inputs(ctx, planned_workdir))).to_pandas()
    assert set(rows["context_mode"]) == set(MODES)
    assert any(len(h) == 2 for h in rows["history"])
    default = effective_preset(load_config(demo_params))
    assert "view_classification" not in default.context_dropping and "findings_qa" in default.context_dropping
    with pytest.raises(ConfigError, match="view_classification_context 'report'"):
        load_config({**demo_params, "plan": {**demo_params["plan"], "view_classification_context": "report"}})


def test_view_classification_targets(plan, sources):
    rows = plan[plan["task"] == "view_classification"]
    views = sources["images"].set_index("dicom_id")["view_position"]
    expected = {"PA": "PA", "AP": "AP", "LATERAL": "lateral", "LL": "LL"}
    assert all(expected[views[d]] == out for d, out in zip(rows["dicom_id"], rows["output"]))


def test_nle_rows_keep_only_sentences_of_the_findings(plan, sources):
    rows = plan[plan["task"] == "nle"]
    nle = sources["nle"].set_index("sentence_id")
    for _, row in rows.iterrows():
        record = nle.loc[row["source_ref"]]
        assert record["in_findings"] and row["output"] == " ".join(record["nle"].split())
        assert row["output"] in study(sources, row["study_id"])["findings"]
        assert all(d.lower() in row["instruction"].lower() for d in record["diagnoses"])
    assert len(rows) == int((sources["nle"]["in_findings"] & sources["nle"]["study_id"].isin(
        sources["reports"].loc[sources["reports"]["has_findings"], "study_id"])).sum())


def test_correction_lists_follow_the_labels(plan, sources):
    rows = plan[plan["task"] == "correction"]
    assert set(rows["task_mode"]) <= {"add", "remove", "both"} and len(rows)
    studies = sources["studies"].set_index("study_id")
    for _, row in rows.iterrows():
        reference = int(row["source_ref"].removeprefix("retrieved:s"))
        own = label_masks(studies.loc[[row["study_id"]]])[0]
        predicted = label_masks(studies.loc[[reference]])[0]
        assert 1 <= bin(own ^ predicted).count("1") <= 2
        assert studies.loc[reference, "subject_id"] != row["subject_id"]
        gen = list(row["gen_messages"])
        assert gen[1]["content"] == studies.loc[reference, "findings"] == row["history"][1]["content"]
        adds = [FINDINGS[i] for i in range(len(FINDINGS)) if (own & ~predicted) >> i & 1]
        removes = [FINDINGS[i] for i in range(len(FINDINGS)) if (predicted & ~own) >> i & 1]
        assert row["task_mode"] == ("both" if adds and removes else "add" if adds else "remove")
        if adds:
            assert "must mention this" in gen[2]["content"]
        if removes:
            assert "must not mention this" in gen[2]["content"]


def test_replay_rows_wait_for_the_generator(plan, sources):
    replay = plan[plan["gen_messages"].notna()]
    assert set(replay["task"]) == {"region_qa", "easy_language", "summarization", "correction"}
    assert replay["output"].isna().all() and replay["is_pseudo_label"].all()
    assert all(m[-1]["role"] == "user" for m in replay["messages"])
    for _, row in replay[replay["task"] != "correction"].head(20).iterrows():
        prompt = row["gen_messages"][0]["content"]
        assert prompt == f"Report: {study(sources, row['study_id'])['findings']}\n{row['instruction'].removeprefix(IMG)}"
    regions = plan.loc[plan["task"] == "region_qa", "task_mode"]
    assert set(regions) <= {"heart", "lungs", "pleura", "bones", "devices"}


def test_rad_restruct_rows(plan):
    rows = plan[plan["task"] == "rad_restruct_qa"]
    assert set(rows["task_mode"]) == {"single_choice", "multi_choice"}
    for _, row in rows.head(50).iterrows():
        assert row["instruction"].startswith(IMG) and row["image_path"].endswith(f"{row['dicom_id']}.png")
        assert row["output"] and pd.isna(row["study_id"]) and row["source"] == "rad-restruct"
        assert f"Question: {row['output']}" not in row["instruction"]  # the answer is not in the prompt


def test_rad_restruct_balancing_on_the_real_sample():
    table, _ = load_rad_restruct(RAD_RESTRUCT)
    rows = expand_images(table.to_pandas(), ("train", "validate", "test"))
    balanced, stats = balance_yes_no(rows, seed=1)
    yes_no = balanced[balanced["options"].map(lambda o: set(o) == {"yes", "no"})]
    counts = (yes_no.assign(a=yes_no["answers"].map(lambda a: a[0])).groupby(["split", "path", "a"]).size()
              .unstack(fill_value=0))
    assert (counts["yes"] == counts["no"]).all() and counts["yes"].sum() > 100
    assert set(counts.index.get_level_values("split")) == {"train", "validate", "test"}
    attributes = rows[~rows["options"].map(lambda o: set(o) == {"yes", "no"})]
    assert stats["attribute_kept"] == len(attributes) and attributes.index.isin(balanced.index).all()
    again, _ = balance_yes_no(rows, seed=1)
    assert again.index.equals(balanced.index)  # seeded


def test_rad_restruct_balancing_is_within_each_split():
    """One split's answers never decide what another keeps: train has yes and no for the path, test
    only no; balanced per split, test keeps nothing of it (pooled, test's "no" rows would pad train's)."""
    answers = [("train", "yes")] * 3 + [("train", "no")] * 1 + [("test", "no")] * 2
    rows = pd.DataFrame({"sample_key": [f"k{i}" for i in range(len(answers))], "split": [a[0] for a in answers],
                         "path": "lung_signs_opacity", "options": [["yes", "no"]] * len(answers),
                         "answers": [[a[1]] for a in answers]})
    balanced, stats = balance_yes_no(rows, seed=2)
    assert sorted(zip(balanced["split"], balanced["answers"].map(tuple))) == [("train", ("no",)), ("train", ("yes",))]
    assert stats["yes_no_kept"] == 2 and stats["yes_kept"] == 1
    pooled, _ = balance_yes_no(rows, seed=2, group=("path",))
    assert len(pooled) == 6  # what pooling would keep: 3 yes against 3 no from two splits


def test_allocation_presets_give_the_documented_proportions(planned_workdir, demo_params):
    for name, n_parts in (("radialog-v1", 6), ("radialog-v1.1", 7)):
        ctx = BuildContext(seed=demo_params["seed"], preset=get_preset(name))
        inputs = load_inputs(ctx, planned_workdir)
        with_findings = inputs.images["has_findings"].astype(bool)
        shares = inputs.parts[with_findings].value_counts(dropna=False, normalize=True)
        assert len(shares) == n_parts
        assert (abs(shares - 1 / n_parts) < 0.06).all(), shares  # ~500 images: binomial noise
        assert inputs.parts[~with_findings].isna().all()
        plan = build_plan(ctx, inputs).to_pandas()
        assert set(plan["task"]) == set(get_preset(name).tasks)
        fqa = plan[plan["task"] == "findings_qa"]["task_mode"].value_counts(normalize=True)
        assert abs(fqa["complete"] - 0.5) < 0.15


def test_adding_images_does_not_move_existing_rows(planned_workdir, demo_params):
    ctx = BuildContext(seed=demo_params["seed"], preset=get_preset("radialog-v1.1"))
    inputs = load_inputs(ctx, planned_workdir)
    full = build_plan(ctx, inputs).to_pandas().set_index("sample_key")
    keep = inputs.images["subject_id"] % 3 != 0  # drop a third of the patients
    inputs.images = inputs.images[keep]
    inputs.parts = inputs.parts[keep]
    part = build_plan(ctx, inputs).to_pandas().set_index("sample_key")
    stable = part.index[part["task"].isin(["findings_qa", "view_classification", "impression_generation",
                                           "easy_language", "summarization", "region_qa"])]
    for col in ("instruction", "output", "template_id", "context_mode", "task_mode"):
        assert part.loc[stable, col].equals(full.loc[stable, col]), col


@pytest.mark.parametrize("preset", ["radialog-v1.1", "radialog-v1"])
def test_batches_build_the_same_plan(planned_workdir, demo_params, monkeypatch, preset):
    """Builders assemble their text batch by batch: small batches give the same rows in the same order."""
    ctx = BuildContext(seed=demo_params["seed"], preset=get_preset(preset))
    whole = build_plan(ctx, load_inputs(ctx, planned_workdir))
    monkeypatch.setattr(base, "BATCH_ROWS", 37)
    assert build_plan(ctx, load_inputs(ctx, planned_workdir)).equals(whole)


def test_labels_with_two_rows_for_a_study_are_refused(planned_workdir):
    """The images get one label row per study: a duplicate would silently double the study's images."""
    reports = read_parquet(planned_workdir.table("reports"), columns=REPORT_COLUMNS)
    images = read_parquet(planned_workdir.table("images"), columns=[*IMAGE_COLUMNS, "has_report"])
    labels = read_parquet(planned_workdir.table("labels"), columns=LABEL_COLUMNS)
    splits = ("train", "validate", "test")
    shown = images.to_pandas()
    assert len(image_frame(reports, images, labels, splits)) == int((shown["has_report"]
                                                                     & shown["split"].isin(splits)).sum())
    doubled = pa.concat_tables([labels, labels.slice(3, 1)])
    with pytest.raises(InputError, match=r"interim/labels.parquet has more than one row for a study"):
        image_frame(reports, images, doubled, splits)
