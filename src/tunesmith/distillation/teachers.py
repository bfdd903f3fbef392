"""Teachers: models that write answers for prompts.

- A local model: a tier, a custom model (result folder), a local HF folder or a .gguf file.
  Generation is batched (prompts grouped by length, KV cache), on ``device`` in the
  precision training would use there (:func:`tunesmith.devices.place`).
- A remote endpoint speaking Bedrock's runtime API (boto3 Converse; tunesmith's own server
  included) or an OpenAI-compatible chat-completions URL. Remote calls run with a bounded
  concurrency and retry with exponential backoff.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from tunesmith.devices import Placement, place
from tunesmith.errors import TunesmithError
from tunesmith.evaluation.generation import Completion, GenerationSettings, generate

Chat = list[dict[str, str]]


class Teacher(Protocol):
    name: str

    def answer(self, chats: Sequence[Chat], max_tokens: int, on_done: Callable[[int], None] | None = None) -> list[Completion]:
        ...


@dataclass
class LocalTeacher:
    name: str
    model: object
    tokenizer: object
    batch_size: int = 16
    placement: Placement | None = None
    """The model's device and precision; None: where the model is, in fp32."""

    @classmethod
    def load(cls, spec: str, batch_size: int = 16, device: str = "auto", precision: str = "auto") -> LocalTeacher:
        """Load ``spec`` onto ``device`` (DeviceError when it is not there)."""
        from tunesmith.models.loading import load_model, load_tokenizer
        from tunesmith.models.registry import resolve_model

        source = resolve_model(spec)
        placement = place(device, precision)
        return cls(source.name, load_model(source, device=placement.device), load_tokenizer(source), batch_size, placement)

    def answer(self, chats, max_tokens, on_done=None):
        settings = GenerationSettings(max_new_tokens=max_tokens, batch_size=self.batch_size)
        return generate(self.model, self.tokenizer, chats, settings, on_done, self.placement)


class RemoteError(TunesmithError, RuntimeError):
    """A remote teacher refused or failed a request; ``retryable`` says whether to try again."""


def with_retries(call: Callable[[], Completion], attempts: int = 5, base_delay: float = 0.5) -> Completion:
    """Retry throttling and transient failures with jittered exponential backoff."""
    for attempt in range(attempts):
        try:
            return call()
        except RemoteError as exc:
            if attempt == attempts - 1 or not getattr(exc, "retryable", True):
                raise
            time.sleep(base_delay * 2**attempt * (0.5 + random.random()))
    raise AssertionError("unreachable")


def answer_concurrently(chats: Sequence[Chat], call: Callable[[Chat], Completion], concurrency: int,
                        on_done: Callable[[int], None] | None) -> list[Completion]:
    """``call`` on every chat, ``concurrency`` at a time, each with retries; results in order."""

    def one(chat: Chat) -> Completion:
        result = with_retries(lambda: call(chat))
        if on_done:
            on_done(1)
        return result

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, chats))


def _split(chat: Chat) -> tuple[list[dict], list[dict]]:
    system = [{"text": m["content"]} for m in chat if m["role"] == "system"]
    messages = [{"role": m["role"], "content": [{"text": m["content"]}]} for m in chat if m["role"] != "system"]
    return system, messages


@dataclass
class BedrockTeacher:
    """Any endpoint speaking Bedrock's runtime API, through boto3's Converse."""

    name: str
    endpoint: str | None
    concurrency: int = 4

    def _client(self):
        import boto3
        from botocore.config import Config

        session = boto3.session.Session()
        credentials = {} if session.get_credentials() else {"aws_access_key_id": "tunesmith", "aws_secret_access_key": "tunesmith"}
        return boto3.client("bedrock-runtime", endpoint_url=self.endpoint, region_name=session.region_name or "us-east-1",
                            config=Config(retries={"max_attempts": 1}, read_timeout=600), **credentials)

    def answer(self, chats, max_tokens, on_done=None):
        from botocore.exceptions import ClientError, EndpointConnectionError

        client = self._client()

        def call(chat: Chat) -> Completion:
            system, messages = _split(chat)
            try:
                kwargs = {"system": system} if system else {}
                response = client.converse(modelId=self.name, messages=messages, inferenceConfig={"maxTokens": max_tokens, "temperature": 0}, **kwargs)
            except ClientError as exc:
                error = RemoteError(f"{exc.response['Error']['Code']}: {exc.response['Error']['Message']}")
                error.retryable = exc.response["Error"]["Code"] in ("ThrottlingException", "ServiceUnavailableException", "InternalServerException")
                raise error from exc
            except EndpointConnectionError as exc:
                raise RemoteError(str(exc)) from exc
            text = "".join(b.get("text", "") for b in response["output"]["message"]["content"])
            usage = response.get("usage", {})
            return Completion(text.strip(), usage.get("inputTokens", 0), usage.get("outputTokens", 0), response.get("stopReason", "end_turn"))

        return answer_concurrently(chats, call, self.concurrency, on_done)


@dataclass
class OpenAITeacher:
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint (give the full URL)."""

    name: str
    url: str
    api_key: str | None = None
    concurrency: int = 4

    def answer(self, chats, max_tokens, on_done=None):
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})}

        def call(chat: Chat) -> Completion:
            body = json.dumps({"model": self.name, "messages": chat, "max_tokens": max_tokens, "temperature": 0}).encode()
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=600) as response:
                    data = json.loads(response.read())
            except urllib.error.HTTPError as exc:
                error = RemoteError(f"HTTP {exc.code} from {self.url}: {exc.read()[:200]!r}")
                error.retryable = exc.code in (429, 500, 502, 503, 504)
                raise error from exc
            except (urllib.error.URLError, TimeoutError) as exc:
                raise RemoteError(f"cannot reach {self.url}: {exc}") from exc
            choice = data["choices"][0]
            usage = data.get("usage", {})
            reason = {"stop": "end_turn", "length": "max_tokens"}.get(choice.get("finish_reason"), "end_turn")
            return Completion((choice["message"].get("content") or "").strip(), usage.get("prompt_tokens", 0),
                              usage.get("completion_tokens", 0), reason)

        return answer_concurrently(chats, call, self.concurrency, on_done)


def resolve_teacher(spec: str, endpoint: str | None = None, api: str = "bedrock", api_key: str | None = None, concurrency: int = 4,
                    device: str = "auto") -> Teacher:
    """A local model on ``device`` unless an endpoint is given."""
    if endpoint is None:
        return LocalTeacher.load(spec, device=device)
    if api == "openai":
        return OpenAITeacher(spec, endpoint, api_key, concurrency)
    return BedrockTeacher(spec, endpoint, concurrency)
