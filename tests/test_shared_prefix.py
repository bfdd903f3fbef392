"""Shared-prefix training computes the same loss and gradients as training each record alone."""

from __future__ import annotations

import random

import pytest
import torch

from tunesmith.training import batches
from tunesmith.training.examples import Example
from tunesmith.training.loss import target_loss
from tunesmith.training.prefixes import PrefixGroup, common_prefix_length, prefix_groups, shared_prefix_share
from tunesmith.training.shared_loss import computed_positions, micro_batch_loss, supports_shared_prefix

PAD = 0


def tiny_llama(attention: str = "eager", lora: bool = False, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True, pad_token_id=PAD,
        attn_implementation=attention,
    )
    model = LlamaForCausalLM(config)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"))
        for name, parameter in model.named_parameters():  # LoRA B starts at zero: give it values so A's gradient is not trivially 0
            if "lora_B" in name:
                torch.nn.init.normal_(parameter, std=0.1)
    return model.train()


def mixed_examples(seed: int = 1, learn_prefix: bool = False) -> list[Example]:
    """Five records share a 12-token system prompt; two of those also share the next 6
    tokens; three records share nothing with anyone."""
    rng = random.Random(seed)
    system = [rng.randrange(1, 97) for _ in range(12)]
    question = [rng.randrange(1, 97) for _ in range(6)]

    def record(head: list[int], own: int, answer: int) -> Example:
        ids = head + [rng.randrange(1, 97) for _ in range(own + answer)]
        prompt = len(ids) - answer
        targets = [learn_prefix and rng.random() < 0.5 or i >= prompt for i in range(len(ids))]
        return Example(ids, targets)

    examples = [
        record(system, 5, 4), record(system + question, 3, 6), record(system + question, 7, 2),
        record(system, 9, 5), record(system, 1, 3),
        record([], 14, 4), record([], 6, 6), record([], 20, 3),
    ]
    rng.shuffle(examples)
    return examples


def loss_and_grads(model, compute) -> tuple[float, int, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss, count = compute()
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return loss.item(), count, grads


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("learn_prefix", [False, True], ids=["answers", "every-token"])
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_loss_and_gradients_equal_per_record_training(lora, learn_prefix, attention):
    model = tiny_llama(attention, lora)
    examples = mixed_examples(learn_prefix=learn_prefix)
    indices = list(range(len(examples)))
    groups = prefix_groups([e.input_ids for e in examples], indices, minimum=4)
    assert sorted(g.shared for g in groups if g.shared) and any(not g.shared for g in groups)  # really mixed
    device = torch.device("cpu")

    def separately():
        losses = [target_loss(model, batches.collate([e], PAD)) for e in examples]
        return sum(loss for loss, _ in losses), sum(n for _, n in losses)

    expected_loss, expected_count, expected = loss_and_grads(model, separately)
    loss, count, grads = loss_and_grads(model, lambda: micro_batch_loss(model, examples, groups, PAD, device))

    assert count == expected_count == sum(e.target_count for e in examples)
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    assert grads.keys() == expected.keys() and grads
    for name, grad in grads.items():
        scale = expected[name].norm().item()
        assert scale > 0, name
        assert (grad - expected[name]).norm().item() <= 1e-5 * scale, name


def test_groups_are_mixed_and_bounded():
    a = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    ids = [a + [11, 12], a[:6] + [50, 51], a + [13], [9, 9, 9], a[:9]]
    groups = prefix_groups(ids, [0, 1, 2, 3, 4], minimum=4)
    by_first = {g.indices[0]: g for g in groups}
    # 0, 2 and 4 share 8 tokens (the shortest, 4, keeps one of its own); 1 shares only 6 with them
    assert any(sorted(g.indices) == [0, 2, 4] and g.shared == 8 for g in groups) or any(
        sorted(g.indices) == [0, 1, 2, 4] and g.shared == 6 for g in groups)
    assert by_first[3] == PrefixGroup([3], 0)
    assert sorted(i for g in groups for i in g.indices) == [0, 1, 2, 3, 4]
    for g in groups:
        assert g.shared < min(len(ids[i]) for i in g.indices)
        assert g.shared == 0 or g.shared <= min(common_prefix_length(ids[g.indices[0]], ids[i]) for i in g.indices)


def test_identical_records_keep_a_token_each():
    ids = [[5] * 10, [5] * 10]
    (group,) = prefix_groups(ids, [0, 1], minimum=4)
    assert group == PrefixGroup([0, 1], 9)


def test_share_counts_only_prefixes_someone_else_has():
    ids = [[1] * 10 + [2] * 10, [1] * 10 + [3] * 10, [4] * 20]
    assert shared_prefix_share(ids, minimum=4) == pytest.approx(20 / 60)
    assert shared_prefix_share([[1, 2, 3]], minimum=1) == 0.0
    assert shared_prefix_share([]) == 0.0


def test_computed_positions_count_each_prefix_once():
    examples = [Example([1] * 10 + [2, 3], [False] * 12), Example([1] * 10 + [4], [False] * 11), Example([7, 8], [False, True])]
    groups = prefix_groups([e.input_ids for e in examples], [0, 1, 2], minimum=4)
    assert computed_positions(examples, groups) == 10 + 2 * 2 + 2


def test_llama_supports_it():
    assert supports_shared_prefix(tiny_llama())


def test_micro_batches_count_a_shared_prefix_once():
    examples = [Example([1] * 40 + [i, i + 1], [False] * 41 + [True]) for i in range(2, 12)]
    ids = [e.input_ids for e in examples]
    padded = batches.micro_batches(list(range(10)), examples, 100)
    shared = batches.micro_batches(list(range(10)), examples, 100, lambda g: computed_positions(examples, prefix_groups(ids, g)))
    assert [len(g) for g in padded] == [2] * 5  # 42 padded positions each
    assert [len(g) for g in shared] == [10]  # 41 shared once + 10 x 1 own
    assert sorted(i for g in shared for i in g) == list(range(10))
