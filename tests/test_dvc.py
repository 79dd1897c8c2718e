"""``dvc repro`` on the demo in a temporary git repository: a full build, a second repro that
does nothing, and a template edit that reruns plan onward with generation only for the edited
template's rows (the rest come from the cache)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_process import free_port, wait_until_serving
from reference import REPO

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


@pytest.fixture
def prefect_server(tmp_path) -> Iterator[dict[str, str]]:
    """A local Prefect server: every stage the DVC commands start reports to it (server mode),
    instead of each paying for a temporary API of its own."""
    port = free_port()
    home = tmp_path / "prefect"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(home / "storage"),
           "PREFECT_SERVER_MEMO_STORE_PATH": str(home / "memo_store.toml"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    prefect = str(Path(sys.executable).parent / "prefect")
    server = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_until_serving(url + "/health", server, 90)
        yield {**env, "PREFECT_API_URL": url}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_dvc_repro_twice_then_after_a_template_edit(tmp_path, prefect_server):
    repo = tmp_path / "repo"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, tracked.decode().split("\0")):
        source = REPO / rel
        if source.is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / rel)
    bindir = str(Path(sys.executable).parent)
    env = {**prefect_server, "PATH": bindir + os.pathsep + os.environ["PATH"], "DVC_NO_ANALYTICS": "1",
           "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site")}
    git = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    run(["git", "init", "-q"], repo, env)
    run([*git, "add", "-A"], repo, env)
    run([*git, "commit", "-qm", "snapshot"], repo, env)
    run(["dvc", "init", "-q"], repo, env)

    first = run(["dvc", "repro"], repo, env)
    for stage in ("ingest", "label", "plan", "generate", "audit", "assemble", "validate", "release"):
        assert f"Running stage '{stage}'" in first
    assert (repo / "work" / "shards" / "v1.1.0" / "manifest.json").exists()

    second = run(["dvc", "repro"], repo, env)
    assert "Running stage" not in second and "Data and pipelines are up to date" in second

    template = repo / "prompt_templates" / "summarization.yaml"
    text = template.read_text()
    assert "Summarize this report with bullet points." in text
    template.write_text(text.replace("Summarize this report with bullet points.",
                                     "Summarize this report as short bullet points."))
    third = run(["dvc", "repro"], repo, env)
    assert "Running stage 'ingest'" not in third and "Running stage 'label'" not in third
    assert "Running stage 'plan'" in third and "Running stage 'generate'" in third
    summary = json.loads((repo / "work" / "reports" / "generate-summary.json").read_text())
    assert 0 < summary["model_calls"] < summary["requests"]
    assert summary["cache_hits"] == summary["requests"] - summary["model_calls"]
