"""A Llama-architecture HF model as one GGUF file that llama.cpp (and Ollama) load.

The file follows llama.cpp's ``convert_hf_to_gguf.py`` for ``LlamaForCausalLM``:
- tensor names from gguf's ``TensorNameMap`` for ``MODEL_ARCH.LLAMA`` (``blk.N.attn_q.weight`` ...);
- q and k projections permuted: HF orders each head's rotary pairs as two halves, llama.cpp
  as interleaved pairs (``_permute``); transformers' GGUF loader undoes the same permutation;
- tied embeddings write no ``output.weight`` (llama.cpp then uses ``token_embd.weight``);
- ``f16``: 2-D weights in F16, 1-D norms in F32. ``q8_0``: 2-D weights in Q8_0 (blocks of 32
  values with one scale; about half of F16's size, quality close to it), F16 where a row is
  not a multiple of 32 values, norms in F32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import torch

from tunesmith.errors import TunesmithError
from tunesmith.export.gguf_vocab import add_tokenizer

QUANTIZATIONS = {
    "f16": (gguf.LlamaFileType.MOSTLY_F16, gguf.GGMLQuantizationType.F16),
    "q8_0": (gguf.LlamaFileType.MOSTLY_Q8_0, gguf.GGMLQuantizationType.Q8_0),
}
"""``--quantize`` -> (the file type llama.cpp records, the type of 2-D weights)."""

ARCHITECTURES = {"llama": gguf.MODEL_ARCH.LLAMA}
"""HF ``model_type`` -> GGUF architecture. Others need their own tensor and metadata rules."""


class UnsupportedModelError(TunesmithError, ValueError):
    """A model the GGUF export cannot write faithfully."""


@dataclass(frozen=True)
class GgufSummary:
    path: Path
    tensors: int
    file_type: str
    pre_tokenizer: str
    tensor_types: dict[str, int]
    """GGML type name -> how many tensors have it."""


def check_architecture(config) -> None:
    """Raise :class:`UnsupportedModelError` for a model this module cannot write (before loading weights)."""
    if config.model_type not in ARCHITECTURES:
        raise UnsupportedModelError(
            f"model architecture {config.model_type!r} cannot be exported to GGUF yet (supported: {', '.join(ARCHITECTURES)})"
        )
    rope = _rope_parameters(config)
    if rope.get("rope_type", "default") not in ("default", "linear"):
        raise UnsupportedModelError(f"rope scaling {rope['rope_type']!r} cannot be exported to GGUF yet (supported: none, linear)")
    if getattr(config, "mlp_bias", False):
        raise UnsupportedModelError("MLP biases cannot be exported to GGUF yet")


def _rope_parameters(config) -> dict:
    """transformers 5 keeps rope settings in ``rope_parameters``; older configs in ``rope_theta``/``rope_scaling``."""
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    rope.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    return rope


def _head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _permute(weights: torch.Tensor, heads: int) -> torch.Tensor:
    """HF's rotary layout (each head: first halves, then second halves) to llama.cpp's (pairs)."""
    return weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def _add_hyperparameters(writer: gguf.GGUFWriter, config, name: str, file_type: gguf.LlamaFileType) -> None:
    rope = _rope_parameters(config)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads or config.num_attention_heads)
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(_head_dim(config))
    if _head_dim(config) != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(_head_dim(config))
        writer.add_value_length(_head_dim(config))
    if rope.get("rope_type") == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _tensors(model) -> list[tuple[str, torch.Tensor]]:
    """(GGUF name, float32 tensor in llama.cpp's layout) for every weight the file holds."""
    config = model.config
    names = gguf.TensorNameMap(ARCHITECTURES[config.model_type], config.num_hidden_layers)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    result = []
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UnsupportedModelError(f"the model's tensor {hf_name} has no GGUF name for {config.model_type}")
        data = tensor.detach().to(torch.float32).cpu()
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = _permute(data, heads)
        elif hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = _permute(data, kv_heads)
        result.append((name, data))
    return result


def _encode(data: torch.Tensor, weight_type: gguf.GGMLQuantizationType) -> tuple[np.ndarray, gguf.GGMLQuantizationType]:
    array = data.numpy()
    if array.ndim < 2:
        return array.astype(np.float32), gguf.GGMLQuantizationType.F32
    if weight_type == gguf.GGMLQuantizationType.Q8_0:
        block = gguf.GGML_QUANT_SIZES[weight_type][0]
        if array.shape[-1] % block == 0:
            return gguf.quants.quantize(array, weight_type), weight_type
    return array.astype(np.float16), gguf.GGMLQuantizationType.F16


def write_gguf(model, tokenizer, path: Path, quantize: str, name: str) -> GgufSummary:
    """Write ``model`` (its weights in any dtype) and ``tokenizer`` to ``path``."""
    config = model.config
    check_architecture(config)
    file_type, weight_type = QUANTIZATIONS[quantize]
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[ARCHITECTURES[config.model_type]])
    _add_hyperparameters(writer, config, name, file_type)
    pre = add_tokenizer(writer, tokenizer, config.vocab_size)
    counts: dict[str, int] = {}
    tensors = _tensors(model)
    for tensor_name, data in tensors:
        array, qtype = _encode(data, weight_type)
        writer.add_tensor(tensor_name, array, raw_dtype=qtype)
        counts[qtype.name] = counts.get(qtype.name, 0) + 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return GgufSummary(path, len(tensors), file_type.name, pre, counts)
