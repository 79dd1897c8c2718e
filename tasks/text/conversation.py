"""The Vicuna v1.1 conversation format, read from ``prompt_templates/conversation.yaml``.

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


def conversation_file(name: str = "conversation") -> Path:
    """The packaged conversation template (for stage fingerprints)."""
    return Path(str(files(TEMPLATE_PACKAGE).joinpath(f"{name}.yaml")))


@cache
def load_conversation(name: str = "conversation") -> Conversation:
    data = yaml.safe_load(files(TEMPLATE_PACKAGE).joinpath(f"{name}.yaml").read_text(encoding="utf-8"))
    return Conversation(
        name=data["name"], version=str(data["version"]), system=" ".join(data["system"].split()),
        user=data["roles"]["user"], assistant=data["roles"]["assistant"], sep=data["sep"], sep2=data["sep2"],
        image_prefix=data["image_prefix"], image_token=data["image_token"],
    )
