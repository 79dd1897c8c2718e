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
from .columns import no_turns
from .inputs import PlanInputs, positive_mask
from .presets import REPORT_GENERATION

TASK = REPORT_GENERATION


def stratify(ctx: BuildContext, rows: pd.DataFrame) -> pd.DataFrame:
    """Finding rows x epochs (train) plus the sampled no-finding rows, with ``epoch``/``stratum``
    (in no particular order: the builder orders its rows by key)."""
    no_finding = rows[column(NO_FINDING)].to_numpy(dtype=float) == 1.0
    any_positive = positive_mask(rows, CONDITIONS).any(axis=1)
    finding = pd.Series(~no_finding & any_positive, index=rows.index)
    out = []
    for split, group in rows.groupby("split", sort=True):
        epochs = ctx.preset.rg_epochs if split == "train" else 1
        mask = finding.loc[group.index].to_numpy()
        found = group[mask]
        for epoch in range(epochs):
            out.append(found.assign(epoch=epoch, stratum="finding"))
        rest = group[~mask]
        quota = int(len(found) * epochs / 13)
        if quota and len(rest):
            order = np.argsort(ctx.draw(f"{TASK}:no_finding", rest["dicom_id"]), kind="stable")
            out.append(rest.iloc[np.sort(order[:quota])].assign(epoch=0, stratum="no_finding"))
    if not out:
        return rows.iloc[:0].assign(epoch=0, stratum="")
    return pd.concat(out)


def build(ctx: BuildContext, inputs: PlanInputs) -> Iterator[pa.Table]:
    rows = stratify(ctx, inputs.images[inputs.images["has_findings"].fillna(False).astype(bool)])
    template = ctx.templates(TASK)
    for batch, keys in key_batches(rows, keyed(TASK, rows["dicom_id"], rows["epoch"])):
        # the question names the positives as this project reads them, also in the original fidelity
        questions = report_generation_prompts(ctx, findings_listing(batch["structured_findings"], original=False))
        yield finish(mimic_meta(batch, keys, task_mode=batch["stratum"]), task=TASK, ctx=ctx, keys=keys,
                     history=no_turns(len(batch)), instructions=questions, outputs=batch["findings"],
                     template_ids=template.template_id(template.variants("default")[0]))
