"""JSON answers: generation constrained so that the text parses, as any JSON object or as one
that follows a JSON Schema (OpenAI's ``response_format`` ``json_object`` and ``json_schema``).

llguidance (guidance-ai's Rust grammar engine, the one llama.cpp, vLLM and SGLang use; no Python
dependencies) tells, before each token, which tokens can continue the JSON; :class:`JsonConstraint`
sets the others' logits to -inf, after the penalties and bias and before sampling, which then
chooses among what may follow. The JSON has no whitespace between its tokens (none to ramble in).

A grammar alone does not make an answer fit in ``max_new_tokens``: small models write ever
deeper objects and endless strings, and an answer cut off at the limit does not parse. So when
the tokens left are just enough to close what is open, the constraint closes it: it picks, among
the tokens the grammar allows, the first of ``"0`` inside a string (the closing quote, or a
digit an escape needs) and of ``}],0:"`` outside one (close an object or array, move on to a key
a schema requires, give a number its digit or a key its colon and a value ``0``, or open the key
a comma asked for), and leaves the choice to the model only where none of these is allowed (the
rest of ``true``, of a multi-byte character, of a key a schema names). For any JSON object that
takes at most the open arrays and objects plus :data:`CLOSING_MARGIN` tokens, the end token
included, so ``json_object`` answers always parse (``\\u`` escapes are left out of strings to keep
that bound small: models write the character itself). A schema's required keys can need more
than that: then an answer may be cut at the limit, as OpenAI's are (``finish_reason``
``length``); given room, it follows the schema.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

ANY_OBJECT: dict[str, Any] = {"type": "object"}
"""The schema of OpenAI's ``json_object``: any JSON object."""
CLOSING_MARGIN = 8
"""Tokens, beyond one per open array or object, that closing can take: the rest of a multi-byte
character (3), or of an escape (1), the closing quote, a key's colon and value ``0``, and the end
token; or a comma's key (``""``), its colon and value; or the rest of a literal (``alse``)."""
ESCAPES = '"\\bfnrt'
"""The escapes strings may use (JSON's, less ``\\u``: see the module docstring)."""
STRING_CLOSERS, CLOSERS = '"0', '}],0:"'


def grammar(schema: dict[str, Any]) -> str:
    """llguidance's grammar for ``schema``: compact JSON, no ``\\u`` escapes."""
    from llguidance import LLMatcher

    return LLMatcher.grammar_from_json_schema(schema, defaults={"whitespace_flexible": False, "json_allowed_escapes": ESCAPES})


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why answers cannot be constrained to ``schema`` (llguidance's words); None if they can."""
    from llguidance import LLMatcher

    try:
        failed, messages = LLMatcher.validate_grammar_with_warnings(grammar(schema))
    except (ValueError, TypeError, RecursionError) as exc:  # not a schema llguidance can read
        return str(exc) or type(exc).__name__
    return messages[0] if failed else None


@dataclass(frozen=True)
class Vocabulary:
    """A tokenizer as llguidance sees it, and the ids of the one-character closing tokens."""

    tokenizer: Any
    """llguidance's ``LLTokenizer``."""
    closers: dict[str, int]


_vocabularies: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_vocabularies_lock = threading.Lock()


def vocabulary(tokenizer) -> Vocabulary:
    """llguidance's view of a Hugging Face fast tokenizer, built once per tokenizer (about 0.3 s)."""
    with _vocabularies_lock:
        found = _vocabularies.get(tokenizer)
    if found is None:
        import llguidance.hf

        wrapped = llguidance.hf.from_tokenizer(tokenizer)
        singles = {c: wrapped.tokenize_str(c) for c in set(STRING_CLOSERS + CLOSERS)}
        found = Vocabulary(wrapped, {c: ids[0] for c, ids in singles.items() if len(ids) == 1})
        with _vocabularies_lock:
            _vocabularies[tokenizer] = found
    return found


class _Row:
    """One row's matcher, and where its JSON stands: open arrays and objects, inside a string."""

    def __init__(self, vocab: Vocabulary, rules: str):
        from llguidance import LLMatcher

        self.vocab, self.matcher = vocab, LLMatcher(vocab.tokenizer, rules)
        self.seen, self.depth, self.in_string, self.escaped = 0, 0, False, False

    def follow(self, tokens: list[int]) -> None:
        """Consume the row's new tokens. A row that left the grammar (a stop sequence ended it and
        padding follows) is no longer constrained: the matcher stays in its error state."""
        for token in tokens:
            if self.matcher.is_error() or not self.matcher.consume_token(token):
                return
            for char in self.vocab.tokenizer.decode_bytes([token]).decode("latin-1"):
                self._scan(char)

    def _scan(self, char: str) -> None:
        if self.in_string:
            if self.escaped:
                self.escaped = False
            elif char == "\\":
                self.escaped = True
            elif char == '"':
                self.in_string = False
        elif char == '"':
            self.in_string = True
        elif char in "{[":
            self.depth += 1
        elif char in "}]":
            self.depth -= 1

    def allowed(self, size: int) -> np.ndarray:
        """Which of ``size`` token ids may come next (ids the tokenizer lacks may not)."""
        mask = np.frombuffer(self.matcher.compute_logit_bias(), dtype=np.uint8) > 0
        allowed = np.zeros(size, dtype=bool)
        allowed[: min(size, len(mask))] = mask[:size]
        return allowed

    def closer(self, allowed: np.ndarray) -> int | None:
        for char in STRING_CLOSERS if self.in_string else CLOSERS:
            token = self.vocab.closers.get(char)
            if token is not None and token < len(allowed) and allowed[token]:
                return token
        return None


class JsonConstraint(LogitsProcessor):
    """Only tokens that continue JSON following ``schema`` (:data:`ANY_OBJECT` by default);
    closing what is open when only enough tokens are left for that. Each row of a batch has its
    own matcher."""

    def __init__(self, tokenizer, prompt_length: int, max_new_tokens: int, schema: dict[str, Any] = ANY_OBJECT):
        self.vocab, self.rules = vocabulary(tokenizer), grammar(schema)
        self.prompt_length, self.max_new_tokens = prompt_length, max_new_tokens
        self.rows: list[_Row] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if not self.rows:
            self.rows = [_Row(self.vocab, self.rules) for _ in range(input_ids.shape[0])]
        generated = input_ids.shape[1] - self.prompt_length
        left = self.max_new_tokens - generated
        for index, row in enumerate(self.rows):
            row.follow(input_ids[index, self.prompt_length + row.seen:].tolist())
            row.seen = generated
            if row.matcher.is_error():
                continue
            allowed = row.allowed(scores.shape[1])
            if left <= row.depth + CLOSING_MARGIN and (token := row.closer(allowed)) is not None:
                allowed = np.zeros_like(allowed)
                allowed[token] = True
            block(scores[index], ~allowed)
        return scores


def block(scores: torch.Tensor, blocked: np.ndarray) -> None:
    """``scores[blocked] = -inf`` in place. On the CPU through numpy: a torch operation on a
    vocabulary-sized row wakes torch's thread pool, which costs milliseconds on a busy machine."""
    if scores.device.type == "cpu" and scores.is_contiguous() and scores.dtype == torch.float32:
        scores.numpy()[blocked] = -np.inf
    else:
        scores.masked_fill_(torch.from_numpy(blocked).to(scores.device), float("-inf"))
