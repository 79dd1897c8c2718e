"""Report generation (RG): write the findings section given the image and its structured findings.

Target: the MIMIC-CXR findings section; images of studies without findings are excluded. Rows are
stratified like the original: every image with a positive finding (No Finding not positive and at
least one condition positive) appears ``rg_epochs`` times in train, and no-finding images are
added up to 1/13 of those rows, picked by seeded rank.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from ..labeling.conditions import CONDITIONS, NO_FINDING, column
from .base import BuildContext, findings_listing, finish, key_batches, keyed, mimic_meta, report_generation_prompts
from .columns import no_turns, strings
from .inputs import PlanInputs, positive_mask
from .presets import REPORT_GENERATION

TASK = REPORT_GENERATION


def stratify(ctx: BuildContext, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Finding rows x epochs (train) plus the sampled no-finding rows: (positions in ``rows``, epoch,
    stratum) per task row, in no particular order (the builder orders its rows by key)."""
    no_finding = rows[column(NO_FINDING)].to_numpy(dtype=float) == 1.0
    finding = ~no_finding & positive_mask(rows, CONDITIONS).any(axis=1)
    split = rows["split"].to_numpy(dtype=object)
    positions, epochs, strata = [], [], []
    for name in sorted(set(split)):
        in_split = split == name
        found = np.flatnonzero(in_split & finding)
        n_epochs = ctx.preset.rg_epochs if name == "train" else 1
        for epoch in range(n_epochs):
            positions.append(found)
            epochs.append(np.full(len(found), epoch))
            strata.append(np.full(len(found), "finding", dtype=object))
        rest = np.flatnonzero(in_split & ~finding)
        quota = int(len(found) * n_epochs / 13)
        if quota and len(rest):
            order = np.argsort(ctx.draw(f"{TASK}:no_finding", rows["dicom_id"].iloc[rest]), kind="stable")
            chosen = rest[np.sort(order[:quota])]
            positions.append(chosen)
            epochs.append(np.zeros(len(chosen), dtype=np.int64))
            strata.append(np.full(len(chosen), "no_finding", dtype=object))
    if not positions:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object)
    return np.concatenate(positions), np.concatenate(epochs).astype(np.int64), np.concatenate(strata)


def build(ctx: BuildContext, inputs: PlanInputs) -> Iterator[pa.Table]:
    images = inputs.images[inputs.images["has_findings"].fillna(False).astype(bool)]
    positions, epochs, strata = stratify(ctx, images)
    template = ctx.templates(TASK)
    keys = keyed(TASK, strings(images["dicom_id"]).take(pa.array(positions)), pa.array(epochs))
    for batch, keys, batch_strata in key_batches(images, keys, strata, positions=positions):
        # the question names the positives as this project reads them, also in the original fidelity
        questions = report_generation_prompts(ctx, findings_listing(batch["structured_findings"], original=False))
        yield finish(mimic_meta(batch, keys, task_mode=batch_strata), task=TASK, ctx=ctx, keys=keys,
                     history=no_turns(len(batch)), instructions=questions, outputs=batch["findings"],
                     template_ids=template.template_id(template.variants("default")[0]))
