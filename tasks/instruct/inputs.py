"""The tables the plan stage reads, joined once into the frames the builders use."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError
from ..labeling.conditions import CONDITION_COLUMNS, FINDINGS, column
from .base import BuildContext
from .fidelity import near_equal_blocks

IMAGE_COLUMNS = ["dicom_id", "subject_id", "study_id", "split", "view_position", "image_path"]
REPORT_COLUMNS = ["study_id", "findings", "impression", "has_findings", "has_impression"]
#: the report columns joined to the images (the texts follow by row number)
REPORT_FLAGS = ["study_id", "has_findings", "has_impression"]
LABEL_COLUMNS = ["study_id", *CONDITION_COLUMNS, "structured_findings", "labeler"]

#: Frontal views first when one image has to stand for a study.
VIEW_PREFERENCE = {"PA": 0, "AP": 1}


@dataclass
class PlanInputs:
    #: one row per image of a study with a report, in the planned splits, with report and labels
    #: (strings stay Arrow-backed: builders hand them to Arrow, never iterate them)
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


def image_frame(reports: pa.Table, images: pa.Table, labels: pa.Table, splits: tuple[str, ...]) -> pd.DataFrame:
    """The images with a report in ``splits`` joined with their report and labels, ordered by split,
    subject, study and image."""
    keep = pc.and_(images.column("has_report"), pc.is_in(images.column("split"), value_set=pa.array(splits)))
    texts = [c for c in REPORT_COLUMNS if c not in REPORT_FLAGS]
    frame = images.filter(keep).select(IMAGE_COLUMNS).replace_schema_metadata(None)  # default pandas types
    frame = frame.take(pc.sort_indices(frame, [(name, "ascending") for name in ("split", "subject_id", "study_id",
                                                                              "dicom_id")]))
    study = frame.column("study_id")
    # left joins on study_id (one report and one label row per study): a lookup and a take per column
    at = pc.index_in(study, value_set=_unique_studies(reports, "reports"))
    at_label = pc.index_in(study, value_set=_unique_studies(labels, "labels"))
    for name in REPORT_FLAGS[1:]:
        frame = frame.append_column(name, reports.column(name).take(at))
    for name in LABEL_COLUMNS[1:]:
        frame = frame.append_column(name, labels.column(name).take(at_label))
    for name in texts:
        frame = frame.append_column(name, reports.column(name).take(at))
    out = frame.to_pandas()
    out["structured_findings"] = out["structured_findings"].fillna("")
    return out


def _unique_studies(table: pa.Table, name: str) -> pa.ChunkedArray:
    studies = table.column("study_id")
    if pc.count_distinct(studies).as_py() != len(studies):
        raise InputError(None, f"interim/{name}.parquet has more than one row for a study", expected="one row per study")
    return studies


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
    """One image per study: PA before AP before other views, then by dicom_id (decided on those
    columns alone; the chosen rows are taken at the end)."""
    order = pd.DataFrame({"study_id": images["study_id"].to_numpy(),
                          "_v": images["view_position"].map(VIEW_PREFERENCE).fillna(9).to_numpy(),
                          "dicom_id": images["dicom_id"].to_numpy(), "_at": np.arange(len(images))})
    order = order.sort_values(["study_id", "_v", "dicom_id"], kind="stable").drop_duplicates("study_id")
    return images.iloc[order["_at"].to_numpy()]
