"""The package installed for real: build the wheel from a copy of the project, install it into a
fresh virtual environment (no editable finder, no checkout on the path) and run
``radialog-instruct build --demo`` in an empty folder: the default params, the prompt templates and
the demo corpus must all come from the installed package.

Installing every dependency from scratch takes minutes, so the fresh environment borrows the
installed dependencies of the environment running the tests: a ``.pth`` file appends that
environment's site-packages after the fresh one's. A plain path line in a ``.pth`` does not make
the folder a site dir, so the ``.pth`` files there - the editable install's finder among them - are
not processed, and ``radialog_instruct`` can only come from the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from reference import REPO

pytestmark = pytest.mark.slow


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def project_copy(target: Path) -> Path:
    """The project's files as a clone (plus files not committed yet) would have them."""
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO).stdout
    for rel in filter(None, listed.split("\0")):
        if (REPO / rel).is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, target / rel)
    return target


def test_the_wheel_builds_the_demo_in_an_empty_folder(tmp_path):
    source = project_copy(tmp_path / "source")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp_path / "dist"),
         str(source)])
    (wheel,) = (tmp_path / "dist").glob("radialog_instruct-*.whl")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (purelib / "zz_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)])

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(HF_HUB_OFFLINE="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    where = run([str(python), "-c", "import radialog_instruct.tasks.config as c; print(c.PROJECT_ROOT)"],
                cwd=empty, env=env).stdout.strip()
    assert Path(where) == purelib / "radialog_instruct"

    cli = str(venv / "bin" / "radialog-instruct")
    run([cli, "build", "--demo"], cwd=empty, env=env, timeout=900)
    work = empty / "work"
    assert (work / "shards" / "v1.1.0" / "manifest.json").exists()
    assert (work / "release" / "v1.1.0" / "SHA256SUMS.txt").exists()
    assert sorted(p.name for p in empty.iterdir()) == ["work"]
    again = run([cli, "build", "--demo"], cwd=empty, env=env).stdout
    assert again.count("skipped (unchanged)") == 8
