"""``tunesmith evaluate``, ``generate`` and ``chat``: use a model."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tunesmith.cli.errors import user_errors
from tunesmith.cli.options import device_option, json_option
from tunesmith.cli.progress import count_progress
from tunesmith.cli.render import console, err_console, fail, print_json, table
from tunesmith.datasets import DataError, DatasetKind, validate_dataset
from tunesmith.devices import place
from tunesmith.evaluation.evaluate import Evaluation, evaluate as run_evaluation, write_predictions
from tunesmith.evaluation.generation import GenerationSettings, generate as run_generation
from tunesmith.models.loading import load_model, load_tokenizer
from tunesmith.models.registry import resolve_model, result_inside
from tunesmith.training.examples import chat_messages, read_records


def generation_options(command):
    for option in reversed([
        click.option("--max-new-tokens", default=64, show_default=True, type=click.IntRange(1)),
        click.option("--temperature", default=0.0, show_default=True, type=click.FloatRange(0, 2), help="0 is greedy."),
        click.option("--top-p", default=1.0, show_default=True, type=click.FloatRange(0, 1, min_open=True)),
        click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1)),
    ]):
        command = option(command)
    return command


def comparison_table(results: list[Evaluation]):
    rows = [[r.model, r.records, f"{r.loss:.4f}", f"{r.perplexity:.2f}", f"{r.exact_match:.1%}", f"{r.rouge_l:.3f}"] for r in results]
    return table(None, ["Model", "Records", "Answer loss", "Perplexity", "Exact match", "ROUGE-L"], rows)


@click.command()
@click.option("--model", "model_spec", required=True, help="Tier, result folder (or a folder holding one) or model path.")
@click.option("--data", required=True, type=click.Path(path_type=str), help="Labelled conversations (JSONL).")
@click.option("--compare", help="A second model to score side by side.")
@click.option("--predictions", type=click.Path(path_type=str), help="Write predictions JSONL here (default: beside --data).")
@generation_options
@device_option
@json_option
def evaluate(model_spec: str, data: str, compare: str | None, predictions: str | None, max_new_tokens: int,
             temperature: float, top_p: float, batch_size: int, device: str, as_json: bool) -> None:
    """Answer loss, perplexity, greedy exact match and ROUGE-L of a model on DATA."""
    settings = GenerationSettings(max_new_tokens, temperature, top_p, batch_size=batch_size)
    results = []
    with user_errors():
        for spec in [model_spec] + ([compare] if compare else []):
            inner = result_inside(Path(spec))
            if inner is not None:
                err_console.print(f"{spec} holds one result: evaluating {inner}")
            records = sum(1 for _ in read_records(data)) if Path(data).is_file() else 0
            with count_progress(f"evaluating {spec}", records) as advance:
                results.append(run_evaluation(spec, data, settings, device, on_batch=advance))
    out = Path(predictions) if predictions else Path(data).with_suffix(".predictions.jsonl")
    with user_errors():
        write_predictions(results, out)
    if as_json:
        print_json({"results": [r.as_dict() for r in results], "predictions": str(out)})
        return
    console.print(comparison_table(results))
    console.print(f"predictions: {out}")


@click.command()
@click.option("--model", "model_spec", required=True)
@click.option("--data", required=True, type=click.Path(path_type=str), help="Conversations ending with a user turn (JSONL).")
@click.option("--out", "output", required=True, type=click.Path(path_type=str))
@click.option("--force", is_flag=True, help="Overwrite --out.")
@generation_options
@device_option
def generate(model_spec: str, data: str, output: str, force: bool, max_new_tokens: int, temperature: float,
             top_p: float, batch_size: int, device: str) -> None:
    """Answer every prompt in DATA (batched, KV cache) and write records with the answers to --out."""
    if Path(output).exists() and not force:
        fail(f"{output} already exists: pass --force to overwrite it")
    settings = GenerationSettings(max_new_tokens, temperature, top_p, batch_size=batch_size)
    with user_errors():
        report = validate_dataset(data, kind=DatasetKind.DISTILLATION, check_limits=False)
        if not report.valid:
            raise DataError(report)
        source, placement = resolve_model(model_spec), place(device)
        model, tokenizer = load_model(source, device=placement.device), load_tokenizer(source)
        records = list(read_records(data))
        conversations = [m if m[-1]["role"] == "user" else m[:-1] for m in map(chat_messages, records)]
        with count_progress("generating", len(records)) as advance:
            completions = run_generation(model, tokenizer, conversations, settings, advance, placement)
        with Path(output).open("w", encoding="utf-8") as out:
            for record, completion in zip(records, completions):
                messages = [m for m in record["messages"]]
                if messages[-1]["role"] == "assistant":
                    messages = messages[:-1]
                answer = {"role": "assistant", "content": [{"text": completion.text or " "}]}
                out.write(json.dumps({**record, "messages": messages + [answer]}, ensure_ascii=False) + "\n")
    console.print(f"wrote {len(records)} answers to {output}")


@click.command()
@click.option("--model", "model_spec", default="micro", show_default=True)
@click.option("--system", help="A system prompt.")
@generation_options
@device_option
def chat(model_spec: str, system: str | None, max_new_tokens: int, temperature: float, top_p: float, batch_size: int,
         device: str) -> None:
    """Talk to a model in the terminal (empty line or Ctrl-D to quit)."""
    settings = GenerationSettings(max_new_tokens, temperature, top_p, batch_size=1)
    with user_errors():
        source, placement = resolve_model(model_spec), place(device)
        model, tokenizer = load_model(source, device=placement.device), load_tokenizer(source)
    history = [{"role": "system", "content": system}] if system else []
    console.print(f"chatting with {source.name}; empty line to quit")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            break
        if not line:
            break
        history.append({"role": "user", "content": line})
        reply = run_generation(model, tokenizer, [history], settings, placement=placement)[0]
        history.append({"role": "assistant", "content": reply.text})
        console.print(f"{source.name}> {reply.text}")
