"""PEFT's LoRA linear layers with the adapter's product folded into one matmul.

PEFT computes ``base(x) + lora_B(lora_A(x)) * scaling``: the scaling multiplies, and the sum
adds, a tensor as wide as the layer's output, and both come back again in the backward pass.
Here the scaling multiplies the rank-wide ``lora_A(x)`` instead, and ``torch.addmm`` adds the
``lora_B`` product into the base output inside the matmul. The sum is the same up to float
rounding, with two output-wide passes fewer each way: about 8% of a CPU step in fp32
(``benchmarks/README.md``).

Only plain LoRA takes this path: one active adapter, no dropout, no DoRA or other variant, no
LoRA bias, not merged, over an ``nn.Linear``. Anything else (and any call with extra
arguments) goes through PEFT's own forward, checked on every call, so disabling or merging
the adapter later still behaves as PEFT documents.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F


def _plain_adapter(layer) -> str | None:
    """The active adapter's name when ``layer`` computes plain LoRA right now, else None."""
    if layer.disable_adapters or layer.merged or len(layer.active_adapters) != 1:
        return None
    name = layer.active_adapters[0]
    if name not in layer.lora_A or name in layer.lora_variant or layer.lora_bias.get(name, False):
        return None
    if not isinstance(layer.lora_dropout[name], torch.nn.Identity):
        return None
    return name


def _forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    name = None if args or kwargs else _plain_adapter(self)
    if name is None:
        return type(self).forward(self, x, *args, **kwargs)
    base = self.base_layer
    result = F.linear(x, base.weight, base.bias)
    down_weight, up = self.lora_A[name].weight, self.lora_B[name].weight
    if not torch.is_autocast_enabled(x.device.type):
        x = x.to(down_weight.dtype)  # as PEFT does; under autocast the matmul picks the dtype
    down = F.linear(x, down_weight) * self.scaling[name]
    summed = torch.addmm(result.reshape(-1, result.shape[-1]), down.reshape(-1, down.shape[-1]), up.t())
    return summed.view(result.shape).to(result.dtype)


def give_lora_linears(model, forward) -> int:
    """Give every PEFT LoRA ``Linear`` over an ``nn.Linear`` of ``model`` the method ``forward``
    (on the instance: PEFT's classes are untouched); returns how many."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    changed = 0
    for module in model.modules():
        if type(module) is LoraLinear and type(module.base_layer) is torch.nn.Linear:
            module.forward = types.MethodType(forward, module)
            changed += 1
    return changed


def fold_lora_products(model) -> int:
    """Give every plain PEFT LoRA ``Linear`` of ``model`` the folded forward; returns how many."""
    return give_lora_linears(model, _forward)
