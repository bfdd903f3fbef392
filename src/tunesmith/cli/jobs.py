"""``tunesmith jobs``: a client of ``tunesmith serve``, built on boto3's own ``bedrock`` client."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import click

from tunesmith.cli.options import hyperparameter_flags, hyperparameter_options, json_option
from tunesmith.cli.render import console, fail, print_json, table
from tunesmith.client import add_tunesmith_config, bedrock, signed_get
from tunesmith.datasets.duplicate import MAX_FACTOR
from tunesmith.jobs.device_pool import MAX_JOB_DEVICES
from tunesmith.kinds import CustomizationKind
from tunesmith.statuses import ACTIVE_JOB_STATUSES, JobStatus

DEFAULT_ENDPOINT = "http://127.0.0.1:8000"
ROLE = "arn:aws:iam::123456789012:role/tunesmith"


def endpoint_option(command):
    return click.option("--endpoint", default=lambda: os.environ.get("TUNESMITH_ENDPOINT", DEFAULT_ENDPOINT),
                        show_default="TUNESMITH_ENDPOINT or http://127.0.0.1:8000", help="The tunesmith server.")(command)


def _call(function, **kwargs):
    from botocore.exceptions import ClientError, EndpointConnectionError

    try:
        return function(**kwargs)
    except ClientError as exc:
        fail(f"{exc.response['Error']['Code']}: {exc.response['Error']['Message']}")
    except EndpointConnectionError as exc:
        fail(f"cannot reach the server: {exc}; is `tunesmith serve` running?")


@click.group()
def jobs() -> None:
    """Create and follow customization jobs on a tunesmith server."""


@jobs.command("create")
@click.option("--name", required=True, help="Job name.")
@click.option("--model-name", required=True, help="Name of the custom model the job makes.")
@click.option("--base", default="micro", show_default=True, help="Base model: tier or hosted id.")
@click.option("--data", required=True, help="Training data: a local path, file:// or s3:// URI.")
@click.option("--validation", multiple=True, help="Validation data (repeatable).")
@click.option("--output", required=True, help="Where metric files go: a local folder, file:// or s3:// URI.")
@click.option("--type", "customization_type", default=CustomizationKind.FINE_TUNING.value,
              type=click.Choice([CustomizationKind.FINE_TUNING.value, CustomizationKind.CONTINUED_PRE_TRAINING.value]))
@click.option("--devices", type=click.IntRange(1, MAX_JOB_DEVICES),
              help="Devices (data-parallel ranks) to train on; the server's default is 1 (sent as tunesmithConfig.devices).")
@click.option("--early-stopping-patience", type=click.IntRange(1, 1000),
              help="Stop after N validations without a lower validation loss and keep the best checkpoint "
                   "(needs --validation; sent as tunesmithConfig.earlyStoppingPatience).")
@click.option("--eval-every", type=click.IntRange(1), help="Also validate every N steps (sent as tunesmithConfig.evalEvery).")
@click.option("--duplicate", "duplication", type=click.IntRange(1, MAX_FACTOR),
              help="Train on every record N times per epoch, as `tunesmith train --duplicate` (sent as tunesmithConfig.duplicationFactor).")
@hyperparameter_options
@click.option("--estimate", "with_estimate", is_flag=True,
              help="First print the run's steps, tokens, time and peak memory as this machine would train it (local data only; "
                   "see `tunesmith estimate`). The job is sent whatever the estimate does.")
@endpoint_option
def create(name, model_name, base, data, validation, output, customization_type, devices, early_stopping_patience, eval_every,
           duplication, with_estimate, endpoint, **flags) -> None:
    """Create a job (the same request a hosted-service script would send)."""
    local = lambda uri: uri if "://" in uri else str(Path(uri).resolve())  # noqa: E731 - servers resolve against their own cwd
    sent = hyperparameter_flags(flags)
    if with_estimate:
        from tunesmith.cli.estimate import estimate_before_job
        from tunesmith.jobs.spec import DATASET_KINDS

        estimate_before_job(base, data, validation, DATASET_KINDS[customization_type].value, sent)
    client = bedrock(endpoint)
    extra = {"devices": devices, "earlyStoppingPatience": early_stopping_patience, "evalEvery": eval_every,
             "duplicationFactor": duplication}
    extra = {key: value for key, value in extra.items() if value is not None}
    if extra:
        add_tunesmith_config(client, extra)
    response = _call(
        client.create_model_customization_job,
        jobName=name, customModelName=model_name, roleArn=ROLE, baseModelIdentifier=base, customizationType=customization_type,
        trainingDataConfig={"s3Uri": local(data)}, outputDataConfig={"s3Uri": local(output)},
        validationDataConfig={"validators": [{"s3Uri": local(v)} for v in validation]},
        hyperParameters=sent,
    )
    console.print(response["jobArn"])


@jobs.command("list")
@click.option("--status", type=click.Choice([status.value for status in JobStatus]))
@endpoint_option
@json_option
def list_jobs(status, endpoint, as_json) -> None:
    """All jobs, newest first."""
    client, summaries, token = bedrock(endpoint), [], None
    while True:
        kwargs = ({"statusEquals": status} if status else {}) | ({"nextToken": token} if token else {})
        page = _call(client.list_model_customization_jobs, **kwargs)
        summaries += page["modelCustomizationJobSummaries"]
        token = page.get("nextToken")
        if not token:
            break
    if as_json:
        print_json(summaries)
        return
    console.print(table(None, ["Name", "Status", "Created", "Model"], [
        [s["jobName"], s["status"], f"{s['creationTime']:%Y-%m-%d %H:%M:%S}", s.get("customModelName", "-")] for s in summaries
    ]))


@jobs.command("get")
@click.argument("job")
@endpoint_option
def get(job, endpoint) -> None:
    """One job (name or ARN), as JSON."""
    response = _call(bedrock(endpoint).get_model_customization_job, jobIdentifier=job)
    response.pop("ResponseMetadata", None)
    click.echo(json.dumps(response, indent=2, default=str))


@jobs.command("stop")
@click.argument("job")
@endpoint_option
def stop(job, endpoint) -> None:
    """Ask a job to stop (it checkpoints first)."""
    _call(bedrock(endpoint).stop_model_customization_job, jobIdentifier=job)
    console.print(f"stop requested for {job}")


@jobs.command("events")
@click.argument("job")
@click.option("--follow", is_flag=True, help="Keep printing new events until the job ends.")
@endpoint_option
def events(job, follow, endpoint) -> None:
    """The job's training events (one JSON object per line)."""
    seen = 0
    client = bedrock(endpoint)
    while True:
        url = f"{endpoint}/model-customization-jobs/{quote(job, safe='')}/events?after={seen}"
        try:
            lines = signed_get(url).decode().splitlines()
        except urllib.error.HTTPError as exc:
            fail(f"{exc.headers.get('x-amzn-ErrorType', exc.code)}: {json.loads(exc.read() or b'{}').get('message', exc.reason)}")
        except OSError as exc:
            fail(f"cannot read events from {endpoint}: {exc}")
        for line in lines:
            click.echo(line)
        seen += len(lines)
        if not follow:
            return
        if _call(client.get_model_customization_job, jobIdentifier=job)["status"] not in ACTIVE_JOB_STATUSES:
            return
        time.sleep(1)
