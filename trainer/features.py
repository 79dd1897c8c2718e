"""The image grounding hook: precomputed per-dicom features and the projector into the LM.

Every image-grounded prompt carries the slot ``Image information: <IMG>.``. Without a feature
provider the trainer is text-only and ``<IMG>`` stays plain text. With one, ``<IMG>`` becomes an
added tokenizer token that is expanded to ``n_tokens`` placeholder positions; their input
embeddings are replaced by ``projector(features)`` (RaDialog v1: 32 BLIP query embeddings of size
768 through a trainable Linear into the LM's hidden size). The placeholder id is never looked up in
the embedding matrix, so the base model's vocabulary is not resized.

A provider is anything with ``dim``, ``n_tokens``, ``has(dicom_id)`` and ``features(dicom_ids)``
(:class:`FeatureProvider`). The bundled one, :class:`ArrayFeatures`, reads either

* a Parquet file with columns ``dicom_id`` (string) and ``features`` (a list of ``n_tokens * dim``
  floats per row, fixed-size or not), loaded into memory; or
* a NumPy ``X.npy`` of shape (N, n_tokens, dim) or (N, n_tokens * dim), memory-mapped, with the
  ids in ``X.ids.txt`` (one dicom id per line, in row order) - for feature sets larger than memory.

Rows whose dicom has no features are skipped (and counted) when a provider is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch import nn

from ..tasks.errors import InputError

FEATURE_COLUMN = "features"
ID_COLUMN = "dicom_id"
PROJECTOR_FILE = "projector.safetensors"


class FeatureProvider(Protocol):
    dim: int
    n_tokens: int

    def has(self, dicom_id: str | None) -> bool:
        """Whether features exist for this dicom."""

    def features(self, dicom_ids: list[str]) -> torch.Tensor:
        """Float tensor (len(dicom_ids), n_tokens, dim); every id must satisfy :meth:`has`."""


class ArrayFeatures:
    """Features held in a 2-D array (rows = dicoms) plus an id -> row index."""

    def __init__(self, ids: list[str], matrix: np.ndarray, n_tokens: int, source: Path):
        if matrix.shape[0] != len(ids):
            raise InputError(source, f"{matrix.shape[0]} feature rows but {len(ids)} ids",
                             expected="one id per feature row")
        width = int(np.prod(matrix.shape[1:]))
        if width % n_tokens:
            raise InputError(source, f"{width} values per row do not split into train.features.n_tokens={n_tokens}",
                             expected="n_tokens * dim values per dicom")
        self.n_tokens = n_tokens
        self.dim = width // n_tokens
        self._index = {dicom_id: i for i, dicom_id in enumerate(ids)}
        self._matrix = matrix

    def has(self, dicom_id: str | None) -> bool:
        return dicom_id is not None and dicom_id in self._index

    def features(self, dicom_ids: list[str]) -> torch.Tensor:
        rows = np.stack([np.asarray(self._matrix[self._index[d]], dtype=np.float32) for d in dicom_ids])
        return torch.from_numpy(rows.reshape(len(dicom_ids), self.n_tokens, self.dim))


def open_features(path: str | Path, n_tokens: int) -> ArrayFeatures:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "feature file not found", expected="train.features.path: a .parquet or .npy file")
    if path.suffix == ".npy":
        ids_path = path.with_suffix(".ids.txt")
        if not ids_path.exists():
            raise InputError(ids_path, "file not found", expected=f"the dicom ids of {path.name}, one per line")
        ids = ids_path.read_text(encoding="utf-8").split()
        return ArrayFeatures(ids, np.load(path, mmap_mode="r"), n_tokens, path)
    if path.suffix == ".parquet":
        table = pq.read_table(path, columns=[ID_COLUMN, FEATURE_COLUMN])
        column = table[FEATURE_COLUMN].combine_chunks()
        if not pa.types.is_list(column.type) and not pa.types.is_fixed_size_list(column.type):
            raise InputError(path, f"column {FEATURE_COLUMN!r} is {column.type}", expected="a list of floats per row")
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths != lengths[0]).any():
            raise InputError(path, f"rows of {FEATURE_COLUMN!r} differ in length", expected="one length for all rows")
        width = int(lengths[0]) if len(lengths) else n_tokens
        values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        return ArrayFeatures(table[ID_COLUMN].to_pylist(), values.reshape(len(table), width), n_tokens, path)
    raise InputError(path, "unsupported feature file type", expected="a .parquet or .npy file")


def build_projector(kind: str, dim: int, hidden: int) -> nn.Module:
    """``linear`` (RaDialog v1's img_proj_layer) or ``mlp2x_gelu`` (LLaVA-1.5's projector)."""
    if kind == "linear":
        return nn.Linear(dim, hidden)
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))
