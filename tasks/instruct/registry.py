"""Task name -> builder. A builder takes the build context and the plan inputs and returns the
task's plan rows as Arrow tables, batch by batch in key order (see :mod:`.base`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import pyarrow as pa

from . import (
    correction,
    findings_qa,
    impression_generation,
    nle,
    rad_restruct_qa,
    report_generation,
    view_classification,
)
from .base import BuildContext
from .inputs import PlanInputs
from .presets import EASY_LANGUAGE, REGION_QA, SUMMARIZATION
from .replay import build_report_replay

Builder = Callable[[BuildContext, PlanInputs], Iterator[pa.Table]]

BUILDERS: dict[str, Builder] = {
    report_generation.TASK: report_generation.build,
    impression_generation.TASK: impression_generation.build,
    findings_qa.TASK: findings_qa.build,
    rad_restruct_qa.TASK: rad_restruct_qa.build,
    REGION_QA: partial(build_report_replay, task=REGION_QA),
    EASY_LANGUAGE: partial(build_report_replay, task=EASY_LANGUAGE),
    SUMMARIZATION: partial(build_report_replay, task=SUMMARIZATION),
    correction.TASK: correction.build,
    nle.TASK: nle.build,
    view_classification.TASK: view_classification.build,
}
