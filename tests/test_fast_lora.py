"""The folded LoRA forward (``training/fast_lora.py``) computes what PEFT's does."""

from __future__ import annotations

import copy

import pytest
import torch

from tunesmith.training.fast_lora import fold_lora_products


def tiny_lora(dropout: float = 0.0):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, attn_implementation="eager",
    )
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear"))
    for name, parameter in model.named_parameters():  # B starts at zero: without values A's gradient would be 0
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.1)
    return model.train()


def loss_and_grads(model, ids: torch.Tensor, autocast: bool = False):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_folded_forward_matches_peft_in_fp32() -> None:
    peft_model = tiny_lora()
    folded = copy.deepcopy(peft_model)
    assert fold_lora_products(folded) == 14  # 7 projections x 2 layers; the head is not adapted
    ids = torch.randint(0, 97, (3, 11))
    expected_loss, expected = loss_and_grads(peft_model, ids)
    loss, grads = loss_and_grads(folded, ids)
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    assert grads.keys() == expected.keys() and len(grads) == 28
    for name, grad in grads.items():
        assert (grad - expected[name]).norm() <= 1e-5 * expected[name].norm(), name


def test_folded_forward_under_bf16_is_as_close_to_fp32_as_peft() -> None:
    """Under bf16 autocast the two orders of the product round differently: the folded
    gradients must be no further from the fp32 ones than PEFT's own bf16 gradients are."""
    peft_model = tiny_lora()
    folded = copy.deepcopy(peft_model)
    fold_lora_products(folded)
    ids = torch.randint(0, 97, (3, 11))
    _, exact = loss_and_grads(peft_model, ids)
    _, peft_bf16 = loss_and_grads(peft_model, ids, autocast=True)
    _, folded_bf16 = loss_and_grads(folded, ids, autocast=True)

    def error(grads: dict) -> float:
        return (sum((grads[n] - exact[n]).norm() ** 2 for n in exact) / sum(g.norm() ** 2 for g in exact.values())).sqrt().item()

    assert 0 < error(folded_bf16) <= 1.5 * error(peft_bf16) + 1e-3


def test_folded_forward_defers_to_peft_when_lora_is_not_plain() -> None:
    ids = torch.randint(0, 97, (2, 9))
    model = tiny_lora()
    fold_lora_products(model)
    model.eval()
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        with model.disable_adapter():
            base = model(input_ids=ids).logits
    reference = tiny_lora().eval()
    with torch.no_grad(), reference.disable_adapter():
        assert torch.allclose(base, reference(input_ids=ids).logits, atol=1e-6)
    assert not torch.allclose(adapted, base, atol=1e-3)  # the adapter counted when it was on

    dropped, reference = tiny_lora(dropout=0.5), tiny_lora(dropout=0.5)  # dropout: PEFT's forward draws the masks
    fold_lora_products(dropped)
    torch.manual_seed(3)
    first = dropped(input_ids=ids).logits
    torch.manual_seed(3)
    second = reference(input_ids=ids).logits
    assert torch.allclose(first, second, atol=1e-6)
