"""A LoRA adapter's initial weights, as a function of the run's seed and each layer's name.

PEFT draws an adapter's initial ``A`` from the global random stream, layer after layer, and
casts it to its base layer's dtype; what a layer gets then depends on everything drawn before
it and on how the base is stored. Here every ``A`` is drawn again from a generator seeded with
the run's seed and the layer's name, in fp32, with PEFT's default distribution (Kaiming-uniform
with ``a = sqrt(5)``: uniform in +-1/sqrt(fan_in)), and ``B`` starts at zero, as in PEFT. So a
job's adapter starts the same whether it trains alone or beside others on one base model
(``multi_adapter/trainer.py``), whatever the base's dtype and whatever adapters exist already.
"""

from __future__ import annotations

import hashlib
import math

import torch


def _generator(seed: int, layer: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{layer}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def initialize_adapter(model, adapter: str, seed: int) -> int:
    """Set adapter ``adapter``'s ``A`` (seeded by ``seed`` and the layer's name) and ``B`` (zero)
    in every LoRA layer of ``model``, in fp32 on the layer's device; returns how many layers."""
    from peft.tuners.lora.layer import LoraLayer

    count = 0
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer) or adapter not in module.lora_A:
            continue
        down, up = module.lora_A[adapter].weight, module.lora_B[adapter].weight
        bound = 1 / math.sqrt(down.shape[1])
        fresh = torch.empty(down.shape, dtype=torch.float32).uniform_(-bound, bound, generator=_generator(seed, name))
        with torch.no_grad():
            down.data = fresh.to(down.device)
            up.data = torch.zeros(up.shape, dtype=torch.float32, device=up.device)
        count += 1
    return count
