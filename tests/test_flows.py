"""The Prefect flows end to end on the demo: one build through every stage (ephemeral API), a second
build that skips them all, a copied work dir that is still fresh, the same build with generation
on a local 2-worker Dask cluster giving byte-identical shards, a failing stage that a rerun resumes
from, deleted and damaged generation chunks regenerated alone, code changes that rerun exactly the
stages importing the changed module, and freshness decisions made without the network."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from radialog_instruct.flows import environment
from radialog_instruct.flows.registry import BUILD_ORDER, STAGES, freshness, stage_code
from radialog_instruct.tasks import stage as stamps
from radialog_instruct.tasks.errors import InputError
from radialog_instruct.tasks.generation.cache import GenerationCache
from radialog_instruct.tasks.import_graph import PACKAGE_ROOT
from radialog_instruct.tasks.io import read_json
from radialog_instruct.tasks.stage import read_stamp, stamp_path
from radialog_instruct.tasks.workdir import Workdir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine():
    with environment.quiet_engine():
        yield


@pytest.fixture(scope="module")
def built(engine, demo_params, tmp_path_factory) -> tuple[Workdir, dict]:
    from radialog_instruct.flows.build import build_flow

    wd = Workdir.at(tmp_path_factory.mktemp("flow-build"))
    return wd, build_flow(demo_params, str(wd.root))


def shard_bytes(wd: Workdir, params: dict) -> dict[str, bytes]:
    folder = wd.shards(params["assemble"]["version"])
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def copied(wd: Workdir, target) -> Workdir:
    """A copy of ``wd`` as ``cp -r`` makes it: same bytes, new paths and modification times."""
    shutil.copytree(wd.root, target, copy_function=shutil.copy)
    return Workdir.at(target)


def ran(results: dict) -> list[str]:
    return [stage for stage, summary in results.items() if not summary["skipped"]]


def test_build_runs_every_stage_and_publishes_artifacts(built, demo_params):
    from prefect.artifacts import Artifact

    wd, results = built
    assert list(results) == list(BUILD_ORDER)
    assert not any(r["skipped"] for r in results.values())
    assert {r["rerun"] for r in results.values()} == {"first run (no stamp)"}
    assert results["generate"]["model_calls"] == results["generate"]["requests"] > 0
    assert (wd.release / demo_params["assemble"]["version"] / "SHA256SUMS.txt").exists()
    rows = Artifact.get("assemble-rows")
    assert rows is not None and "report_generation" in rows.data
    table = json.loads(Artifact.get("build-stages").data)
    assert [row["stage"] for row in table] == list(BUILD_ORDER) and not any(row["skipped"] for row in table)


def test_second_build_skips_every_stage(built, demo_params):
    from radialog_instruct.flows.build import build_flow

    wd, first = built
    before = shard_bytes(wd, demo_params)
    again = build_flow(demo_params, str(wd.root))
    assert ran(again) == []
    assert again["assemble"]["rows"] == first["assemble"]["rows"]
    assert shard_bytes(wd, demo_params) == before


def test_a_copied_work_dir_is_fresh(built, tmp_path):
    """Stamps name paths relative to the work dir and fingerprint its files by content; the CLI
    decides without importing Prefect, torch or Great Expectations."""
    wd = copied(built[0], tmp_path / "copy")
    cli = str(Path(sys.executable).parent / "radialog-instruct")
    done = subprocess.run([cli, "build", "--demo", "--workdir", str(wd.root)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("skipped (unchanged)") == len(BUILD_ORDER)
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "radialog_instruct.flows.registry" in imported and not imported & {"prefect", "torch", "great_expectations"}
    for name in BUILD_ORDER:  # (summaries may name folders: they are reports, not part of the decision)
        stamp = read_stamp(wd, name)
        assert str(built[0].root) not in json.dumps([stamp["key"], stamp["outputs"]]), name


def test_dask_runner_gives_identical_shards(built, demo_params, tmp_path):
    from radialog_instruct.flows.build import build_flow

    wd, _ = built
    other = Workdir.at(tmp_path / "dask")
    results = build_flow(demo_params, str(other.root), runner="dask", dask_workers=2)
    assert results["generate"]["shards"] == 2
    assert shard_bytes(other, demo_params) == shard_bytes(wd, demo_params)


def test_failed_stage_keeps_earlier_outputs_and_rerun_resumes(built, demo_params, tmp_path):
    from radialog_instruct.flows.build import build_flow

    wd = Workdir.at(tmp_path / "resume")
    shutil.copytree(built[0].root, wd.root, ignore=shutil.ignore_patterns("release", "stamps"))
    broken = copy.deepcopy(demo_params)
    broken["validate"]["min_rows"]["report_generation"] = 10**9  # the validation must fail
    with pytest.raises(InputError, match="validation failed"):
        build_flow(broken, str(wd.root))
    for stage in ("ingest", "label", "plan", "generate", "audit", "assemble"):
        assert stamp_path(wd, stage).exists(), stage
    assert not stamp_path(wd, "validate").exists() and not stamp_path(wd, "release").exists()
    assert not (wd.release / demo_params["assemble"]["version"]).exists()  # the release was blocked
    results = build_flow(demo_params, str(wd.root))
    assert ran(results) == ["validate", "release"]
    assert results["release"]["folder"] == str(wd.release / demo_params["assemble"]["version"])
    assert (wd.release / demo_params["assemble"]["version"] / "SHA256SUMS.txt").exists()


def test_deleted_and_unreadable_chunks_are_regenerated_alone(built, demo_params, tmp_path):
    from radialog_instruct.flows.build import build_flow

    wd = copied(built[0], tmp_path / "chunks")
    cache = GenerationCache.of(wd)
    chunks = cache.chunk_files()
    assert len(chunks) == 2  # 284 demo requests, 256 per chunk
    index = cache.index()
    victim = min(chunks, key=lambda p: p.stat().st_size)
    rows, victim_rows = len(index.chunk_of), sum(p == victim for p in index.chunk_of.values())
    assert 0 < victim_rows < rows
    victim.unlink()

    results = build_flow(demo_params, str(wd.root))
    assert ran(results)[:1] == ["generate"] and results["generate"]["rerun"].startswith("output missing: cache/generation/")
    assert results["generate"]["model_calls"] == victim_rows
    assert results["generate"]["cache_hits"] == rows - victim_rows
    assert shard_bytes(wd, demo_params) == shard_bytes(built[0], demo_params)

    regenerated = next(p for p in cache.chunk_files() if p not in chunks)
    regenerated.write_bytes(regenerated.read_bytes()[: regenerated.stat().st_size // 2])  # damaged
    results = build_flow(demo_params, str(wd.root))
    assert results["generate"]["rerun"] == f"output changed: cache/generation/{regenerated.name}"
    assert results["generate"]["unreadable_chunks"] == [regenerated.name]
    assert (cache.directory / f"{regenerated.name}.unreadable").exists() and not regenerated.exists()
    assert results["generate"]["model_calls"] == victim_rows
    assert shard_bytes(wd, demo_params) == shard_bytes(built[0], demo_params)


def touched(monkeypatch: pytest.MonkeyPatch, *relative: str) -> None:
    """Make the stamps see new contents of project files (as after editing a comment)."""
    paths = {PACKAGE_ROOT / r for r in relative}
    real = stamps.file_digest
    monkeypatch.setattr(stamps, "file_digest", lambda p: ("0" * 64) if p in paths else real(p))


def test_touching_a_module_reruns_exactly_the_stages_that_import_it(built, demo_params, tmp_path, monkeypatch):
    from radialog_instruct.flows.build import build_flow

    wd = copied(built[0], tmp_path / "touched")
    importers = {name: {p.relative_to(PACKAGE_ROOT).as_posix() for p in stage_code(name)} for name in STAGES}

    with monkeypatch.context() as patch:
        touched(patch, "tasks/labeling/conditions.py")  # condition names: every stage's code has them
        for name in BUILD_ORDER:
            _, state = freshness(name, demo_params, wd)
            assert state.reasons == ("code changed: tasks/labeling/conditions.py",), name

    unrelated = "trainer/loop.py"
    assert not any(unrelated in importers[name] for name in BUILD_ORDER) and unrelated in importers["train"]
    with monkeypatch.context() as patch:
        touched(patch, unrelated)
        assert ran(build_flow(demo_params, str(wd.root))) == []

    module = "tasks/quality/verdicts.py"
    expected = [name for name in BUILD_ORDER if module in importers[name]]
    assert expected == ["audit", "assemble", "validate", "release"]  # assemble renders the audit report
    with monkeypatch.context() as patch:
        touched(patch, module)
        results = build_flow(demo_params, str(wd.root))
    assert ran(results) == expected and results["audit"]["rerun"] == f"code changed: {module}"
    assert shard_bytes(wd, demo_params) == shard_bytes(built[0], demo_params)


def test_freshness_makes_no_network_call(built, demo_params, network_attempts):
    """With ``labeler: auto`` the label and audit stamps hold the labeler resolved from this
    machine alone; deciding every stage's freshness opens no connection."""
    auto = {**demo_params, "label": {**demo_params["label"], "labeler": "auto"}}
    wd = built[0]
    for name in BUILD_ORDER:
        spec, state = freshness(name, auto, wd)
        if name in ("label", "audit"):
            assert spec.extra_key["labeler"] == "rules"  # no CheXbert weights on the test machine
            assert state.reasons == ("settings changed: label.labeler",)
    assert network_attempts == []
    assert read_stamp(wd, "label")["key"]["extra"] == {"labeler": "rules"}
    assert read_json(wd.report("label-summary.json"))["labeler"] == "rules"
