"""Helpers shared by the tests: small datasets written on the fly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def conversation(question: str, answer: str | None = None, system: str | None = None) -> dict:
    record: dict = {"schemaVersion": "bedrock-conversation-2024"}
    if system:
        record["system"] = [{"text": system}]
    record["messages"] = [{"role": "user", "content": [{"text": question}]}]
    if answer is not None:
        record["messages"].append({"role": "assistant", "content": [{"text": answer}]})
    return record


def arithmetic(n: int, start: int = 0) -> list[dict]:
    """n distinct, valid question/answer records."""
    return [conversation(f"What is {i} plus {i}?", f"{i} plus {i} is {2 * i}.") for i in range(start, start + n)]


def write_jsonl(path: Path, records: list, newline: str = "\n") -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text(newline.join(lines) + newline, encoding="utf-8")
    return path


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty folder so problem lines show short relative paths."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def build_tiny_model(folder: Path, seed: int = 0) -> Path:
    """A 2-layer, 16-wide Llama and a byte-level BPE tokenizer with a ChatML template, built
    locally (no hub): the engine loads it like any HF folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = [f"What is {i} plus {i}? {i} plus {i} is {2 * i}. user assistant system" for i in range(200)]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<pad>")
    fast.chat_template = CHATML
    fast.save_pretrained(folder)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=512, tie_word_embeddings=True,
        eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, bos_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Keep caches and model configuration inside the test's folder."""
    monkeypatch.setenv("TUNESMITH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TUNESMITH_CONFIG", str(tmp_path / "models.toml"))
    for variable in ("TUNESMITH_DATABASE_URL", "TUNESMITH_NODE_NAME", "TUNESMITH_LEASE_SECONDS"):  # a developer's own server's
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture(autouse=True)
def tunesmith_logging():
    """A test that runs ``serve`` in-process (its logging set-up stops propagation) leaves the
    ``tunesmith`` logger as it found it, so later tests' caplog still sees its records."""
    import logging

    logger = logging.getLogger("tunesmith")
    saved = logger.level, logger.propagate, list(logger.handlers)
    yield
    logger.setLevel(saved[0])
    logger.propagate = saved[1]
    logger.handlers[:] = saved[2]


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the session (skipped, with the reason, where none is installed)."""
    from postgres_server import PostgresServer, unavailable

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """The service's database, once on SQLite and once on PostgreSQL (a fresh database each test)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tunesmith.db'}"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture(scope="session")
def taught_model(tmp_path_factory, tiny_model) -> Path:
    """The tiny model trained (outside the guide's bounds, in plain torch) until it answers
    "What is n plus n?" with short text and an end token: a teacher whose answers are real text."""
    import torch

    from tunesmith.datasets import DatasetKind
    from tunesmith.models.loading import load_model, load_tokenizer
    from tunesmith.models.registry import resolve_model
    from tunesmith.training import batches
    from tunesmith.training.examples import tokenize_records
    from tunesmith.training.loss import target_loss

    source = resolve_model(str(tiny_model))
    model, tokenizer = load_model(source), load_tokenizer(source)
    examples = tokenize_records(arithmetic(60), tokenizer, DatasetKind.FINE_TUNING, 256).examples
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    batch = batches.collate(examples, tokenizer.pad_token_id)
    for _ in range(300):
        loss, count = target_loss(model, batch)
        (loss / count).backward()
        optimizer.step()
        optimizer.zero_grad()
    folder = tmp_path_factory.mktemp("taught-model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
