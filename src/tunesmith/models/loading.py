"""Load a tokenizer and a causal LM from a :class:`ModelSource`.

Loads are serialised with a process-wide lock: ``from_pretrained`` builds models under
empty-weight contexts that patch torch globally, and two threads loading at once can leave
that patch in place, after which every new model gets meta tensors.
"""

from __future__ import annotations

from tunesmith.models.gguf_cache import LOAD_LOCK, ModelUnavailableError
from tunesmith.models.registry import ModelSource

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""Used for tokenizers that ship no chat template of their own."""


def quiet_transformers() -> None:
    """tunesmith draws its own progress; transformers' per-load bars and notices are noise here."""
    import warnings

    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def load_tokenizer(source: ModelSource):
    from transformers import AutoTokenizer

    quiet_transformers()

    try:
        folder = source.folder()  # may convert a GGUF file once
        with LOAD_LOCK:
            tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:  # transformers: ValueError for a folder it does not recognise
        raise ModelUnavailableError(f"cannot load the tokenizer of {source.describe()}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def load_model(source: ModelSource, dtype=None, device=None):
    """The model in float32 (or ``dtype``), in eval mode, on ``device`` (a ``torch.device``;
    None: the CPU), with any GGUF quantisation flag cleared.

    The weights are read on the CPU under the lock, then moved: the move needs no lock.
    """
    import torch
    from transformers import AutoModelForCausalLM

    quiet_transformers()

    try:
        folder = source.folder()  # may convert a GGUF file once
        with LOAD_LOCK:
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype or torch.float32)
    except (OSError, ValueError) as exc:  # transformers: ValueError for a folder it does not recognise
        raise ModelUnavailableError(f"cannot load {source.describe()}: {exc}") from exc
    model.hf_quantizer = None
    model.config.quantization_config = None
    model.config.__dict__.pop("quantization_config", None)
    model.eval()
    if device is not None and torch.device(device).type != "cpu":
        model.to(device)
    return model
