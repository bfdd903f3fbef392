"""``tunesmith models``: which models exist here, preparing them, and importing a result into a server."""

from __future__ import annotations

import json
import math
import struct
import time
from pathlib import Path

import click

from tunesmith.cli.errors import user_errors
from tunesmith.cli.jobs import ROLE, _call, endpoint_option
from tunesmith.cli.options import json_option
from tunesmith.cli.render import console, err_console, print_json, table
from tunesmith.client import bedrock
from tunesmith.models.config import config_path, load_model_config
from tunesmith.models.gguf_cache import ModelUnavailableError
from tunesmith.models.registry import resolve_model, result_inside
from tunesmith.tiers import TIERS


@click.group()
def models() -> None:
    """List and prepare models; import a result folder into a tunesmith server."""


def _row(name: str) -> dict:
    batch = TIERS[name].effective_batch_size if name in TIERS else None
    try:
        source = resolve_model(name)
    except ModelUnavailableError as exc:
        return {"name": name, "source": str(exc).splitlines()[0], "available": False, "parameters": None, "effectiveBatchSize": batch}
    folder = source.prepared_folder()
    return {
        "name": name, "source": source.describe(), "available": source.available(),
        "parameters": _parameter_count(folder) if folder else None, "effectiveBatchSize": source.tier.effective_batch_size,
    }


def _parameter_count(folder: Path) -> int | None:
    """From the safetensors headers, without loading the model."""
    total = 0
    for path in folder.glob("*.safetensors"):
        with path.open("rb") as handle:
            header = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0]))
        total += sum(math.prod(entry["shape"]) for name, entry in header.items() if name != "__metadata__")
    return total or None


@models.command("list")
@json_option
def list_models(as_json: bool) -> None:
    """Tiers and configured models: source, parameters, effective batch size, availability."""
    with user_errors():
        names = list(TIERS) + [n for n in load_model_config() if n not in TIERS]
        rows = [_row(name) for name in names]
    if as_json:
        print_json(rows)
        return
    console.print(table(None, ["Model", "Available", "Parameters", "Batch", "Source"], [
        [r["name"], "yes" if r["available"] else "no", f"{r['parameters'] / 1e6:.0f}M" if r["parameters"] else "- (pull)" if r["available"] else "-",
         r["effectiveBatchSize"] or "-", r["source"]] for r in rows
    ]))
    console.print(f"\nConfigure lite, pro or other models in {config_path()} (see README).")


@models.command("pull")
@click.argument("name")
def pull(name: str) -> None:
    """Prepare NAME for use (convert a GGUF model into the safetensors cache)."""
    with user_errors():
        source = resolve_model(name)
        folder = source.folder()
    console.print(f"{name}: ready at {folder}")


@models.command("import")
@click.argument("run")
@click.option("--name", required=True, help="The custom model's name on the server (letters, digits, - and _; at most 63).")
@click.option("--job-name", default=None, help="The import job's name. Default: NAME-import-MILLISECONDS.")
@endpoint_option
@json_option
def import_model(run: str, name: str, job_name: str | None, endpoint: str, as_json: bool) -> None:
    """Register the result folder RUN (or a folder holding one, such as tunesmith-quickstart/) on a tunesmith server
    as a custom model (CreateModelImportJob), to serve through Converse, /v1/chat/completions and the console.

    RUN may also be an s3:// prefix holding a result. The server copies a local RUN, so it may change afterwards;
    a local RUN must be in a folder the server may read (its working folder or an --allow-path)."""
    source = run
    if "://" not in run:
        with user_errors():
            folder = Path(run)
            inner = result_inside(folder)
        if inner is not None:
            err_console.print(f"{run} holds one result: importing {inner}")
        source = str((inner or folder).resolve())  # the server resolves relative paths against its own folder
    job_name = job_name or f"{name[:40]}-import-{int(time.time() * 1000)}"
    client = bedrock(endpoint)
    arn = _call(client.create_model_import_job, jobName=job_name, importedModelName=name, roleArn=ROLE,
                modelDataSource={"s3DataSource": {"s3Uri": source}})["jobArn"]
    job = _call(client.get_model_import_job, jobIdentifier=arn)
    job.pop("ResponseMetadata", None)
    if as_json:
        print_json(job)
        return
    console.print(f"{source}: imported as {name} ({job['status']}), {job.get('importedModelArn')}")
    console.print(f"converse: modelId={name}; openai: model=\"{name}\"")
