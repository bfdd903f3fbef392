"""An Ollama ``Modelfile`` for the exported GGUF.

Ollama renders prompts with a Go template, not the model's Jinja chat template, so the
Modelfile must say the same thing in Go. We do not translate Jinja: we render a few
conversations with the model's template and check that they are exactly ChatML
(``<|im_start|>role\\ncontent<|im_end|>\\n`` per message, then ``<|im_start|>assistant\\n``),
optionally with a default system prompt when the conversation has none (SmolLM2's
template does that). Then :data:`CHATML_GO_TEMPLATE` renders the same prompts, and the
default system prompt becomes ``SYSTEM``. Any other template gets no ``TEMPLATE`` line:
Ollama then picks one from the GGUF's ``tokenizer.chat_template``, and the export says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunesmith.training.examples import chat_messages, read_records

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


def common_system_prompt(data: Path) -> str | None:
    """The system prompt every training record has, if they all have the same one (and the file is still there)."""
    if not data.is_file():
        return None
    prompts = set()
    for record in read_records(data):
        messages = chat_messages(record) if "messages" in record else []
        prompts.add(messages[0]["content"] if messages and messages[0]["role"] == "system" else None)
        if len(prompts) > 1:
            return None
    return prompts.pop() if prompts else None


def _quoted(text: str) -> str:
    return f'"""{text}"""'


def modelfile(template: ChatTemplate, system: str | None, gguf_name: str = "model.gguf") -> str:
    """The Modelfile text. ``system``: the training data's common system prompt, else the template's default."""
    lines = [f"FROM ./{gguf_name}", ""]
    if template.is_chatml:
        lines.append(f"TEMPLATE {_quoted(CHATML_GO_TEMPLATE)}")
        lines += [f'PARAMETER stop "{stop}"' for stop in CHATML_STOPS]
    else:
        lines.append("# No TEMPLATE: the chat template is not ChatML; Ollama takes it from the GGUF's tokenizer.chat_template.")
    system = system or template.default_system
    if system and '"""' not in system:  # a Modelfile string cannot hold triple quotes
        lines.append(f"SYSTEM {_quoted(system)}")
    return "\n".join(lines) + "\n"
