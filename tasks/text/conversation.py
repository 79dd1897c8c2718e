"""The Vicuna v1.1 conversation format, read from ``prompt_templates/conversation.yaml`` (or from
the ``conversation.yaml`` of a template folder, ``plan.templates_dir``, e.g. the imported original).

``render`` turns ``[{"role": "user"|"assistant", "content": ...}, ...]`` into the prompt text
``<system> USER: <q1> ASSISTANT: <a1></s>USER: <q2> ASSISTANT:``; ``segments`` gives the same text
cut into pieces flagged as assistant answers, which is what loss masking needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_PACKAGE = "radialog_instruct.prompt_templates"

Message = Mapping[str, str]


@dataclass(frozen=True)
class Conversation:
    name: str
    version: str
    system: str
    user: str
    assistant: str
    sep: str
    sep2: str
    image_prefix: str
    image_token: str

    def segments(self, messages: Sequence[Message], *, open_turn: bool = True) -> list[tuple[str, bool]]:
        """``(text, is_answer)`` pieces whose concatenation is :meth:`render`'s output.

        An assistant turn is split into its ``ASSISTANT: `` header (not an answer) and its
        content plus ``sep2`` (the answer, end-of-turn included). With ``open_turn`` a final
        ``ASSISTANT:`` is appended when the last message is a user turn.
        """
        out: list[tuple[str, bool]] = [(self.system + self.sep, False)]
        for msg in messages:
            role, content = msg["role"], msg["content"]
            if role == "user":
                out.append((f"{self.user}: {content}{self.sep}", False))
            elif role == "assistant":
                out.append((f"{self.assistant}: ", False))
                out.append((f"{content}{self.sep2}", True))
            else:
                raise ValueError(f"unknown role {role!r} (expected user or assistant)")
        if open_turn and (not messages or messages[-1]["role"] == "user"):
            out.append((f"{self.assistant}:", False))
        return out

    def render(self, messages: Sequence[Message], *, open_turn: bool = True) -> str:
        return "".join(text for text, _ in self.segments(messages, open_turn=open_turn))


def packaged_file(name: str) -> Path:
    """The packaged template file ``name``."""
    return Path(str(files(TEMPLATE_PACKAGE).joinpath(name)))


def template_file(name: str, templates_dir: str | None = None) -> Path:
    """The template file ``name`` in use: ``templates_dir``'s when it holds one (e.g. an imported
    original), else the packaged one."""
    custom = Path(templates_dir) / name if templates_dir else None
    return custom if custom is not None and custom.is_file() else packaged_file(name)


def conversation_file(templates_dir: str | None = None) -> Path:
    """The conversation template in use (see :func:`template_file`)."""
    return template_file("conversation.yaml", templates_dir)


def templates_dir_of(params: dict[str, Any]) -> str | None:
    return (params.get("plan") or {}).get("templates_dir")


@cache
def load_conversation(templates_dir: str | None = None) -> Conversation:
    """The conversation format of ``templates_dir`` (see :func:`conversation_file`). A file marked
    ``verbatim: true`` keeps its system prompt's whitespace as it is."""
    text = conversation_file(templates_dir).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    system = data["system"] if data.get("verbatim") else " ".join(data["system"].split())
    return Conversation(
        name=data["name"], version=str(data["version"]), system=system,
        user=data["roles"]["user"], assistant=data["roles"]["assistant"], sep=data["sep"], sep2=data["sep2"],
        image_prefix=data["image_prefix"], image_token=data["image_token"],
    )


def params_conversation(params: dict[str, Any]) -> Conversation:
    """The conversation format a build uses: that of ``plan.templates_dir``, else the packaged one."""
    return load_conversation(templates_dir_of(params))
