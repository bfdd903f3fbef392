"""A tunesmith server as the place a search's trials run (``tunesmith tune --endpoint URL``).

The server is reached as ``tunesmith jobs`` reaches it: Bedrock's own calls through boto3's
``bedrock`` client (the usual credential chain; a server without ``--credentials`` accepts
any), tunesmith's additions over plain HTTP. ``tunesmithConfig`` (validation interval and
duplication) is added to the create request's body by
:func:`tunesmith.client.add_tunesmith_config`, since botocore refuses parameters its model
lacks; the events route is read with a SigV4-signed GET. Held-out records are answered with
Converse at temperature 0 (:class:`~tunesmith.distillation.teachers.BedrockTeacher`).

Every error becomes a :class:`~tunesmith.tuning.study.TuneError` the user can act on: a server
that cannot be reached, and a server that may not use the search's files (``--allow-path``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import urllib.error
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tunesmith import guide
from tunesmith.errors import ConfigError
from tunesmith.kinds import CustomizationKind
from tunesmith.tiers import UnknownModelError, resolve_tier
from tunesmith.training.config import LoraSettings, TrainConfig
from tunesmith.tuning.space import TrialSettings
from tunesmith.tuning.study import TuneError

ROLE = "arn:aws:iam::123456789012:role/tunesmith"
"""The role every job names (a tunesmith server does not assume it)."""
NOT_SENT = ("method", "max_length", "micro_batch_tokens", "max_memory", "share_prefixes", "packing", "device", "precision")
"""TrainConfig settings a job cannot carry: a server's jobs train with its own device and the defaults."""


class ServerUnreachable(TuneError):
    """The server did not answer (not running, wrong URL, gone mid-search)."""


def check_sendable(training: TrainConfig) -> None:
    """Raise :class:`ConfigError` naming the settings a search passes to its trials that a job cannot carry."""
    defaults = TrainConfig(data=training.data, output=training.output)
    flags = ["--" + name.replace("_", "-") for name in NOT_SENT if getattr(training, name) != getattr(defaults, name)]
    flags += [f"--lora-{item.name}" for item in dataclasses.fields(LoraSettings)
              if getattr(training.lora, item.name) != item.default]
    if flags:
        raise ConfigError(f"{', '.join(flags)} cannot be sent to a server's jobs, which train with the server's device and the "
                          "defaults: leave them out with --endpoint, or run the search in this process")


class Endpoint:
    """One tunesmith server: jobs, their events and their models."""

    def __init__(self, url: str, base_model: str, client: Any):
        from tunesmith.client import add_tunesmith_config  # the jobs client's helpers: one way to talk to a server

        self.url, self.base_model, self.client = url.rstrip("/"), base_model, client
        self._extra: dict[str, Any] = {}
        add_tunesmith_config(client, self._extra)  # sends what _extra holds when each create is made

    @classmethod
    def connect(cls, url: str, model: str) -> Endpoint:
        """The server at ``url``, checked to answer; ``model`` (the search's ``--model``) must name a tier."""
        from botocore.exceptions import ClientError

        from tunesmith.client import bedrock

        try:
            resolve_tier(model)
        except UnknownModelError:
            raise TuneError(f"--endpoint trains on the server's tiers: --model must be a tier or hosted model id "
                            f"(micro, lite, pro), not {model}") from None
        try:
            endpoint = cls(url, model, bedrock(url))
        except ValueError as exc:  # botocore: "Invalid endpoint: ..."
            raise TuneError(f"--endpoint {url!r} is not a server URL such as http://127.0.0.1:8000 ({exc})") from None
        try:
            endpoint.call("list_model_customization_jobs", maxResults=1)
        except ClientError as exc:
            raise TuneError(f"the server at {url} refused to list jobs: {exc.response['Error']['Code']}: "
                            f"{exc.response['Error']['Message']}") from None
        return endpoint

    # -- Bedrock's calls ------------------------------------------------------------------------
    def call(self, operation: str, **kwargs: Any) -> dict:
        """A ``bedrock`` client call; raises :class:`ServerUnreachable`, or ``ClientError`` for the caller to read."""
        from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

        try:
            return getattr(self.client, operation)(**kwargs)
        except (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError) as exc:
            raise ServerUnreachable(f"cannot reach the tunesmith server at {self.url} ({exc}); is `tunesmith serve` running there?") from None

    def create_job(self, name: str, settings: TrialSettings, eval_every: int, training: Path, validation: Path, output: Path) -> str:
        """Start a trial's job; its ARN. Raises :class:`TuneError` when the server refuses it."""
        from botocore.exceptions import ClientError

        self._extra.clear()
        self._extra.update(evalEvery=eval_every, duplicationFactor=settings.duplication)
        try:
            response = self.call(
                "create_model_customization_job", jobName=name, customModelName=f"{name}-model", roleArn=ROLE,
                baseModelIdentifier=self.base_model, customizationType=CustomizationKind.FINE_TUNING.value,
                trainingDataConfig={"s3Uri": str(training.resolve())}, outputDataConfig={"s3Uri": str(output.resolve())},
                validationDataConfig={"validators": [{"s3Uri": str(validation.resolve())}]},
                hyperParameters=settings.hyperparameters.to_wire(),
            )
        except ClientError as exc:
            message = exc.response["Error"]["Message"]
            if "--allow-path" in message:
                folder = os.path.commonpath([str(p.resolve()) for p in (training, validation, output)])
                raise TuneError(f"the server at {self.url} may not use the search's files ({message}): restart "
                                f"`tunesmith serve` with --allow-path {folder}") from None
            raise TuneError(f"the server at {self.url} refused trial job {name}: {exc.response['Error']['Code']}: {message}") from None
        return response["jobArn"]

    def job(self, arn: str) -> dict:
        return self.call("get_model_customization_job", jobIdentifier=arn)

    def stop(self, arn: str) -> None:
        """StopModelCustomizationJob; a job that has already ended is left as it is."""
        from botocore.exceptions import ClientError

        try:
            self.call("stop_model_customization_job", jobIdentifier=arn)
        except ClientError:  # ended meanwhile (Completed, Failed, Stopped): nothing to stop
            pass

    def delete_model(self, arn: str) -> None:
        """Free the server's disk of a scored trial's model (as an in-process trial deletes its weights)."""
        from botocore.exceptions import ClientError

        try:
            self.call("delete_custom_model", modelIdentifier=arn)
        except ClientError:
            pass

    # -- tunesmith's additions -------------------------------------------------------------------
    def events(self, name: str, after: int) -> list[dict]:
        """The job's training events from line ``after`` on (complete lines only)."""
        from tunesmith.client import signed_get

        url = f"{self.url}/model-customization-jobs/{quote(name, safe='')}/events?after={after}"
        try:
            body = signed_get(url, timeout=30)
        except urllib.error.HTTPError as exc:
            raise TuneError(f"the server at {self.url} did not give job {name}'s events: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServerUnreachable(f"cannot reach the tunesmith server at {self.url} ({exc}); is `tunesmith serve` running there?") from None
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]

    def answers(self, model_arn: str, chats: list[list[dict[str, str]]], max_tokens: int) -> list[str]:
        """Greedy answers (Converse, temperature 0) of the custom model to each chat."""
        from tunesmith.distillation.teachers import BedrockTeacher, RemoteError

        try:
            teacher = BedrockTeacher(model_arn, self.url)
            return [c.text for c in teacher.answer(chats, min(max_tokens, guide.MAX_RESPONSE_TOKENS))]
        except RemoteError as exc:
            raise TuneError(f"the server at {self.url} could not answer the held-out records with {model_arn}: {exc}") from None

