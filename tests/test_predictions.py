"""``sources.predictions``: predicted reports (a CSV with columns dicom_id and report, as a report
generator writes them) labelled by the label stage and used by the correction task in place of
retrieved reports; a changed file reruns the label stage."""

from __future__ import annotations

import pandas as pd
import pytest

from radialog_instruct.flows.registry import stage_spec
from radialog_instruct.tasks.errors import InputError
from radialog_instruct.tasks.instruct.plan import run_plan
from radialog_instruct.tasks.labeling.stage import run_label
from radialog_instruct.tasks.stage import check, record

PREDICTED = "Large right pleural effusion. The cardiac silhouette is enlarged."


@pytest.fixture(scope="module")
def predicted(ingested_copy, demo_params, tmp_path_factory):
    """The demo work dir labelled and planned with a predicted report for every image."""
    wd = ingested_copy("predictions")
    images = pd.read_parquet(wd.table("images"))
    csv = tmp_path_factory.mktemp("predictions") / "predicted_reports.csv"
    pd.DataFrame({"dicom_id": images["dicom_id"], "report": PREDICTED}).to_csv(csv, index=False)
    params = {**demo_params, "sources": {**demo_params["sources"], "predictions": str(csv)}}
    summary = run_label(params, wd)
    record(stage_spec("label", params, wd), wd, summary)
    run_plan(params, wd)
    return wd, params, csv, images, summary


def test_predicted_reports_are_labelled(predicted):
    wd, _, _, images, summary = predicted
    labels = pd.read_parquet(wd.table("prediction_labels"))
    assert summary["predictions"] == len(images) == len(labels)
    assert list(labels["dicom_id"]) == list(images["dicom_id"]) and set(labels["report"]) == {PREDICTED}
    assert (labels["pleural_effusion"] == 1).all() and (labels["cardiomegaly"] == 1).all()


def test_correction_corrects_the_predicted_reports(predicted):
    wd = predicted[0]
    plan = pd.read_parquet(wd.table("plan"))
    correction = plan[plan["task"] == "correction"]
    assert len(correction) > 10
    assert (correction["source_ref"] == "predictions:" + correction["dicom_id"]).all()
    for history, gen in zip(correction["history"], correction["gen_messages"]):
        assert history[-1]["content"] == PREDICTED and gen[1]["content"] == PREDICTED
    # the prediction names both findings: every row asks to remove one unless the image has it too
    removes = correction["task_mode"].isin(["remove", "both"])
    assert removes.mean() > 0.5


def test_a_changed_predictions_file_reruns_the_label_stage(predicted):
    wd, params, csv, _, _ = predicted
    assert check(stage_spec("label", params, wd), wd).fresh
    original = csv.read_text()
    try:
        csv.write_text(original.replace(PREDICTED, "No acute findings."))
        state = check(stage_spec("label", params, wd), wd)
        assert not state.fresh and state.reasons == (f"inputs changed: {csv.as_posix()}",)
    finally:
        csv.write_text(original)


@pytest.mark.parametrize("content, problem", [
    ("report\nLarge effusion.\n", "no column 'dicom_id' (expected columns dicom_id and report)"),
    ("dicom_id,report\na,Effusion.\na,Edema.\n", "dicom_id a appears twice (expected one predicted report per image)"),
    ("dicom_id,text\na,Effusion.\n", "no column 'report'"),
])
def test_bad_predictions_files_are_one_line_errors(ingested_copy, demo_params, tmp_path, content, problem):
    csv = tmp_path / "predictions.csv"
    csv.write_text(content)
    params = {**demo_params, "sources": {**demo_params["sources"], "predictions": str(csv)}}
    with pytest.raises(InputError) as err:
        run_label(params, ingested_copy("bad-predictions"))
    assert str(err.value).startswith(f"{csv}: {problem}")
