"""Fixture: the shapes of the original data/create_data.py that import-prompts parses (own strings)."""
import dataclasses
from enum import Enum, auto


class SeparatorStyle(Enum):
    SINGLE = auto()
    TWO = auto()


@dataclasses.dataclass
class Conversation:
    system: str
    roles: list
    messages: list
    offset: int
    sep_style: SeparatorStyle = SeparatorStyle.SINGLE
    sep: str = "###"
    sep2: str = ""


def create_conv():
    return Conversation(
        system="You are a careful radiology assistant talking with a clinician. "
               "Answer briefly and precisely.",
        roles=["CLINICIAN", "ASSISTANT"],
        messages=[],
        offset=0,
        sep_style=SeparatorStyle.TWO,
        sep=" ",
        sep2="</s>",
    )


def fuse_instruct_dataset(prompt_type="fixture_rg_prompt"):
    return prompt_type
