"""PhysioNet's rules the release enforces: the "Ext" title of MIMIC-derived data, file names, the
checksum file's format."""

from __future__ import annotations

from pathlib import Path

import pytest

from radialog_instruct.tasks.errors import ConfigError
from radialog_instruct.tasks.release.physionet import SUMS, checksum_lines, checksum_problems, load_config, name_problem


def test_title_must_contain_ext():
    assert load_config({"release": {}}).title == "MIMIC-CXR-Ext RaDialog-Instruct"
    with pytest.raises(ConfigError, match='must contain "Ext"'):
        load_config({"release": {"title": "RaDialog-Instruct"}})
    with pytest.raises(ConfigError, match="license 'cc-by-4.0' is unknown"):
        load_config({"release": {"license": "cc-by-4.0"}})
    with pytest.raises(ConfigError, match="release.version '../v1'"):
        load_config({"release": {"version": "../v1"}})


@pytest.mark.parametrize("name", ["part-00000.parquet", "SHA256SUMS.txt", "v1.1.0", "data", "a"])
def test_valid_names(name: str):
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["notes from Jane.txt", ".hidden", "trailing-", "a..b", "ümlaut.txt", "x" * 101,
                                  "part_1.parquet~"])
def test_invalid_names(name: str):
    assert name_problem(name) is not None


def test_checksum_file_format(tmp_path: Path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "b.json").write_text("[]\n")
    (tmp_path / "README.md").write_text("# x\n")
    lines = checksum_lines(tmp_path)
    assert [line.split(" ")[1] for line in lines] == ["README.md", "data/b.json"]
    assert all(len(line.split(" ")[0]) == 64 for line in lines)
    (tmp_path / SUMS).write_text("\n".join(reversed(lines)) + "\n")
    assert checksum_problems(tmp_path) == [f"{SUMS}: not sorted by path"]
    (tmp_path / SUMS).write_text("\n".join(lines) + "\n")
    assert checksum_problems(tmp_path) == []
    (tmp_path / "data" / "b.json").write_text("[1]\n")
    assert checksum_problems(tmp_path) == [f"data/b.json: sha256 differs from {SUMS}"]
