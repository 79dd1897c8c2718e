"""notebooks/browse_samples.ipynb runs in the project's environment (the ``notebook`` extra's
kernel) on the shards of a demo build, every cell within a time bound."""

from __future__ import annotations

import json
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from radialog_instruct.tasks.generation.stage import run_generate
from radialog_instruct.tasks.quality.audit import run_audit
from radialog_instruct.tasks.storage.assemble import run_assemble
from radialog_instruct.tasks.workdir import Workdir

from reference import REPO

NOTEBOOK = REPO / "notebooks" / "browse_samples.ipynb"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_shards(planned_workdir, demo_params, tmp_path_factory) -> Workdir:
    """The demo's shards: the planned demo work dir taken through generate (4 tokens per answer
    instead of 32, as the random model's text is not what the notebook is about), audit and
    assemble (~10 s)."""
    wd = Workdir.at(tmp_path_factory.mktemp("notebook") / "work")
    shutil.copytree(planned_workdir.root, wd.root, ignore=shutil.ignore_patterns("generation"))
    params = {**demo_params, "generate": {**demo_params["generate"], "max_new_tokens": 4}}
    for stage in (run_generate, run_audit, run_assemble):
        stage(params, wd)
    return wd


def output_text(cell: nbformat.NotebookNode) -> str:
    return "".join(out.get("text", "") + out.get("data", {}).get("text/plain", "") for out in cell.outputs)


def test_browse_samples_runs_on_the_demo_build(demo_shards, demo_params, monkeypatch):
    """~5 s: a kernel start and eight small cells."""
    monkeypatch.setenv("RADIALOG_WORKDIR", str(demo_shards.root))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    folder = demo_shards.shards(demo_params["assemble"]["version"])
    manifest = json.loads((folder / "manifest.json").read_text())
    cells = {cell.get("id"): cell for cell in notebook.cells}
    assert str(folder) in output_text(cells["cell-01"])
    excluded = sum(manifest["excluded"]["per_task"].values())
    assert f"{manifest['rows']} released rows, {excluded} excluded rows" in output_text(cells["cell-02"])
    assert "report_generation" in output_text(cells["cell-04"])
    assert not [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs
                if out.output_type == "error"]
