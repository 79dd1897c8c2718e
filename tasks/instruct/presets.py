"""Allocation presets: which tasks exist and how images are shared between them.

``radialog-v1`` follows the original RaDialog code (data/create_data.py): the train images with a
findings section are split into six equal random parts in the order easy language, (a part the
original left unused because correction inputs came from a separate, unpublished file - we use it
for correction), summarization, (a part the original left unused: explanations come from
MIMIC-NLE), region QA and findings QA, the last halved into complete and binary QA. Binary QA asks
about a positive finding with probability 0.6. Report generation repeats every image with a
positive finding twice (two "simulated epochs") and adds no-finding images amounting to 1/13 of
those rows (~1/14 of the task). With ``plan.fidelity: original`` (and the prompts imported by
``import-prompts``) the parts are exactly equal blocks as ``random_split`` makes them and the
records are the original's (:mod:`.fidelity`); otherwise this project's readings apply.

``radialog-v1.1`` (the default) adds impression generation, view classification (both drawing on
parts of their own), Rad-ReStruct QA and context dropping for findings QA, region QA and view
classification (which ``plan.view_classification_context: image_only``, the default, takes out
again: view questions follow the image alone). The published v1.1.0 has about 580k samples (no per-task counts were published).
On the MIMIC-sized synthetic corpus of bench/scale_corpus.py (27% of studies without findings,
CheXpert labels drawn at MIMIC-CXR-JPG's published frequencies) this preset plans 726,796 samples,
379,166 of them report generation, which alone accounts for the gap to the published count (see
bench/README.md).

Parts are drawn per image from (seed, dicom_id), so adding images never moves existing ones.
Report-generation epochs apply to the train split only; evaluation splits get one row per image.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

REPORT_GENERATION = "report_generation"
IMPRESSION_GENERATION = "impression_generation"
FINDINGS_QA = "findings_qa"
RAD_RESTRUCT_QA = "rad_restruct_qa"
REGION_QA = "region_qa"
EASY_LANGUAGE = "easy_language"
SUMMARIZATION = "summarization"
CORRECTION = "correction"
NLE = "nle"
VIEW_CLASSIFICATION = "view_classification"

ALL_TASKS = (REPORT_GENERATION, IMPRESSION_GENERATION, FINDINGS_QA, RAD_RESTRUCT_QA, REGION_QA,
             EASY_LANGUAGE, SUMMARIZATION, CORRECTION, NLE, VIEW_CLASSIFICATION)

#: Tasks whose answers are pseudo ground truth from the generator ("replay").
REPLAY_TASKS = (REGION_QA, EASY_LANGUAGE, SUMMARIZATION, CORRECTION)

#: task_type codes of the published JSON files.
TASK_CODES = {
    REPORT_GENERATION: "RG", IMPRESSION_GENERATION: "IG", RAD_RESTRUCT_QA: "RR", REGION_QA: "RQA",
    EASY_LANGUAGE: "EL", SUMMARIZATION: "SU", CORRECTION: "CO", NLE: "RE", VIEW_CLASSIFICATION: "VC",
}
FINDINGS_QA_CODES = {"complete": "CPaQA", "binary": "CPbQA"}


@dataclass(frozen=True)
class Preset:
    name: str
    #: equal random parts of the images with findings; None = a part deliberately left unused
    parts: tuple[str | None, ...]
    tasks: tuple[str, ...]
    rg_epochs: int = 2
    binary_positive_p: float = 0.6
    context_dropping: tuple[str, ...] = ()


PRESETS: dict[str, Preset] = {
    "radialog-v1": Preset(
        name="radialog-v1",
        parts=(EASY_LANGUAGE, CORRECTION, SUMMARIZATION, None, REGION_QA, FINDINGS_QA),
        tasks=(REPORT_GENERATION, FINDINGS_QA, REGION_QA, EASY_LANGUAGE, SUMMARIZATION, CORRECTION, NLE),
    ),
    "radialog-v1.1": Preset(
        name="radialog-v1.1",
        parts=(EASY_LANGUAGE, CORRECTION, SUMMARIZATION, REGION_QA, FINDINGS_QA, IMPRESSION_GENERATION,
               VIEW_CLASSIFICATION),
        tasks=ALL_TASKS,
        context_dropping=(FINDINGS_QA, REGION_QA, VIEW_CLASSIFICATION),
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"params: plan.preset {name!r} is unknown (known: {', '.join(PRESETS)})") from None
