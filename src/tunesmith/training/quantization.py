"""QLoRA: LoRA adapters trained over a frozen base model quantized to 4 or 8 bits.

bitsandbytes does the quantization, and it needs CUDA: on the CPU or MPS ``--quantize`` is
refused before any model loads. 4-bit uses NF4 with double quantization and computes in the
run's precision (bf16 on Ampere+, else fp16); 8-bit uses LLM.int8(). The result folder holds
the adapter only: merging it into quantized weights would lose precision, so load the
adapter over the unquantized base (PEFT's ``PeftModel.from_pretrained``) to serve it.
"""

from __future__ import annotations

import torch

from tunesmith.devices import DeviceError, Placement
from tunesmith.errors import ConfigError
from tunesmith.models.registry import ModelSource
from tunesmith.training.config import Quantize

__all__ = ["Quantize", "check_quantization", "load_quantized"]


def check_quantization(quantize: str, placement: Placement, method: str) -> None:
    """Refuse, with the reason, a quantized run that cannot work here."""
    if quantize == "none":
        return
    if placement.device.type != "cuda":
        raise DeviceError(f"--quantize {quantize} needs a CUDA GPU (bitsandbytes quantizes on CUDA only); this run is on "
                          f"{placement.device}: drop --quantize, or run on a GPU")
    if method != "lora":
        raise ConfigError(f"--quantize {quantize} trains LoRA adapters over a frozen quantized base: use --method lora")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise DeviceError(f"--quantize {quantize} needs bitsandbytes: python -m pip install bitsandbytes") from exc


def load_quantized(source: ModelSource, quantize: str, placement: Placement):
    """The base model, quantized on ``placement``'s GPU and prepared for k-bit training."""
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    compute = placement.autocast_dtype or torch.float32
    if quantize == "4bit":
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                    bnb_4bit_compute_dtype=compute)
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    model = AutoModelForCausalLM.from_pretrained(source.folder(), quantization_config=config, dtype=compute,
                                                 device_map={"": placement.device.index or 0})
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
