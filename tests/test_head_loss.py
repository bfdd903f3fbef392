"""The chunked cross-entropy through the output projection equals the plain one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tunesmith.training import head_loss
from tunesmith.training.head_loss import head_cross_entropy


class Head(torch.nn.Module):
    """The two things head_cross_entropy reads from a causal LM."""

    def __init__(self, vocab: int, width: int, softcap: float | None, trains: bool):
        super().__init__()
        self.head = torch.nn.Linear(width, vocab, bias=False)
        self.head.weight.requires_grad_(trains)
        self.config = type("Config", (), {"final_logit_softcapping": softcap})()

    def get_output_embeddings(self):
        return self.head


def plain(model, hidden, labels):
    logits = model.head(hidden).float()
    cap = model.config.final_logit_softcapping
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return F.cross_entropy(logits, labels, reduction="sum")


@pytest.mark.parametrize("softcap", [None, 5.0])
@pytest.mark.parametrize("trains", [False, True], ids=["frozen-head", "trained-head"])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_loss_and_gradients_match_the_plain_head(monkeypatch, softcap, trains, autocast):
    monkeypatch.setattr(head_loss, "CHUNK", 7)  # several chunks, the last one short
    torch.manual_seed(0)
    model = Head(vocab=301, width=24, softcap=softcap, trains=trains)
    hidden = torch.randn(30, 24, requires_grad=True)
    labels = torch.randint(0, 301, (30,))
    results = []
    for compute in (plain, head_cross_entropy):
        hidden.grad = model.head.weight.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = compute(model, hidden * 1.0, labels)
        (loss * 0.5).backward()
        results.append((loss.item(), hidden.grad.clone(), model.head.weight.grad))
    (expected, grad_h, grad_w), (loss, got_h, got_w) = results
    tolerance = 2e-2 if autocast else 1e-5
    assert loss == pytest.approx(expected, rel=tolerance / 10)
    assert (got_h - grad_h).norm() <= tolerance * grad_h.norm()
    if trains:
        assert (got_w - grad_w).norm() <= tolerance * grad_w.norm()
    else:
        assert got_w is None and grad_w is None


def test_without_gradients_it_is_the_plain_path():
    model = Head(vocab=50, width=8, softcap=None, trains=False)
    hidden, labels = torch.randn(5, 8), torch.randint(0, 50, (5,))
    with torch.no_grad():
        assert head_cross_entropy(model, hidden, labels).item() == pytest.approx(plain(model, hidden, labels).item())
