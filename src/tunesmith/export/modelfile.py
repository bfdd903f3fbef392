"""An Ollama ``Modelfile`` for the exported GGUF.

Ollama renders prompts with a Go template, not the model's Jinja chat template, so the
Modelfile must say the same thing in Go. We do not translate Jinja: we render a few
conversations with the model's template and check that they are exactly ChatML
(``<|im_start|>role\\ncontent<|im_end|>\\n`` per message, then ``<|im_start|>assistant\\n``),
optionally with a default system prompt when the conversation has none (SmolLM2's
template does that). Then :data:`CHATML_GO_TEMPLATE` renders the same prompts. Any other
template gets no ``TEMPLATE`` line: Ollama then picks one from the GGUF's
``tokenizer.chat_template``, and the export says so.

``SYSTEM`` is the system prompt the model was trained with, as the run's manifest records it
(:func:`trained_system_prompt`): the one every training record had, or the template's default
when no record had one (training rendered that default in). When the records had several, or
the manifest does not say, the Modelfile sets none and a comment says why: the base model's
default would silently undo a fine-tune trained with another prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

CHATML_GO_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
    "{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n"
)
"""Ollama's rendering of ChatML; a system prompt (``SYSTEM`` or the request's) is the first of ``.Messages``."""

CHATML_STOPS = ("<|im_end|>", "<|im_start|>")

_PROBES = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c\nd"}],
]


def render_chatml(messages: list[dict[str, str]], default_system: str | None = None) -> str:
    """What :data:`CHATML_GO_TEMPLATE` renders for ``messages`` (Ollama adds ``SYSTEM`` first when none is given)."""
    if default_system and (not messages or messages[0]["role"] != "system"):
        messages = [{"role": "system", "content": default_system}, *messages]
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


@dataclass(frozen=True)
class ChatTemplate:
    is_chatml: bool
    default_system: str | None
    """The system prompt the template inserts when a conversation has none."""


def read_chat_template(tokenizer) -> ChatTemplate:
    """Whether the tokenizer's chat template is ChatML (checked by rendering), and its default system prompt."""
    if not tokenizer.chat_template:
        return ChatTemplate(False, None)

    def render(messages):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    try:
        first = render(_PROBES[0])
    except Exception:  # a template that fails on a plain conversation is not ChatML
        return ChatTemplate(False, None)
    default = None
    header = "<|im_start|>system\n"
    if first.startswith(header) and "<|im_end|>\n" in first:
        default = first[len(header) : first.index("<|im_end|>\n")]
    same = all(render(probe) == render_chatml(probe, default) for probe in _PROBES)
    return ChatTemplate(same, default if same else None)


@dataclass(frozen=True)
class SystemPrompt:
    text: str | None
    """The Modelfile's ``SYSTEM``; None: no SYSTEM line."""
    why: str
    """Where it comes from, or why there is none (a comment in the Modelfile, and export.json)."""


def trained_system_prompt(prompts: dict | None, template: ChatTemplate, fine_tuned: bool = True) -> SystemPrompt:
    """The ``SYSTEM`` for a model trained with ``prompts`` (the manifest's ``data.training.systemPrompts``,
    :func:`~tunesmith.training.examples.system_prompts`; None when the manifest does not record them)."""
    if not fine_tuned:
        if template.default_system:
            return SystemPrompt(template.default_system, "trained on plain text: the chat template's default system prompt")
        return SystemPrompt(None, "trained on plain text, and the chat template has no default system prompt")
    if prompts is None:
        return SystemPrompt(None, "the run's manifest does not record the system prompt it trained with "
                                  "(an earlier tunesmith; pass --data with the training file to read it there); add SYSTEM yourself")
    distinct, unlisted = prompts.get("distinct", []), prompts.get("unlisted", 0)
    if len(distinct) != 1 or unlisted:
        count = f"more than {len(distinct)}" if unlisted else str(len(distinct))
        return SystemPrompt(None, f"the training records had {count} different system prompts (export.json lists them); "
                                  "send the one each conversation needs")
    text = distinct[0]["text"]
    if text is None and template.default_system:
        return SystemPrompt(template.default_system, "no training record had a system prompt, so the chat template's default stood in while training")
    if text is None:
        return SystemPrompt(None, "no training record had a system prompt")
    if '"""' in text:
        return SystemPrompt(None, 'the training system prompt holds """, which a Modelfile string cannot; send it with each conversation')
    return SystemPrompt(text, "every training record had this system prompt")


def _quoted(text: str) -> str:
    return f'"""{text}"""'


def modelfile(template: ChatTemplate, system: SystemPrompt, gguf_name: str = "model.gguf") -> str:
    """The Modelfile text."""
    lines = [f"FROM ./{gguf_name}", ""]
    if template.is_chatml:
        lines.append(f"TEMPLATE {_quoted(CHATML_GO_TEMPLATE)}")
        lines += [f'PARAMETER stop "{stop}"' for stop in CHATML_STOPS]
    else:
        lines.append("# No TEMPLATE: the chat template is not ChatML; Ollama takes it from the GGUF's tokenizer.chat_template.")
    if system.text is None:
        lines.append(f"# No SYSTEM: {system.why}.")
    else:
        lines += [f"# SYSTEM: {system.why}.", f"SYSTEM {_quoted(system.text)}"]
    return "\n".join(lines) + "\n"
