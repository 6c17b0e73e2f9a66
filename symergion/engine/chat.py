"""Chat templates: one user turn rendered as the model's chat format expects it.

A Hugging Face chat template (Jinja) is rendered in a sandbox. ``chat_prompt`` also finds
where the user's message sits in the result, so that special tokens are parsed in the
template's own text only (``ChatPrompt``), never in the message.
"""

from __future__ import annotations

import time

from symergion.engine.base import ChatPrompt
from symergion.errors import ModelError

# Stands for the user's message while the chat template is rendered, to find where it goes.
_MESSAGE_MARK = "\x00symergion-user-message\x00"


def render_chat_template(template: str, user_message: str, *, bos_token: str, eos_token: str) -> str:
    """Render one user turn with a Hugging Face chat template, generation prompt and thinking on.

    A leading BOS is dropped from the result because ``generate`` adds BOS when it tokenizes.
    """
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ModelError(
            f"the model's chat template refused the prompt: {message}",
            hint='use this model with the "coding" trait, or pick a model whose chat '
            "template accepts a single user message",
        )

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    rendered = environment.from_string(template).render(
        messages=[{"role": "user", "content": user_message}],
        add_generation_prompt=True,
        enable_thinking=True,
        bos_token=bos_token,
        eos_token=eos_token,
        raise_exception=raise_exception,
        strftime_now=lambda fmt: time.strftime(fmt),
    )
    if bos_token and rendered.startswith(bos_token):
        rendered = rendered[len(bos_token) :]
    return rendered


def chat_prompt(template: str, user_message: str, *, bos_token: str, eos_token: str) -> str:
    """Render one user turn as a ``ChatPrompt`` that knows where the message sits.

    Falls back to a plain string (no special tokens parsed at all) for a template that repeats
    or drops the message, where no single span is the message.
    """
    text = render_chat_template(template, user_message, bos_token=bos_token, eos_token=eos_token)
    # The template may trim or wrap the message: what lies between its text before and after
    # the message is the message, whatever the template did to it.
    parts = render_chat_template(
        template, _MESSAGE_MARK, bos_token=bos_token, eos_token=eos_token
    ).split(_MESSAGE_MARK)
    if len(parts) == 2 and text.startswith(parts[0]) and text.endswith(parts[1]) and (
        len(parts[0]) + len(parts[1]) <= len(text)
    ):
        return ChatPrompt(text, (len(parts[0]), len(text) - len(parts[1])))
    return text
