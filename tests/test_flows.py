"""The Prefect flows end to end on the demo: one build through every stage (ephemeral API),
a second build that skips them all, the same build with generation on a local 2-worker Dask
cluster giving byte-identical shards, and a failing stage that a rerun resumes from."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from radialog_instruct.flows import environment
from radialog_instruct.flows.registry import BUILD_ORDER
from radialog_instruct.tasks.errors import InputError
from radialog_instruct.tasks.stage import stamp_path
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


def test_build_runs_every_stage_and_publishes_artifacts(built, demo_params):
    from prefect.artifacts import Artifact

    wd, results = built
    assert list(results) == list(BUILD_ORDER)
    assert not any(r["skipped"] for r in results.values())
    assert results["generate"]["model_calls"] == results["generate"]["requests"] > 0
    assert (wd.release / demo_params["assemble"]["version"] / "SHA256SUMS.txt").exists()
    rows = Artifact.get("assemble-rows")
    assert rows is not None and "report_generation" in rows.data
    assert "build" in Artifact.get("build-stages").key


def test_second_build_skips_every_stage(built, demo_params):
    from radialog_instruct.flows.build import build_flow

    wd, first = built
    before = shard_bytes(wd, demo_params)
    again = build_flow(demo_params, str(wd.root))
    assert all(r["skipped"] for r in again.values())
    assert again["assemble"]["rows"] == first["assemble"]["rows"]
    assert shard_bytes(wd, demo_params) == before


def test_dask_runner_gives_identical_shards(built, demo_params, tmp_path):
    from radialog_instruct.flows.build import build_flow

    wd, _ = built
    other = Workdir.at(tmp_path / "dask")
    results = build_flow(demo_params, str(other.root), runner="dask", dask_workers=2)
    assert results["generate"]["shards"] == 2
    assert shard_bytes(other, demo_params) == shard_bytes(wd, demo_params)


def test_failed_stage_keeps_earlier_outputs_and_rerun_resumes(built, demo_params, tmp_path):
    import shutil

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
    assert [s for s, r in results.items() if not r["skipped"]] == ["validate", "release"]
    assert Path(results["release"].get("folder", wd.release / demo_params["assemble"]["version"])).exists()
