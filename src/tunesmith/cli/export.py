"""``tunesmith export``: a result folder as GGUF + Ollama Modelfile + safetensors + model card."""

from __future__ import annotations

from pathlib import Path

import click

from tunesmith.cli.errors import user_errors
from tunesmith.cli.options import json_option
from tunesmith.cli.render import console, err_console, print_json


@click.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--format", "format_", default="gguf", show_default=True, help="gguf: one file for llama.cpp and Ollama.")
@click.option("--quantize", default="f16", show_default=True,
              help="f16: 2-D weights in F16 (exact for bf16/fp16 runs); q8_0: about half the size, answers close to f16's.")
@click.option("--output", type=click.Path(path_type=Path), default=None, help="Export folder. Default: RUN/gguf-QUANTIZE.")
@click.option("--check", type=int, default=20, show_default=True,
              help="Read the GGUF back and compare greedy answers to this many training prompts with the safetensors model; 0 skips.")
@click.option("--name", default=None, help="The model's name in the GGUF and the model card. Default: RUN's folder name.")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Conversations (JSONL) for --check. Default: the training data at the path the run's manifest records.")
@click.option("--private", is_flag=True, help="Make the export readable by you alone (files 0600, folders 0700). Default: the umask's modes.")
@json_option
def export(run: Path, format_: str, quantize: str, output: Path | None, check: int, name: str | None, data: Path | None,
           private: bool, as_json: bool) -> None:
    """Export the trained model in RUN for llama.cpp and Ollama: GGUF, Modelfile, merged safetensors and a model card.

    RUN is a result folder, or a folder holding exactly one (such as tunesmith-quickstart/)."""
    with user_errors():
        from tunesmith.export import ExportConfig, export_run

        config = ExportConfig(run=run, format=format_, quantize=quantize, output=output, check=check, name=name, data=data,
                              private=private)
        if config.found_in is not None:
            err_console.print(f"{config.found_in} holds one result: exporting {config.run}")
        record = export_run(config)
    if as_json:
        print_json(record)
        return
    gguf = record["gguf"]
    console.print(f"{record['output']}/model.gguf: {gguf['fileType']}, {gguf['bytes']:,} bytes, {gguf['tensors']} tensors")
    console.print(f"merged from {record['mergedFrom']}; safetensors in {record['dtype']}; chat template: {record['chatTemplate']}")
    system = "set" if record["systemPrompt"] is not None else "none"
    console.print(f"Modelfile SYSTEM: {system} ({record['systemPromptSource']})")
    result = record["check"]
    if result is None:
        console.print("check: skipped (--check 0)")
    elif "skipped" in result:
        console.print(f"check: skipped: {result['skipped']}")
    else:
        console.print(f"check: greedy answers differ on {result['differ']} of {result['prompts']} training prompts (GGUF vs safetensors)")
    console.print(f"ollama create {record['name']} -f {record['output']}/Modelfile")
    console.print(f"llama-cli -m {record['output']}/model.gguf -cnv")
