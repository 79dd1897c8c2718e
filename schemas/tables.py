"""Arrow schemas of the pipeline's tables (the row contract of ../DESIGN.md)."""

from __future__ import annotations

import pyarrow as pa

from ..tasks.labeling.conditions import CONDITION_COLUMNS
from ..tasks.sources.sections import STUDY_SECTIONS

MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE_TYPE)

# --- ingest ------------------------------------------------------------------------------------

REPORTS = pa.schema([
    ("subject_id", pa.int64()), ("study_id", pa.int64()), ("split", pa.string()),
    ("report_path", pa.string()), ("text_sha1", pa.string()),
    *[(name, pa.string()) for name in STUDY_SECTIONS],
    ("impression_source", pa.string()), ("has_findings", pa.bool_()), ("has_impression", pa.bool_()),
    ("n_images", pa.int32()),
])

IMAGES = pa.schema([
    ("dicom_id", pa.string()), ("subject_id", pa.int64()), ("study_id", pa.int64()),
    ("split", pa.string()), ("view_position", pa.string()), ("image_path", pa.string()),
    ("has_report", pa.bool_()),
])

NLE = pa.schema([
    ("sentence_id", pa.string()), ("study_id", pa.int64()), ("subject_id", pa.int64()),
    ("sentence_index", pa.int32()), ("nle", pa.string()), ("nle_split", pa.string()),
    ("diagnoses", pa.list_(pa.string())), ("evidence", pa.list_(pa.string())),
    ("img_labels", pa.list_(pa.int8())), ("text_source", pa.string()),
    ("resolved", pa.bool_()), ("in_findings", pa.bool_()),
])

RADRESTRUCT_QA = pa.schema([
    ("report_id", pa.string()), ("split", pa.string()), ("qa_index", pa.int32()),
    ("question", pa.string()), ("answers", pa.list_(pa.string())),
    ("history", pa.list_(pa.struct([("question", pa.string()), ("answers", pa.list_(pa.string()))]))),
    ("answer_type", pa.string()), ("options", pa.list_(pa.string())), ("path", pa.string()),
    ("image_ids", pa.list_(pa.string())), ("has_structured_report", pa.bool_()),
])

# --- label -------------------------------------------------------------------------------------

#: One row per study: the 14 condition values (1 / 0 / -1 / null) of the labelled text.
LABELS = pa.schema([
    ("study_id", pa.int64()), ("subject_id", pa.int64()), ("text_column", pa.string()),
    ("text_sha1", pa.string()),
    *[(name, pa.float32()) for name in CONDITION_COLUMNS],
    ("positive_findings", pa.list_(pa.string())), ("structured_findings", pa.string()),
    ("labeler", pa.string()), ("labeler_version", pa.string()),
])

# --- generation --------------------------------------------------------------------------------

#: One row per generated request in a cache chunk file.
GENERATION_CACHE = pa.schema([
    ("request_hash", pa.string()), ("text", pa.string()), ("finish_reason", pa.string()),
    ("prompt_tokens", pa.int32()), ("completion_tokens", pa.int32()), ("latency_s", pa.float64()),
    ("backend", pa.string()), ("model", pa.string()), ("revision", pa.string()),
    ("sampling", pa.string()), ("seed", pa.int64()), ("template_version", pa.string()),
])

GENERATION_TYPE = pa.struct([
    ("backend", pa.string()), ("model", pa.string()), ("revision", pa.string()),
    ("sampling_params", pa.string()), ("seed", pa.int64()), ("request_hash", pa.string()),
    ("finish_reason", pa.string()), ("prompt_tokens", pa.int32()), ("completion_tokens", pa.int32()),
])

AUDIT_TYPE = pa.struct([
    ("verdict", pa.string()), ("reasons", pa.list_(pa.string())),
    ("source_findings", pa.list_(pa.string())), ("output_findings", pa.list_(pa.string())),
    ("kept", pa.list_(pa.string())), ("added", pa.list_(pa.string())), ("dropped", pa.list_(pa.string())),
    ("labeler", pa.string()),
])

# --- plan and samples --------------------------------------------------------------------------

_SAMPLE_CORE = [
    ("sample_id", pa.string()), ("split", pa.string()), ("task", pa.string()), ("task_mode", pa.string()),
    ("source", pa.string()), ("source_ref", pa.string()),
    ("subject_id", pa.int64()), ("study_id", pa.int64()), ("dicom_id", pa.string()),
    ("image_path", pa.string()), ("view_position", pa.string()),
    ("structured_findings", pa.string()), ("labeler", pa.string()),
    ("history", MESSAGES), ("messages", MESSAGES), ("instruction", pa.string()), ("output", pa.string()),
    ("context_mode", pa.string()), ("template_id", pa.string()), ("is_pseudo_label", pa.bool_()),
]

#: Every sample decided before any model runs. Replay rows have ``output``/``messages`` without
#: the answer yet and carry ``gen_messages``: the conversation the generator answers.
PLAN = pa.schema(_SAMPLE_CORE + [
    ("sample_key", pa.string()), ("template_version", pa.string()), ("gen_messages", MESSAGES),
])

#: The released row (``shards/<version>/<split>/part-NNNNN.parquet``).
INSTRUCT_SAMPLE = pa.schema(_SAMPLE_CORE + [
    ("generation", GENERATION_TYPE), ("audit", AUDIT_TYPE), ("pipeline_version", pa.string()),
])

TABLES: dict[str, pa.Schema] = {
    "reports": REPORTS, "images": IMAGES, "nle": NLE, "radrestruct_qa": RADRESTRUCT_QA,
    "labels": LABELS, "plan": PLAN, "generation_cache": GENERATION_CACHE, "instruct_sample": INSTRUCT_SAMPLE,
}
