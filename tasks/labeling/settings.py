"""The ``label:`` section of params.yaml as frozen dataclasses (read with ``tasks.config.section``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError

LABELERS = ("auto", "chexbert", "rules", "provided")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ChexbertConfig:
    """Where the CheXbert weights come from and how inference runs.

    ``checkpoint``: a local ``chexbert.pth``; otherwise ``hub_file`` of the HF hub repo
    ``hub_repo`` at ``hub_revision`` (the f1chexbert package's hosted copy by default).
    ``encoder``: a hub id or a local folder holding the BERT config and tokenizer.
    ``device``: auto | cpu | cuda | cuda:N. ``dtype``: auto (bf16, else fp16, on CUDA; fp32 on CPU)
    | float32 | bfloat16 | float16.
    """

    checkpoint: str | None = None
    hub_repo: str = "StanfordAIMI/RRG_scorers"
    hub_file: str = "chexbert.pth"
    hub_revision: str | None = None
    encoder: str = "bert-base-uncased"
    batch_size: int = 64
    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"params: label.chexbert.batch_size must be >= 1, got {self.batch_size}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"params: label.chexbert.dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"params: label.chexbert.device must be auto, cpu, cuda or cuda:N, got {self.device!r}")


@dataclass(frozen=True)
class LabelConfig:
    """``labeler``: auto | chexbert | rules | provided; ``text_column``: the reports column labelled."""

    labeler: str = "auto"
    text_column: str = "findings"
    chexbert: ChexbertConfig = field(default_factory=ChexbertConfig)

    def __post_init__(self) -> None:
        if self.labeler not in LABELERS:
            raise ConfigError(f"params: label.labeler must be one of {', '.join(LABELERS)}, got {self.labeler!r}")
