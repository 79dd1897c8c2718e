"""The command line: a stage on the demo, one-line errors with exit code 2, label-file."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from radialog_instruct.flows.cli import app
from radialog_instruct.tasks.labeling.conditions import CONDITIONS

from reference import REPO

runner = CliRunner()


def test_ingest_demo_prints_row_counts_and_skips_when_unchanged(tmp_path):
    result = runner.invoke(app, ["ingest", "--demo", "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "reports" in result.output and "300" in result.output and "9862" in result.output
    again = runner.invoke(app, ["ingest", "--demo", "--workdir", str(tmp_path)])
    assert again.exit_code == 0 and "unchanged, skipped" in again.output


def test_bad_input_is_one_line_and_exit_code_2(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder, message in (("nowhere", "sources.mimic_cxr.jpg_root: {} does not exist"),
                            ("empty", "{}/mimic-cxr-2.0.0-metadata.csv.gz: file not found")):
        result = runner.invoke(app, ["ingest", "--demo", "--workdir", str(tmp_path / "work"),
                                     "--set", f"sources.mimic_cxr.jpg_root={tmp_path / folder}"])
        assert result.exit_code == 2
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and message.format(tmp_path / folder) in lines[0]
    assert not (tmp_path / "work").exists()  # checked before anything is written


def test_unknown_setting_is_rejected(tmp_path):
    result = runner.invoke(app, ["plan", "--demo", "--workdir", str(tmp_path), "--set", "plan.presets=x"])
    assert result.exit_code == 2 and "unknown key plan.presets" in result.output


def test_label_file_writes_the_labelers_convention(tmp_path):
    out = tmp_path / "labeled.csv"
    result = runner.invoke(app, ["label-file", str(REPO / "bench" / "data" / "labeler_gold.csv"),
                                 "--column", "report", "-o", str(out), "--labeler", "rules"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["report", *CONDITIONS] and len(frame) == 240
    values = frame[list(CONDITIONS)].to_numpy().ravel()
    assert set(values[~pd.isna(values)]) == {1.0, 0.0, -1.0}
