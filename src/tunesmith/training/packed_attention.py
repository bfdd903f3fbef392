"""Which attention kernel a packed (padding-free) micro-batch runs with, chosen by measurement.

Candidates, in the order they are tried:

- ``tunesmith_varlen``: torch's own variable-length flash attention
  (``torch.nn.attention.varlen.varlen_attn``, torch 2.10+, CUDA), registered with
  transformers' ``AttentionInterface``. It takes the records' boundaries and computes
  nothing across them.
- ``flash_attention_2``: the flash-attn package, when it is installed; transformers hands it
  the same boundaries.
- ``flex_attention``: FlexAttention with the document mask transformers builds from the
  position ids (block-sparse: blocks across records are skipped).
- ``sdpa``: PyTorch's scaled-dot-product attention with a block-diagonal causal mask, every
  pair of positions computed: the fallback that works everywhere.

:func:`choose_packed_attention` times one forward and backward of a packed micro-batch with
each candidate the machine offers and keeps the fastest; the choice is cached per device
name, model shape and torch version in ``TUNESMITH_HOME/packed_attention.json``, and the
run's ``start`` event names it with the times measured.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence

import torch

from tunesmith import __version__
from tunesmith.files import atomic_write_text
from tunesmith.models.config import home

VARLEN = "tunesmith_varlen"
BOUNDARY_IMPLEMENTATIONS = frozenset({VARLEN, "flash_attention_2", "flash_attention_3"})
"""Implementations that read the records' boundaries (``packing.sequence_kwargs``)."""
CANDIDATES = (VARLEN, "flash_attention_2", "flex_attention", "sdpa")
REPEATS = 3


def _torch_varlen() -> Callable | None:
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def varlen_attention(
    module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask, scaling: float | None = None,
    dropout: float = 0.0, *, cu_seq_lens_q: torch.Tensor | None = None, max_length_q: int | None = None,
    kernel: Callable | None = None, **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: query, key and value are rows x heads x
    width x head size; the output is rows x width x heads x head size, as transformers' own
    functions return it. A packed row comes with its records' boundaries (``cu_seq_lens_q``);
    without them (the padded batches of validation and the quickstart's checks, on a model
    whose attention this is) each row is one sequence, which is exact for right padding:
    under a causal mask no real position sees the padding after it. ``kernel`` defaults to
    torch's ``varlen_attn`` (tests pass a reference one that runs on the CPU)."""
    if dropout:
        raise ValueError("tunesmith_varlen attention has no dropout: train with attention dropout 0")
    rows, _, width, _ = query.shape
    if key.shape[2] != width:
        raise ValueError("tunesmith_varlen attention is for training and teacher-forced scoring, not for generation with a cache")
    if cu_seq_lens_q is not None and rows != 1:
        raise ValueError("tunesmith_varlen attention takes one packed row with cu_seq_lens (packing.sequence_kwargs)")
    kernel = kernel or _torch_varlen()
    q, k, v = (t.transpose(1, 2).reshape(rows * width, t.shape[1], t.shape[3]) for t in (query, key, value))
    if cu_seq_lens_q is None:
        cu = torch.arange(0, (rows + 1) * width, width, dtype=torch.int32, device=q.device)
        max_length_q = width
    else:
        cu = cu_seq_lens_q.to(device=q.device, dtype=torch.int32)
    out = kernel(q, k, v, cu, cu, max_length_q, max_length_q, scale=scaling, window_size=(-1, 0),
                 enable_gqa=q.shape[1] != k.shape[1])
    return out.view(rows, width, *out.shape[1:]), None


def register_varlen(kernel: Callable | None = None) -> str:
    """Make ``tunesmith_varlen`` an attention implementation transformers knows (idempotent);
    ``kernel`` replaces torch's for tests."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, flash_attention_mask

    function = varlen_attention if kernel is None else (lambda *a, **k: varlen_attention(*a, kernel=kernel, **k))
    AttentionInterface.register(VARLEN, function)
    ALL_MASK_ATTENTION_FUNCTIONS.register(VARLEN, flash_attention_mask)  # no mask: the boundaries say it all
    return VARLEN


def available(device: torch.device) -> list[str]:
    """The candidates this machine can run, in :data:`CANDIDATES` order."""
    found = []
    if device.type == "cuda":
        if _torch_varlen() is not None:
            found.append(VARLEN)
        try:
            import flash_attn  # noqa: F401

            found.append("flash_attention_2")
        except ImportError:
            pass
        if hasattr(torch.nn.attention, "flex_attention"):
            found.append("flex_attention")
    found.append("sdpa")
    return found


def set_attention(model, implementation: str) -> None:
    from transformers import AttentionInterface

    if implementation == VARLEN and VARLEN not in AttentionInterface._global_mapping:  # a kernel registered already stays
        register_varlen()
    model.set_attn_implementation(implementation)


def _cache_key(model, device: torch.device, precision: str) -> str:
    config = getattr(model.config, "text_config", None) or model.config
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    shape = (config.model_type, config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
             getattr(config, "num_key_value_heads", None))
    return f"{name}|{shape}|{precision}|torch {torch.__version__}|tunesmith {__version__}"


def _read_cache() -> dict:
    try:
        return json.loads((home() / "packed_attention.json").read_text())
    except (OSError, ValueError):
        return {}


def time_candidate(model, implementation: str, step: Callable[[], None], repeats: int = REPEATS) -> float | None:
    """Seconds per forward and backward (``step``) with ``implementation``, after a warm-up;
    None when it fails on this model and device."""
    try:
        set_attention(model, implementation)
        step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(repeats):
            step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return (time.perf_counter() - started) / repeats
    except (RuntimeError, ValueError, ImportError, NotImplementedError, TypeError):
        return None


def choose_packed_attention(
    model, device: torch.device, precision: str, step: Callable[[], None], candidates: Sequence[str] | None = None,
    cache: bool = True,
) -> tuple[str, dict[str, float | None]]:
    """Set ``model`` (a PEFT model or not) to the fastest packed-attention implementation of
    ``candidates`` (default: :func:`available`), timing ``step`` (one forward and backward
    of a packed micro-batch; its gradients are the caller's to zero). Returns the choice and
    the seconds measured for each (None: failed). A cached choice is reused unmeasured."""
    key = _cache_key(model, device, precision)
    stored = _read_cache() if cache else {}
    names = list(candidates or available(device))
    if key in stored and stored[key]["choice"] in names:
        set_attention(model, stored[key]["choice"])
        return stored[key]["choice"], stored[key]["seconds"]
    seconds = {name: time_candidate(model, name, step) for name in names} if len(names) > 1 else {names[0]: None}
    working = {name: s for name, s in seconds.items() if s is not None}
    choice = min(working, key=working.get) if working else names[-1]
    set_attention(model, choice)
    if cache and len(names) > 1:
        stored[key] = {"choice": choice, "seconds": seconds}
        path = home() / "packed_attention.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(stored, indent=1))
    return choice, seconds
