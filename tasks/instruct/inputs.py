"""The tables the plan stage reads, joined once into the frames the builders use."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..labeling.conditions import CONDITION_COLUMNS, FINDINGS, column
from .base import BuildContext
from .fidelity import near_equal_blocks

IMAGE_COLUMNS = ["dicom_id", "subject_id", "study_id", "split", "view_position", "image_path"]
REPORT_COLUMNS = ["study_id", "findings", "impression", "has_findings", "has_impression"]
LABEL_COLUMNS = ["study_id", *CONDITION_COLUMNS, "positive_findings", "structured_findings", "labeler"]

#: Frontal views first when one image has to stand for a study.
VIEW_PREFERENCE = {"PA": 0, "AP": 1}


@dataclass
class PlanInputs:
    #: one row per image of a study with a report, in the planned splits, with report and labels
    images: pd.DataFrame
    #: the equal random part each image with findings belongs to (task name or None)
    parts: pd.Series
    nle: pd.DataFrame
    radrestruct: pd.DataFrame
    #: dicom_id -> predicted report and its labels (correction input), when a file is configured
    predictions: pd.DataFrame | None = None
    notes: dict[str, int] = field(default_factory=dict)

    def part(self, task: str) -> pd.DataFrame:
        return self.images[self.parts == task]


def image_frame(reports: pd.DataFrame, images: pd.DataFrame, labels: pd.DataFrame,
                splits: tuple[str, ...]) -> pd.DataFrame:
    frame = images.loc[images["has_report"] & images["split"].isin(splits), IMAGE_COLUMNS]
    frame = frame.merge(reports[REPORT_COLUMNS], on="study_id", how="left")
    frame = frame.merge(labels[LABEL_COLUMNS], on="study_id", how="left")
    frame["structured_findings"] = frame["structured_findings"].fillna("")
    frame["positive_findings"] = [list(v) if isinstance(v, (list, np.ndarray)) else []
                                  for v in frame["positive_findings"].tolist()]
    # Python strings: builders iterate these columns row by row, which Arrow-backed strings make slow
    text = ["dicom_id", "split", "view_position", "image_path", "findings", "impression", "structured_findings",
            "labeler"]
    frame = frame.astype({c: object for c in text})
    return frame.sort_values(["split", "subject_id", "study_id", "dicom_id"], kind="stable").reset_index(drop=True)


def positive_mask(frame: pd.DataFrame, conditions: tuple[str, ...] = FINDINGS) -> np.ndarray:
    """Boolean matrix (rows x conditions): label == 1."""
    return np.column_stack([frame[column(c)].to_numpy(dtype=float) == 1.0 for c in conditions])


def assign_parts(ctx: BuildContext, frame: pd.DataFrame) -> pd.Series:
    """Each image with findings goes to one of the preset's equal parts, drawn from its dicom_id
    (in the original fidelity: the images in the order of those draws cut into near-equal blocks,
    as ``random_split`` does)."""
    parts = np.asarray(ctx.preset.parts, dtype=object)
    with_findings = frame["has_findings"].fillna(False).astype(bool).to_numpy()
    u = ctx.draw("allocation:part", frame["dicom_id"])
    if ctx.original:
        assigned = pd.Series(None, index=frame.index, dtype=object)
        assigned[with_findings] = near_equal_blocks(u[with_findings], parts)
        return assigned
    idx = np.minimum((u * len(parts)).astype(int), len(parts) - 1)
    assigned = pd.Series(parts[idx], index=frame.index, dtype=object)
    return assigned.where(with_findings, None)


def representative_images(images: pd.DataFrame) -> pd.DataFrame:
    """One image per study: PA before AP before other views, then by dicom_id."""
    order = images.assign(_v=images["view_position"].map(VIEW_PREFERENCE).fillna(9))
    order = order.sort_values(["study_id", "_v", "dicom_id"], kind="stable")
    return order.drop_duplicates("study_id").drop(columns="_v")
