"""The shards' conversation format as a Hugging Face chat template, for trainers that render the
``messages`` column themselves (TRL's ``SFTTrainer``).

The template writes exactly the text :class:`Conversation` renders (Vicuna v1.1: system, ``USER:
...`` turns ending in ``sep``, ``ASSISTANT: ...`` turns ending in ``sep2``), preceded by the
tokenizer's ``bos_token`` (``apply_chat_template`` adds no special tokens itself). Each answer plus
its ``sep2`` sits in a ``{% generation %}`` block, so ``return_assistant_tokens_mask`` (TRL's
``assistant_only_loss``) marks the tokens the bundled trainer supervises with ``supervise: all``.
"""

from __future__ import annotations

import json

from ..tasks.text.conversation import Conversation, load_conversation


def _literal(text: str) -> str:
    """A Jinja string literal (JSON's quoting is valid Jinja)."""
    return json.dumps(text)


def chat_template(conversation: Conversation | None = None) -> str:
    conv = conversation or load_conversation()
    user, assistant = _literal(f"{conv.user}: "), _literal(f"{conv.assistant}: ")
    sep, sep2 = _literal(conv.sep), _literal(conv.sep2)
    return (
        f"{{{{ bos_token + {_literal(conv.system + conv.sep)} }}}}"
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}"
        f"{{{{ {user} + message['content'] + {sep} }}}}"
        "{% elif message['role'] == 'assistant' %}"
        f"{{{{ {assistant} }}}}{{% generation %}}{{{{ message['content'] + {sep2} }}}}{{% endgeneration %}}"
        "{% else %}{{ raise_exception('unknown role ' + message['role'] + ' (expected user or assistant)') }}"
        "{% endif %}"
        "{% endfor %}"
        f"{{% if add_generation_prompt %}}{{{{ {_literal(conv.assistant + ':')} }}}}{{% endif %}}"
    )
