"""A byte-level BPE tokenizer as GGUF metadata, the way llama.cpp's ``convert_hf_to_gguf.py``
writes it for Llama-architecture models with a GPT-2 style vocabulary (SmolLM2 among them):

    tokenizer.ggml.model = "gpt2", tokenizer.ggml.pre = how text is split before BPE,
    tokens (one per id up to the model's vocab size; ``[PADn]`` fills holes), token types
    (CONTROL for special added tokens, USER_DEFINED for other added ones, NORMAL, UNUSED),
    merges, the special token ids, whether BOS/EOS are added, and the chat template.

llama.cpp cannot run a tokenizer's own pre-tokenizer: it picks one by name, so only the
pre-tokenizers whose name we can tell for sure are accepted (:data:`PRE_TOKENIZERS`).
"""

from __future__ import annotations

import json
from typing import Any

import gguf

from tunesmith.errors import TunesmithError


class TokenizerExportError(TunesmithError, ValueError):
    """The tokenizer has a shape llama.cpp would not reproduce."""


def _byte_level(pretokenizer: dict[str, Any]) -> bool:
    return pretokenizer.get("type") == "ByteLevel" and pretokenizer.get("use_regex", True) and not pretokenizer.get("add_prefix_space")


def _smollm(pre: dict[str, Any]) -> bool:
    """Each digit on its own, then GPT-2's split (SmolLM2's own tokenizer.json)."""
    steps = pre.get("pretokenizers") or []
    return (
        pre.get("type") == "Sequence" and len(steps) == 2 and steps[0].get("type") == "Digits"
        and steps[0].get("individual_digits") is True and _byte_level(steps[1])
    )


PRE_TOKENIZERS = {"gpt-2": _byte_level, "smollm": _smollm}
"""llama.cpp's ``tokenizer.ggml.pre`` name -> does a tokenizer.json pre_tokenizer match it."""


def pre_tokenizer_name(backend: dict[str, Any]) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer (``backend``: tokenizer.json as a dict)."""
    model = backend.get("model") or {}
    if model.get("type") != "BPE":
        raise TokenizerExportError(
            f"the tokenizer is {model.get('type', 'unknown')}, not byte-level BPE; only GPT-2 style BPE vocabularies export to GGUF yet"
        )
    pre = backend.get("pre_tokenizer") or {}
    for name, matches in PRE_TOKENIZERS.items():
        if matches(pre):
            return name
    raise TokenizerExportError(
        f"the tokenizer's pre-tokenizer {json.dumps(pre)[:200]} is not one llama.cpp knows by name "
        f"(supported: {', '.join(PRE_TOKENIZERS)})"
    )


def _merges(backend: dict[str, Any]) -> list[str]:
    """``"a b"`` strings; newer tokenizers.json files store merges as pairs."""
    return [m if isinstance(m, str) else " ".join(m) for m in backend["model"].get("merges", [])]


def tokens_and_types(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    vocab = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for index in range(vocab_size):
        if index not in vocab:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in added:
            tokens.append(vocab[index])
            types.append(gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(vocab[index])
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _adds(tokenizer, token_id: int | None, first: bool) -> bool:
    """Whether encoding text adds ``token_id`` at the start (``first``) or the end."""
    if token_id is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0 if first else -1] == token_id


def add_tokenizer(writer: gguf.GGUFWriter, tokenizer, vocab_size: int) -> str:
    """Write ``tokenizer`` (a fast HF tokenizer) into ``writer``; returns the pre-tokenizer name."""
    if len(tokenizer) > vocab_size:
        raise TokenizerExportError(f"the tokenizer has {len(tokenizer)} tokens but the model only {vocab_size} embeddings")
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    pre = pre_tokenizer_name(backend)
    tokens, types = tokens_and_types(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(_merges(backend))
    for token_id, add in [
        (tokenizer.bos_token_id, writer.add_bos_token_id), (tokenizer.eos_token_id, writer.add_eos_token_id),
        (tokenizer.unk_token_id, writer.add_unk_token_id), (tokenizer.pad_token_id, writer.add_pad_token_id),
    ]:
        if token_id is not None:
            add(token_id)
    writer.add_add_bos_token(_adds(tokenizer, tokenizer.bos_token_id, first=True))
    writer.add_add_eos_token(_adds(tokenizer, tokenizer.eos_token_id, first=False))
    writer.add_add_space_prefix(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
    return pre
