"""The release stage: a folder ready to upload to PhysioNet, and ``release --verify DIR``.

``<workdir>/release/<version>/`` holds:

* ``data/<split>/part-NNNNN.parquet`` — the shards of ``shards/<version>/`` (never the exclusion
  shards), byte for byte;
* ``data/flat/<split>.json`` — with ``release.include_flat_json``, the samples in the record
  layout of the published v1 file (one record per sample: instruction, input, output, dicom;
  :mod:`tasks.storage.exports`), prompts rendered with the build's conversation format;
* ``README.md`` — the dataset card: tasks, counts per task and split, sources and their terms,
  templates, generator (model, revision, sampling, seed), labeler, seed, pipeline version, audit
  pass rates, checks; a build from the synthetic demo corpus says so at the top;
* ``LICENSE.txt`` — the PhysioNet Credentialed Health Data License 1.5.0 note (MIMIC-derived data
  stays credentialed) and each source with its own terms (:data:`SOURCES`);
* ``LICENSE_Rad-ReStruct.txt`` — with Rad-ReStruct rows, the Rad-ReStruct repository's MIT licence
  file, copied from the configured Rad-ReStruct checkout when it is there;
* ``SHA256SUMS.txt`` — ``<sha256> <relative path>`` per file, one space, sorted by path,
  excluding itself (PhysioNet's own format).

The stage refuses to run unless ``reports/validation.json`` says the validation of exactly these
shards (same manifest sha256) passed. The folder is built under a temporary name; file names are
checked against PhysioNet's rules and the PHI scan (:mod:`.phi_scan`) runs on the data files
before it is renamed into place, so a failing release leaves no folder behind.
:func:`verify_release` rechecks checksums, names and the PHI scan of a folder.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import schemas
from .. import PIPELINE_VERSION
from ..config import section
from ..errors import ConfigError, InputError
from ..instruct.presets import ALL_TASKS, FINDINGS_QA_CODES, TASK_CODES
from ..io import atomic_path, read_json, sha256_file, write_text
from ..quality.audit_report import SUMMARY as AUDIT_SUMMARY
from ..quality.review.agreement import card_lines as review_card_lines
from ..quality.review.agreement import markdown_table
from ..quality.validate import REPORT_JSON as VALIDATION_REPORT
from ..sources.demo import SYNTHETIC_NOTE
from ..stage import StageSpec
from ..storage import assemble
from ..storage.exports import export
from ..storage.shards import SPLIT_DIRS, shard_files
from ..text.conversation import params_conversation
from ..workdir import Workdir
from .phi_scan import Hit, scan_folder

SUMS = "SHA256SUMS.txt"
README = "README.md"
LICENSE = "LICENSE.txt"
RAD_RESTRUCT_LICENSE = "LICENSE_Rad-ReStruct.txt"
DATA = "data"
FLAT = "flat"
#: PhysioNet's rule for file and folder names (each path component).
NAME_RULE = re.compile(r"\w+([\w\-.]*\w+)?", re.ASCII)
MAX_NAME = 100
_SUM_LINE = re.compile(r"([0-9a-f]{64}) (\S.*)")

LICENSES = {
    "physionet-credentialed-1.5.0": (
        "PhysioNet Credentialed Health Data License 1.5.0",
        "https://physionet.org/about/licenses/physionet-credentialed-health-data-license-150/",
        "This dataset contains text derived from de-identified MIMIC-CXR radiology reports and is\n"
        "distributed under MIMIC-CXR's terms: the PhysioNet Credentialed Health Data License 1.5.0.\n\n"
        "Access requires a credentialed PhysioNet account, completed human-subjects research training, and\n"
        "signing the data use agreement of the PhysioNet Credentialed Health Data License 1.5.0. Users must\n"
        "not attempt to re-identify any individual, must not share the data with anyone who has not agreed\n"
        "to these terms, and must not send it to third-party services (including hosted LLM APIs) that may\n"
        "retain or train on it.\n\n"
        "PhysioNet publishes the full license text with the project; this note is not a substitute for it."),
}

#: The data sources of a release: what each is and the terms its part of the rows comes under.
SOURCES: dict[str, tuple[str, str]] = {
    "mimic-cxr": (
        "MIMIC-CXR 2.0.0 reports and MIMIC-CXR-JPG 2.0.0 metadata, split and label tables (PhysioNet; Johnson "
        "et al., 2019): report sections, view positions and image paths",
        "PhysioNet Credentialed Health Data License 1.5.0 (credentialed access, training, data use agreement)"),
    "mimic-nle": (
        "MIMIC-NLE (Kayser et al., 2022; github.com/maximek3/MIMIC-NLE): explanation sentences and diagnosis "
        "labels extracted from MIMIC-CXR reports",
        "the sentences are MIMIC-CXR report text, so MIMIC-CXR's credentialed licence applies; the MIMIC-NLE "
        "repository states no licence of its own"),
    "rad-restruct": (
        "Rad-ReStruct (Pellegrini et al., MICCAI 2023; github.com/ChantalMP/Rad-ReStruct): structured reports "
        "and hierarchical question-answer pairs annotated on the IU X-ray reports; not derived from MIMIC-CXR",
        "MIT licence of the Rad-ReStruct repository (its LICENSE file; shipped here as "
        f"{RAD_RESTRUCT_LICENSE} when the build had it)"),
    "iu-xray": (
        "IU X-ray: the Indiana University chest X-ray collection (reports and images) distributed by the U.S. "
        "National Library of Medicine through Open-i (openi.nlm.nih.gov; Demner-Fushman et al., 2016), which "
        "Rad-ReStruct is built on; no images are included, `image_path` names the Open-i PNG files",
        "Open-i's terms of use for the collection: research use, with attribution to Indiana University and "
        "the National Library of Medicine and a citation of Demner-Fushman et al., 2016; obtain the images "
        "from Open-i under those terms"),
}
#: the sources of each task's rows (all other tasks: MIMIC-CXR only)
TASK_SOURCES = {"nle": ("mimic-cxr", "mimic-nle"), "rad_restruct_qa": ("rad-restruct", "iu-xray")}


@dataclass(frozen=True)
class ReleaseConfig:
    #: PhysioNet title of a MIMIC-derived dataset: must contain "Ext"
    title: str = "MIMIC-CXR-Ext RaDialog-Instruct"
    #: folder name under <workdir>/release/ (null: assemble.version)
    version: str | None = None
    include_flat_json: bool = True
    license: str = "physionet-credentialed-1.5.0"


def load_config(params: dict[str, Any]) -> ReleaseConfig:
    cfg = section(ReleaseConfig, params, "release")
    if "Ext" not in cfg.title:
        raise ConfigError(f"params: release.title {cfg.title!r} must contain \"Ext\" (PhysioNet's rule for "
                          "datasets derived from MIMIC), e.g. \"MIMIC-CXR-Ext RaDialog-Instruct\"")
    if cfg.license not in LICENSES:
        raise ConfigError(f"params: release.license {cfg.license!r} is unknown (known: {', '.join(LICENSES)})")
    if cfg.version is not None and name_problem(cfg.version):
        raise ConfigError(f"params: release.version {cfg.version!r}: {name_problem(cfg.version)}")
    return cfg


def release_dir(params: dict[str, Any], wd: Workdir) -> Path:
    return wd.release / (load_config(params).version or assemble.load_config(params).version)


def stage_spec(params: dict[str, Any], wd: Workdir) -> StageSpec:
    version = assemble.load_config(params).version
    inputs = [wd.shards(version), wd.report(VALIDATION_REPORT), wd.report(AUDIT_SUMMARY)]
    return StageSpec("release", inputs, [release_dir(params, wd)])


# --- checks ------------------------------------------------------------------------------------

def name_problem(name: str) -> str | None:
    if len(name) > MAX_NAME:
        return f"longer than {MAX_NAME} characters"
    if ".." in name or not NAME_RULE.fullmatch(name):
        return "not a valid PhysioNet name (letters, digits, _ - . only; no leading/trailing - or .; no ..)"
    return None


def name_problems(folder: Path) -> list[str]:
    return [f"{p.relative_to(folder).as_posix()}: {problem}" for p in sorted(folder.rglob("*"))
            if (problem := name_problem(p.name))]


def checksum_lines(folder: Path) -> list[str]:
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return [f"{sha256_file(folder / name)} {name}" for name in files if name != SUMS]


def checksum_problems(folder: Path) -> list[str]:
    path = folder / SUMS
    if not path.is_file():
        return [f"{SUMS}: missing"]
    listed: dict[str, str] = {}
    problems = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        match = _SUM_LINE.fullmatch(line)
        if match is None:
            problems.append(f"{SUMS} line {number}: not '<sha256> <path>'")
        else:
            listed[match.group(2)] = match.group(1)
    if list(listed) != sorted(listed):
        problems.append(f"{SUMS}: not sorted by path")
    actual = {line.split(" ", 1)[1]: line.split(" ", 1)[0] for line in checksum_lines(folder)}
    problems += [f"{name}: not listed in {SUMS}" for name in actual if name not in listed]
    problems += [f"{name}: listed in {SUMS} but missing" for name in listed if name not in actual]
    problems += [f"{name}: sha256 differs from {SUMS}" for name, digest in actual.items()
                 if name in listed and listed[name] != digest]
    return problems


def phi_error(folder: Path, hits: list[Hit]) -> InputError:
    return InputError(folder, f"PHI scan found {len(hits)} hit(s); first: {hits[0].line()}",
                      expected="no dates, phone numbers, e-mail addresses, MRN-like numbers or names outside "
                               "MIMIC's ___ masks")


def verify_release(folder: str | Path) -> dict[str, Any]:
    """Recheck a release folder: checksums, names and the PHI scan; InputError on any failure."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "release folder not found")
    problems = checksum_problems(folder) + name_problems(folder)
    if problems:
        raise InputError(folder, f"{len(problems)} problem(s); first: {problems[0]}",
                         expected=f"files matching {SUMS} and PhysioNet's naming rules")
    hits = scan_folder(folder)
    if hits:
        raise phi_error(folder, hits)
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {"folder": str(folder), "files": len(files), "bytes": sum(p.stat().st_size for p in files),
            "checksums": "ok", "names": "ok", "phi_hits": 0}


def check_validation(wd: Workdir, manifest_path: Path) -> dict[str, Any]:
    path = wd.report(VALIDATION_REPORT)
    if not path.exists():
        raise InputError(path, "no validation report", expected="a passing validate run before release")
    report = read_json(path)
    if not report.get("success"):
        raise InputError(path, "the validation failed: the release is blocked",
                         expected="a passing validate run (see validation.md)")
    if report.get("manifest_sha256") != sha256_file(manifest_path):
        raise InputError(path, "the validation is of other shards than the current ones",
                         expected="validate rerun after the last assemble")
    return report


# --- sources -----------------------------------------------------------------------------------

def data_sources(manifest: dict[str, Any]) -> list[str]:
    """The :data:`SOURCES` the rows of the manifest's tasks come from, in :data:`SOURCES` order."""
    used = {src for task in manifest.get("rows_per_task", {}) for src in TASK_SOURCES.get(task, ("mimic-cxr",))}
    return [name for name in SOURCES if name in used]


def _source_folders(params: dict[str, Any]) -> dict[str, Path]:
    sources = params.get("sources") or {}
    cxr, nle, rr = (sources.get(k) or {} for k in ("mimic_cxr", "mimic_nle", "rad_restruct"))
    paths = {"MIMIC-CXR reports": cxr.get("reports"), "MIMIC-CXR-JPG tables": cxr.get("jpg_root"),
             "MIMIC-NLE": nle.get("dir"), "Rad-ReStruct": rr.get("dir")}
    return {name: Path(path) for name, path in paths.items() if path}


def synthetic_sources(params: dict[str, Any]) -> list[str]:
    """The configured sources that are the synthetic demo corpus (a README.md in their folder, or
    the folder above a file, carrying the demo generator's note)."""
    out = []
    for name, path in _source_folders(params).items():
        folder = path if path.is_dir() else path.parent
        readme = folder / "README.md"
        if readme.is_file() and SYNTHETIC_NOTE in readme.read_text(encoding="utf-8", errors="replace"):
            out.append(name)
    return out


def rad_restruct_license(params: dict[str, Any]) -> Path | None:
    """The LICENSE of the Rad-ReStruct checkout that ``sources.rad_restruct.dir`` (its
    ``data/radrestruct`` folder) lies in, if present."""
    folder = _source_folders(params).get("Rad-ReStruct")
    if folder is None:
        return None
    candidates = [folder / "LICENSE", *(parent / "LICENSE" for parent in folder.parents[:2])]
    return next((p for p in candidates if p.is_file()), None)


def sources_section(sources: list[str], synthetic: list[str]) -> list[str]:
    """Markdown lines: each source and its terms, and which sources the build had as synthetic stand-ins."""
    out = [f"- **{SOURCES[name][0]}**. Terms: {SOURCES[name][1]}." for name in sources]
    if synthetic:
        out += ["", f"This build used synthetic stand-ins for: {', '.join(synthetic)} (see the note at the top)."]
    return out


def license_note(cfg: ReleaseConfig, sources: list[str], synthetic: list[str]) -> str:
    lines = [LICENSES[cfg.license][2], "", "Sources and their terms:", ""]
    for name in sources:
        lines.append(f"- {SOURCES[name][0]}.\n  Terms: {SOURCES[name][1]}.")
    if synthetic:
        lines += ["", "This build is a demonstration: " + ", ".join(synthetic) + " were the synthetic demo corpus "
                  "of radialog-instruct (invented text, no real patient data)."]
    return "\n".join(lines)


# --- the dataset card --------------------------------------------------------------------------

def _task_code(task: str) -> str:
    return TASK_CODES.get(task) or "/".join(FINDINGS_QA_CODES.values())


def synthetic_banner(synthetic: list[str]) -> list[str]:
    if not synthetic:
        return []
    return [f"> **Synthetic demo data.** This release was built from radialog-instruct's synthetic demo corpus "
            f"({', '.join(synthetic)}: invented reports, labels and explanations, no real patient data) and is "
            "for trying the pipeline only. Its pseudo labels come from whatever generator the build used "
            "(with `demo-tiny`, a random-weight model: noise). Sources not listed here are the real ones "
            "named under \"Sources and terms\".", ""]


def dataset_card(cfg: ReleaseConfig, manifest: dict[str, Any], validation: dict[str, Any],
                 audit: dict[str, Any] | None, files: list[str], synthetic: list[str] | None = None) -> str:
    per = manifest.get("rows_per_task_split", {})
    tasks = [t for t in ALL_TASKS if t in manifest.get("rows_per_task", {})]
    counts = [[t, _task_code(t), *[per.get(f"{t}/{s}", 0) for s in SPLIT_DIRS], manifest["rows_per_task"][t]]
              for t in tasks]
    splits = manifest.get("rows_per_split", {})
    counts.append(["**all**", "", *[splits.get(s, 0) for s in SPLIT_DIRS], manifest.get("rows", 0)])
    license_name, license_url, _ = LICENSES[cfg.license]
    synthetic = synthetic or []
    sources = data_sources(manifest)
    out = [f"# {cfg.title}", "", *synthetic_banner(synthetic),
           f"Version `{manifest['version']}`, built by radialog-instruct "
           f"{manifest.get('pipeline_version', PIPELINE_VERSION)}.", "",
           f"Instruction-tuning data for chest X-ray assistants: {len(tasks)} image-grounded tasks "
           "(RaDialog-Instruct) built from the sources below. Images are not included: `image_path` points into "
           "MIMIC-CXR-JPG (from PhysioNet) or, for Rad-ReStruct rows, names the IU X-ray PNG files (from Open-i).",
           "", "## Sources and terms", "", *sources_section(sources, synthetic), "",
           "## Files", "",
           "- `data/<split>/part-NNNNN.parquet`: one row per sample (zstd Parquet; columns below). The "
           "`messages` column is the whole conversation, ready for chat-style fine-tuning.",
           *(["- `data/flat/<split>.json`: one record per sample in the layout of the published v1 file "
              "(`instruction`: the whole chat prompt, `input`, `output`, `dicom`), which RaDialog's `finetune.py` "
              "reads. "
              + ("Its prompts are the original's (system prompt and 32-token image slot imported from RaDialog)."
                 if manifest.get("fidelity") == "original" else
                 "Its prompts use this project's system prompt and a one-token image slot; build with "
                 "`plan.fidelity: original` for the original's.")]
             if any(f.startswith(f"{DATA}/{FLAT}/") for f in files) else []),
           f"- `{LICENSE}`: the license note"
           + (f"; `{RAD_RESTRUCT_LICENSE}`: Rad-ReStruct's licence" if RAD_RESTRUCT_LICENSE in files else "")
           + f". `{SUMS}`: SHA-256 of every file.", "",
           "## Tasks and rows", "", *markdown_table(["task", "code", *SPLIT_DIRS, "total"], counts), ""]
    gens = manifest.get("generators", [])
    out += ["## Pseudo labels", "",
            "Region QA, easy language, summarization and correction answers were written by a language model "
            "(`is_pseudo_label` true; the `generation` column records backend, model, revision, sampling "
            "parameters, seed, request hash, finish reason and token counts per row).", ""]
    if gens:
        out += markdown_table(["backend", "model", "revision", "sampling", "seed"],
                      [[g["backend"], g["model"], g["revision"], f"`{g['sampling_params']}`", g["seed"]] for g in gens])
        out.append("")
    out += [f"Labeler(s) of the structured findings: {', '.join(manifest.get('labelers', [])) or 'none'}.", ""]
    if audit:
        kept = "Rows that failed are kept: this build reproduces the original, which had no audit " \
            "(the verdict is in each row's `audit` column)." if manifest.get("audit_exclusion") is False else \
            f"Rows that failed are not in this release unless a reviewer accepted them " \
            f"({manifest.get('excluded', {}).get('rows', 0)} excluded)."
        out += ["### Audit", "",
                f"Every pseudo label was re-labelled with `{audit['labeler']}` and compared with the labels of its "
                f"study; {audit['passed']} of {audit['rows']} passed. {kept}", "",
                *markdown_table(["task", "audited", "passed", "pass rate", "excluded"],
                        [[t, i["rows"], i["passed"], f"{i['pass_rate']:.1%}",
                          manifest.get("excluded", {}).get("per_task", {}).get(t, 0)]
                         for t, i in sorted(audit["tasks"].items())]), "",
                *review_card_lines(audit.get("audit_vs_human"), manifest.get("review"))]
    else:
        out += ["The pseudo labels of this release were not audited.", ""]
    templates = manifest.get("templates", {})
    out += ["## Prompt templates", "", *markdown_table(["task", "version", "digest"],
                                               [[t, v["version"], f"`{v['digest']}`"] for t, v in templates.items()]),
            "", "## Provenance", "",
            *markdown_table(["setting", "value"], [["pipeline version", manifest.get("pipeline_version")],
                                           ["allocation preset", manifest.get("preset")],
                                           ["fidelity", manifest.get("fidelity")],
                                           ["seed", manifest.get("seed")],
                                           ["config hash", f"`{manifest.get('config_hash')}`"]]), "",
            "## Checks", "",
            f"- Great Expectations validation of every shard passed ({validation.get('rows')} rows): required "
            "columns set, value sets, unique sample ids, text lengths, well-formed conversations, generation "
            "provenance exactly on pseudo labels, counts per task within tolerance, no study in two splits.",
            "- PHI scan of all published text: no dates, phone numbers, e-mail addresses, MRN-like numbers or "
            "names outside MIMIC's `___` masks.", "",
            "## Columns", "", *markdown_table(["column", "type", "required"],
                                      [[f.name, f"`{f.type}`", "yes" if not f.nullable else ""]
                                       for f in schemas.INSTRUCT_SAMPLE]), "",
            "## License", "",
            f"{license_name} ({license_url}), because the rows carry MIMIC-CXR report text: access requires "
            "PhysioNet credentialing and the data use agreement, and the data must not be sent to third-party "
            "services such as hosted LLM APIs. Parts from other sources also come under their own terms (see "
            "\"Sources and terms\"). See `LICENSE.txt`.", ""]
    return "\n".join(out)


# --- the stage ---------------------------------------------------------------------------------

def run_release(params: dict[str, Any], wd: Workdir) -> dict[str, Any]:
    cfg = load_config(params)
    version_dir = wd.shards(assemble.load_config(params).version)
    manifest_path = version_dir / assemble.MANIFEST
    if not manifest_path.exists():
        raise InputError(manifest_path, "manifest not found", expected="the output of the assemble stage")
    manifest = read_json(manifest_path)
    validation = check_validation(wd, manifest_path)
    audited = manifest.get("audited") and wd.report(AUDIT_SUMMARY).exists()
    audit = read_json(wd.report(AUDIT_SUMMARY)) if audited else None
    target = release_dir(params, wd)
    synthetic = synthetic_sources(params)
    sources = data_sources(manifest)
    rr_license = rad_restruct_license(params) if "rad-restruct" in sources else None
    with atomic_path(target, directory=True) as tmp:
        for split in SPLIT_DIRS:
            shards = shard_files(version_dir, split)
            for path in shards:
                (tmp / DATA / split).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, tmp / DATA / split / path.name)
            if shards and cfg.include_flat_json:
                export({"flat": tmp / DATA / FLAT / f"{split}.json"}, version_dir, [split],
                       conversation=params_conversation(params))
        if rr_license is not None:
            shutil.copyfile(rr_license, tmp / RAD_RESTRUCT_LICENSE)
        write_text(license_note(cfg, sources, synthetic) + "\n", tmp / LICENSE)
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        write_text(dataset_card(cfg, manifest, validation, audit, files + [README], synthetic), tmp / README)
        problems = name_problems(tmp)
        if problems:
            raise InputError(target, f"{len(problems)} file name(s) PhysioNet rejects; first: {problems[0]}")
        hits = scan_folder(tmp)
        if hits:
            raise phi_error(target, hits)
        write_text("".join(line + "\n" for line in checksum_lines(tmp)), tmp / SUMS)
    written = [p for p in target.rglob("*") if p.is_file()]
    return {"folder": str(target), "title": cfg.title, "files": len(written),
            "bytes": sum(p.stat().st_size for p in written), "rows": manifest.get("rows"),
            "rows_per_split": manifest.get("rows_per_split", {}), "phi_hits": 0}
