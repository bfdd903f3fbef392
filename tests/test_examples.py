"""Tokenization: assistant-only targets with the chat template, truncation, batching."""

import pytest

from conftest import conversation
from tunesmith.datasets import DatasetKind
from tunesmith.models.loading import load_tokenizer
from tunesmith.models.registry import resolve_model
from tunesmith.training import batches
from tunesmith.training.examples import Example, TemplateError, tokenize_conversation, tokenize_records, tokenize_text


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return load_tokenizer(resolve_model(str(tiny_model)))


def target_text(tokenizer, example):
    return tokenizer.decode([t for t, keep in zip(example.input_ids, example.targets) if keep])


def test_single_turn_learns_only_the_answer(tokenizer):
    example, truncated = tokenize_conversation(tokenizer, conversation("What is 2 plus 2?", "2 plus 2 is 4.", system="Be exact."), 512)
    assert not truncated
    assert target_text(tokenizer, example) == "2 plus 2 is 4.<|im_end|>\n"
    full = tokenizer.decode(example.input_ids)
    assert full.startswith("<|im_start|>system\nBe exact.<|im_end|>\n<|im_start|>user\nWhat is 2 plus 2?")


def test_multi_turn_learns_every_assistant_turn(tokenizer):
    record = conversation("What is 1 plus 1?", "1 plus 1 is 2.")
    record["messages"] += [
        {"role": "user", "content": [{"text": "And 3 plus 3?"}]},
        {"role": "assistant", "content": [{"text": "3 plus 3 is 6."}]},
    ]
    example, _ = tokenize_conversation(tokenizer, record, 512)
    assert target_text(tokenizer, example) == "1 plus 1 is 2.<|im_end|>\n3 plus 3 is 6.<|im_end|>\n"
    users = tokenizer.decode([t for t, keep in zip(example.input_ids, example.targets) if not keep])
    assert "And 3 plus 3?" in users and "1 plus 1 is 2." not in users


def test_template_that_is_not_prefix_stable_is_refused(tokenizer):
    original = tokenizer.chat_template
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}|{{ messages|length }}|{% endfor %}"
    try:
        with pytest.raises(TemplateError, match="prefix by prefix"):
            tokenize_conversation(tokenizer, conversation("q", "a"), 512)
    finally:
        tokenizer.chat_template = original


def test_pretraining_learns_every_token_and_ends_with_eos(tokenizer):
    example, _ = tokenize_text(tokenizer, "1 plus 1 is 2.", 512)
    assert all(example.targets) and example.input_ids[-1] == tokenizer.eos_token_id


def test_truncation_and_dropping(tokenizer):
    long_prompt = conversation("What is " + "1 plus " * 100 + "1?", "A lot.")
    data = tokenize_records([long_prompt, conversation("Hi", "Hello.")], tokenizer, DatasetKind.FINE_TUNING, 32)
    assert (data.truncated, data.dropped, len(data.examples)) == (1, 1, 1)  # the answer was cut away entirely


def test_virtual_duplication_keeps_copies_apart():
    order = batches.epoch_order(records=100, duplication=3, epoch=0, seed=0, batch_size=64)
    assert sorted(order) == sorted(list(range(100)) * 3)
    for start in range(0, 300, 100):
        assert sorted(order[start : start + 100]) == list(range(100))  # each block is one whole copy
    for records in (64, 65, 100, 127, 300):
        steps = batches.step_batches(records, 5, 64, 0, 0)
        assert all(len(s) == len(set(s)) for s in steps), records  # no batch holds two copies of a record
    assert [len(s) for s in batches.step_batches(100, 3, 64, 0, 0)] == [64, 64, 64, 64, 44]
    assert batches.epoch_order(100, 3, 1, 0, 64) != order and batches.epoch_order(100, 3, 0, 0, 64) == order


def test_micro_batches_group_by_length_within_the_token_budget():
    examples = [Example([1] * n, [True] * n) for n in (10, 50, 12, 48, 11, 49)]
    groups = batches.micro_batches(list(range(6)), examples, 100)
    assert groups == [[1, 5], [3, 2], [4, 0]]  # longest first; each group's width x rows <= 100
    padded = batches.collate([examples[i] for i in groups[2]], pad_id=0)
    assert padded["input_ids"].shape == (2, 11) and int(padded["attention_mask"].sum()) == 21
    assert padded["targets"].tolist() == [[True] * 11, [True] * 10 + [False]]


def test_concurrent_loads_leave_no_meta_tensors(tiny_model):
    """from_pretrained patches torch globally while it builds a model; loads from several threads
    (as the runtime API does) must not leave that patch behind."""
    import threading

    from tunesmith.models.loading import load_model

    source = resolve_model(str(tiny_model))
    models = []
    threads = [threading.Thread(target=lambda: models.append(load_model(source))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    models.append(load_model(source))
    assert all(p.device.type == "cpu" for model in models for p in model.parameters())
