"""The stage registry: stamps cover every module a stage imports, dvc.yaml is the registry's, stage
functions take no option that bypasses the stamp, settings and source layouts fail fast (one
line, exit code 2, nothing written, no Prefect/torch/GX), a damaged interim file names the stage
that writes it, and stamps record the labeler resolved offline."""

from __future__ import annotations

import inspect
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from radialog_instruct.flows.dvc_yaml import render_dvc_yaml
from radialog_instruct.flows.registry import STAGES, stage_code, stage_spec
from radialog_instruct.flows.stages import run_stage
from radialog_instruct.tasks.config import PROJECT_ROOT
from radialog_instruct.tasks.errors import InputError
from radialog_instruct.tasks.import_graph import closure, module_file
from radialog_instruct.tasks.stage import check, read_stamp, record

LOADED_MODULES = """
import sys
from radialog_instruct.flows.registry import STAGES
STAGES[sys.argv[1]].functions()
print("\\n".join(m for m in sys.modules if m.startswith("radialog_instruct.")))
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STAGES))
def test_every_module_a_stage_imports_is_in_its_stamp(name):
    """What Python really loads for a stage (in a fresh interpreter) is within the import graph."""
    done = subprocess.run([sys.executable, "-c", LOADED_MODULES, name], capture_output=True, text=True, check=True)
    loaded = {module_file(m) for m in done.stdout.split() if not m.startswith("radialog_instruct.flows")}
    loaded.discard(None)
    code = set(stage_code(name))
    assert len(loaded) > 5 and loaded <= code, sorted(map(str, loaded - code))


def test_import_graph_follows_relative_lazy_and_submodule_imports():
    plan = closure(["radialog_instruct.tasks.instruct.plan"])
    # condition names and seeded draws: imported by plan's builders, not by plan.py itself
    assert {"radialog_instruct.tasks.labeling.conditions", "radialog_instruct.tasks.hashing"} <= set(plan)
    assert "radialog_instruct.tasks.labeling" in plan  # a package counts with its __init__
    label = closure(["radialog_instruct.tasks.labeling.stage"])
    assert "radialog_instruct.tasks.labeling.chexbert" in label  # imported inside a function
    names = {p.relative_to(PROJECT_ROOT).as_posix() for p in stage_code("label")}
    assert {"tasks/labeling/phrases/mentions.yaml", "tasks/text/punkt_abbreviations.txt"} <= names
    assert "tasks/quality/audit_report.html.j2" in {p.relative_to(PROJECT_ROOT).as_posix() for p in stage_code("audit")}
    assert "tasks/quality/audit_report.html.j2" not in names


def test_dvc_yaml_is_generated_from_the_registry():
    """Regenerate with `radialog-instruct dvc-yaml` after changing stages, imports or params paths."""
    text = render_dvc_yaml()
    assert (PROJECT_ROOT / "dvc.yaml").read_text(encoding="utf-8") == text
    stages = yaml.safe_load(text)["stages"]
    assert "tasks/hashing.py" in stages["plan"]["deps"] and "tasks/labeling/conditions.py" in stages["plan"]["deps"]
    assert "${workdir}/interim/labels.parquet" in stages["plan"]["deps"]
    assert stages["assemble"]["params"] == list(STAGES["assemble"].sections)
    assert {"${workdir}/cache/generation": {"persist": True, "cache": False}} in stages["generate"]["outs"]


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_functions_take_only_declared_options(name):
    """Everything else a stage depends on reaches it as settings, which its stamp covers."""
    run = STAGES[name].functions().run
    parameters = inspect.signature(run).parameters.values()
    assert [p.name for p in parameters if p.kind is not p.KEYWORD_ONLY] == ["params", "wd"]
    assert {p.name for p in parameters if p.kind is p.KEYWORD_ONLY} == {o.name for o in STAGES[name].options}


# --- fail fast ---------------------------------------------------------------------------------

CLI = str(Path(sys.executable).parent / "radialog-instruct")


def params_file(tmp_path: Path, edit) -> Path:
    """The project's params.yaml, edited, in ``tmp_path`` (its relative paths made absolute)."""
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    for key in ("mimic_cxr", "mimic_nle", "rad_restruct"):
        params["sources"][key] = {k: str(PROJECT_ROOT / v) for k, v in params["sources"][key].items()}
    params["plan"]["templates_dir"] = str(PROJECT_ROOT / params["plan"]["templates_dir"])
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda p: p.update(seed="abc"), "params: seed must be an integer, got 'abc'"),
    (lambda p: p.update(sead=1), "params: unknown top-level key(s) 'sead'"),
    (lambda p: p["plan"].update(presets="x"), "params: unknown key(s) plan.presets"),
    (lambda p: p["generate"].update(chunk_size=0), "params: generate.chunk_size must be at least 1"),
    (lambda p: p["sources"]["mimic_nle"].update(dir="nowhere"), "params: sources.mimic_nle.dir: {tmp}/nowhere does "
                                                                "not exist (expected an existing file or folder)"),
], ids=["seed", "top-level key", "section key", "range", "missing path"])
def test_bad_settings_fail_in_one_line_before_anything_runs(tmp_path, edit, message):
    """Under 3 s of CPU time (about 1 s on an idle machine; wall time on a shared CI box says
    little), without importing Prefect, torch or Great Expectations, and nothing written."""
    path = params_file(tmp_path, edit)
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([CLI, "build", "--params", str(path), "--workdir", str(tmp_path / "work")],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    errors = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert done.returncode == 2 and len(errors) == 1 and done.stdout == ""
    assert errors[0].startswith("error: " + message.format(tmp=tmp_path))
    assert cpu < 3, f"{cpu:.1f} s of CPU"
    assert not (tmp_path / "work").exists()
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"prefect", "torch", "great_expectations"}


def test_a_source_layout_error_names_the_file(tmp_path):
    folder = tmp_path / "radrestruct"
    shutil.copytree(PROJECT_ROOT / "data/demo/rad-restruct/data/radrestruct", folder)
    (folder / "val_ids.json").unlink()
    path = params_file(tmp_path, lambda p: None)
    done = subprocess.run([CLI, "ingest", "--params", str(path), "--workdir", str(tmp_path / "work"),
                           "--set", f"sources.rad_restruct.dir={folder}"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {folder / 'val_ids.json'}: file not found (expected the "
                                                "repository's data/radrestruct folder)"]
    assert not (tmp_path / "work").exists()


def test_a_damaged_interim_file_names_the_stage_that_writes_it(planned_workdir, ingested_copy, demo_params):
    wd = ingested_copy("damaged")
    shutil.copy(planned_workdir.table("labels"), wd.table("labels"))
    shutil.copy(planned_workdir.table("prediction_labels"), wd.table("prediction_labels"))
    wd.table("labels").write_bytes(wd.table("labels").read_bytes()[:100])
    with pytest.raises(InputError) as err:
        run_stage("plan", demo_params, wd, {})
    message = str(err.value)
    assert message.startswith(f"{wd.table('labels')}: not a readable Parquet file") and "\n" not in message
    assert "it is written by the label stage (rerun it with `radialog-instruct label --force`" in message


# --- the resolved labeler ------------------------------------------------------------------------

def test_auto_labeler_is_resolved_offline_and_recorded(ingested_copy, demo_params, network_attempts, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    from radialog_instruct.tasks.labeling.stage import run_label

    wd = ingested_copy("auto-labeler")
    auto = {**demo_params, "label": {**demo_params["label"], "labeler": "auto"}}
    spec = stage_spec("label", auto, wd)
    summary = run_label(auto, wd)
    record(spec, wd, summary)
    assert network_attempts == []
    assert read_stamp(wd, "label")["key"]["extra"] == {"labeler": "rules"}
    assert summary["labeler"] == "rules" and summary["reason"].startswith("auto: CheXbert weights not on this machine")
    assert check(stage_spec("label", auto, wd), wd).fresh
