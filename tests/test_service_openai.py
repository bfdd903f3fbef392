"""The OpenAI-compatible API through the official ``openai`` client, against a live server whose
micro tier is the taught tiny model (it answers "What is n plus n?" with short text and an
end token). Expected answers come from the engine itself (``generate``), so each API answer
is checked token for token; stop sequences are checked in the engine first."""

import json
import urllib.error
import urllib.request

import openai
import pytest

from service_harness import ApiOnlyServer
from tunesmith.evaluation.generation import Completion, GenerationSettings, completion_of, first_stop, generate
from tunesmith.jobs import arns
from tunesmith.jobs.store import CustomModel, new_id

QUESTION = "What is 2 plus 2?"
MESSAGES = [{"role": "user", "content": QUESTION}]


@pytest.fixture(scope="module")
def engine(taught_model):
    """The taught model loaded in the test process: the reference every API answer must equal."""
    from tunesmith.models.loading import load_model, load_tokenizer
    from tunesmith.models.registry import resolve_model

    source = resolve_model(str(taught_model))
    return load_model(source), load_tokenizer(source)


def expected(engine, max_new_tokens: int = 24, stop: tuple[str, ...] = (), question: str = QUESTION) -> Completion:
    model, tokenizer = engine
    [completion] = generate(model, tokenizer, [[{"role": "user", "content": question}]],
                            GenerationSettings(max_new_tokens=max_new_tokens, stop=stop))
    return completion


def open_server(tmp_path, taught_model, **options) -> ApiOnlyServer:
    (tmp_path / "models.toml").write_text(f'[tiers.micro]\nsource = "{taught_model}"\neffective_batch_size = 16\n')
    return ApiOnlyServer(tmp_path / "home", tmp_path, **options)


@pytest.fixture
def served(tmp_path, taught_model):
    with open_server(tmp_path, taught_model) as server:
        yield server, openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


# --- Stop sequences in the engine -----------------------------------------------------------
def test_first_stop_is_the_earliest_of_all_stop_sequences():
    assert first_stop("2 plus 2 is 4.", (".", " is", "plus")) == 2
    assert first_stop("2 plus 2 is 4.", ("minus",)) is None
    assert first_stop("anything", ()) is None


def test_generation_ends_at_a_stop_sequence_which_the_answer_leaves_out(engine):
    whole = expected(engine)
    assert whole.stop_reason == "end_turn" and " is " in whole.text, whole
    cut = expected(engine, stop=(" is",))
    assert cut.text == whole.text[: whole.text.index(" is")]
    assert cut.stop_reason == "stop_sequence"
    # Generation itself ended at the token that completed " is": fewer tokens than the whole answer.
    model, tokenizer = engine
    tokens_to_stop = len(tokenizer(whole.text[: whole.text.index(" is") + 3], add_special_tokens=False)["input_ids"])
    assert cut.output_tokens == tokens_to_stop < whole.output_tokens


def test_each_row_of_a_batch_ends_at_its_own_stop(engine):
    model, tokenizer = engine
    questions = ["What is 2 plus 2?", "What is 12 plus 12?"]
    alone = [expected(engine, stop=(" is",), question=q) for q in questions]
    batched = generate(model, tokenizer, [[{"role": "user", "content": q}] for q in questions],
                       GenerationSettings(max_new_tokens=24, stop=(" is",)))
    assert batched == alone
    assert [c.stop_reason for c in batched] == ["stop_sequence", "stop_sequence"]


def test_padding_with_the_end_token_after_a_stop_is_not_counted(engine):
    """Models whose pad token is the end token pad a stopped row with it: not an end of turn."""
    model, tokenizer = engine
    ids = tokenizer("2 plus 2 is", add_special_tokens=False)["input_ids"]
    import torch

    row = torch.tensor(ids + [tokenizer.eos_token_id] * 3)
    completion = completion_of(tokenizer, row, 17, GenerationSettings(stop=(" is",)))
    assert completion == Completion("2 plus 2", 17, len(ids), "stop_sequence")


def test_converse_stops_there_too_streamed_or_not(served, engine):
    server, _ = served
    reference = expected(engine, stop=(" is",))
    runtime = server.client("bedrock-runtime")
    request = {"modelId": "micro", "messages": [{"role": "user", "content": [{"text": QUESTION}]}],
               "inferenceConfig": {"maxTokens": 24, "temperature": 0, "stopSequences": [" is"]}}
    whole = runtime.converse(**request)
    assert whole["output"]["message"]["content"][0]["text"] == reference.text
    assert (whole["stopReason"], whole["usage"]["outputTokens"]) == ("stop_sequence", reference.output_tokens)
    events = list(runtime.converse_stream(**request)["stream"])
    assert "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e) == reference.text
    assert events[-2]["messageStop"]["stopReason"] == "stop_sequence" and events[-1]["metadata"]["usage"] == whole["usage"]


# --- Chat completions -----------------------------------------------------------------------
def test_answer_and_usage_equal_the_engines(served, engine):
    _, client = served
    reference = expected(engine)
    response = client.chat.completions.create(model="micro", messages=MESSAGES, temperature=0, max_tokens=24)
    assert response.object == "chat.completion" and response.id.startswith("chatcmpl-") and response.model == "micro"
    [choice] = response.choices
    assert (choice.index, choice.message.role, choice.message.content, choice.finish_reason) == (0, "assistant", reference.text, "stop")
    assert (response.usage.prompt_tokens, response.usage.completion_tokens, response.usage.total_tokens) == (
        reference.input_tokens, reference.output_tokens, reference.input_tokens + reference.output_tokens)


def test_system_message_and_text_parts(served, engine):
    """Text parts are joined with newlines and the system message leads, as in Converse."""
    _, client = served
    model, tokenizer = engine
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2\nplus 2?"}]
    [reference] = generate(model, tokenizer, [chat], GenerationSettings(max_new_tokens=24))
    messages = [{"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": [{"type": "text", "text": "What is 2"}, {"type": "text", "text": "plus 2?"}]}]
    response = client.chat.completions.create(model="amazon.nova-micro-v1:0", messages=messages, temperature=0, max_tokens=24)
    assert response.choices[0].message.content == reference.text
    assert response.usage.prompt_tokens == reference.input_tokens


def test_max_tokens_gives_finish_reason_length(served, engine):
    _, client = served
    reference = expected(engine, max_new_tokens=3)
    assert reference.stop_reason == "max_tokens"
    for limit in ({"max_tokens": 3}, {"max_completion_tokens": 3}, {"max_tokens": 50, "max_completion_tokens": 3}):
        response = client.chat.completions.create(model="micro", messages=MESSAGES, temperature=0, **limit)
        assert response.choices[0].finish_reason == "length", limit
        assert response.choices[0].message.content == reference.text
        assert response.usage.completion_tokens == 3


def test_stop_sequences(served, engine):
    _, client = served
    whole = expected(engine).text
    _, tokenizer = engine
    for stop in (" is", [".", " is"], "plus"):
        stops = (stop,) if isinstance(stop, str) else tuple(stop)
        reference = expected(engine, stop=stops)
        response = client.chat.completions.create(model="micro", messages=MESSAGES, temperature=0, max_tokens=24, stop=stop)
        content = response.choices[0].message.content
        assert content == reference.text == whole[: first_stop(whole, stops)].strip(), stop
        assert response.choices[0].finish_reason == "stop"
        at = first_stop(whole, stops)
        through_stop = whole[: at + min(len(s) for s in stops if whole.find(s) == at)]
        # Generation ended at the token that completed the stop sequence.
        assert response.usage.completion_tokens == reference.output_tokens == len(tokenizer(through_stop, add_special_tokens=False)["input_ids"])


def collect(client, **request) -> list:
    return list(client.chat.completions.create(model="micro", messages=MESSAGES, temperature=0, stream=True, **request))


def test_streaming_equals_the_answer(served):
    _, client = served
    for extra in ({}, {"stop": " is"}, {"max_tokens": 3}):
        request = {"max_tokens": 24, **extra}
        whole = client.chat.completions.create(model="micro", messages=MESSAGES, temperature=0, **request)
        chunks = collect(client, stream_options={"include_usage": True}, **request)
        assert {c.id for c in chunks} == {chunks[0].id} and all(c.object == "chat.completion.chunk" for c in chunks)
        assert chunks[0].choices[0].delta.role == "assistant"
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == whole.choices[0].message.content, extra
        finishing, usage = chunks[-2], chunks[-1]
        assert finishing.choices[0].finish_reason == whole.choices[0].finish_reason
        assert [c.choices[0].finish_reason for c in chunks[:-2]] == [None] * (len(chunks) - 2)
        assert usage.choices == [] and usage.usage == whole.usage
        assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_usage_has_none_and_ends_with_done(served):
    server, client = served
    chunks = collect(client, max_tokens=24)
    assert all(c.usage is None for c in chunks) and chunks[-1].choices[0].finish_reason == "stop"
    body = json.dumps({"model": "micro", "messages": MESSAGES, "stream": True, "max_tokens": 4}).encode()
    request = urllib.request.Request(server.url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        lines = response.read().decode().split("\n\n")
    assert lines[-2:] == ["data: [DONE]", ""]
    assert all(line.startswith("data: {") for line in lines[:-2])


# --- Models ---------------------------------------------------------------------------------
def add_custom_model(server, folder, name: str) -> str:
    """An Active custom model row pointing at a model folder (what a finished job leaves)."""
    store, model_id = server.app.state.store, new_id()
    arn = arns.model_arn("amazon.nova-micro-v1:0:128k", model_id)
    with store.session() as session:
        session.add(CustomModel(id=model_id, arn=arn, name=name, job_arn="arn:aws:bedrock:us-east-1:123456789012:model-customization-job/x",
                                job_name="x", base_model_arn=arns.foundation_model_arn("amazon.nova-micro-v1:0:128k"),
                                customization_type="FINE_TUNING", status="Active", folder=str(folder)))
        session.commit()
    return arn


def test_models_list_tiers_custom_models_and_deployments(served, taught_model, engine, tmp_path):
    server, client = served
    arn = add_custom_model(server, taught_model, "arith")
    server.client().create_custom_model_deployment(modelDeploymentName="arith-live", modelArn=arn)
    listed = client.models.list().data
    # lite and pro have no model configured here: they cannot answer, so they are not listed.
    assert [(m.id, m.object, m.owned_by, m.parent) for m in listed] == [
        ("micro", "model", "tunesmith", None), ("arith", "model", "custom", "micro"), ("arith-live", "model", "custom", "arith"),
    ]
    assert listed[0].created == 0 and listed[1].created > 1_700_000_000
    assert client.models.retrieve("arith-live").parent == "arith"
    assert client.models.retrieve("amazon.nova-micro-v1:0").to_dict() == {
        "id": "amazon.nova-micro-v1:0", "object": "model", "created": 0, "owned_by": "tunesmith", "parent": "micro"}
    assert client.models.retrieve(arn).id == arn
    with pytest.raises(openai.NotFoundError) as unconfigured:
        client.models.retrieve("lite")
    assert unconfigured.value.body == {"message": f"lite cannot answer here: no model is configured for the lite tier: add to {tmp_path / 'models.toml'}",
                                       "type": "invalid_request_error", "param": "model", "code": "model_not_found"}
    reference = expected(engine)
    for name in ("arith", "arith-live", arn):
        response = client.chat.completions.create(model=name, messages=MESSAGES, temperature=0, max_tokens=24)
        assert response.choices[0].message.content == reference.text and response.model == name


def test_a_model_that_is_not_active_is_not_listed(served, taught_model):
    server, client = served
    add_custom_model(server, taught_model, "half-made")
    with server.app.state.store.session() as session:
        session.query(CustomModel).filter_by(name="half-made").update({"status": "Creating"})
        session.commit()
    assert "half-made" not in [m.id for m in client.models.list().data]
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("half-made")
    assert missing.value.body == {"message": "the model half-made is Creating; only Active models can be used", "type": "invalid_request_error",
                                  "param": "model", "code": "model_not_found"}
    with pytest.raises(openai.BadRequestError, match="model half-made is Creating; it cannot be invoked") as refused:
        client.chat.completions.create(model="half-made", messages=MESSAGES)
    assert refused.value.body["param"] == "model"


# --- Errors ---------------------------------------------------------------------------------
def test_unknown_model_is_a_404_in_openai_shape(served):
    _, client = served
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert info.value.status_code == 404
    assert info.value.body["message"].startswith("gpt-4o is not a base model, a custom model or a deployment: unknown model")
    assert {k: info.value.body[k] for k in ("type", "param", "code")} == {
        "type": "invalid_request_error", "param": "model", "code": "model_not_found"}
    with pytest.raises(openai.NotFoundError) as retrieved:
        client.models.retrieve("gpt-4o")
    assert retrieved.value.body["code"] == "model_not_found"


@pytest.mark.parametrize(("request_fields", "param", "message"), [
    ({"temperature": 3}, "temperature", "temperature 3 is out of range: must be at most 2.0"),
    ({"temperature": -0.5}, "temperature", "temperature -0.5 is out of range: must be at least 0.0"),
    ({"top_p": 0}, "top_p", "top_p 0 is out of range: must be above 0.0"),
    ({"max_tokens": 0}, "max_tokens", "max_tokens 0 is out of range: must be at least 1"),
    ({"n": 2}, "n", "n: 2 choices were asked for; this server generates one per request (n must be 1)"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "stop has 5 entries; at most 4 are allowed"),
    ({"stream_options": {"include_usage": True}}, "stream_options", "stream_options: is only allowed when stream is true"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "tools: function calling is not implemented by this server"),
    ({"best_of": 2}, "best_of", "best_of is not a field of this request"),
    ({"messages": []}, "messages", "messages has 0 entries; at least 1 are required"),
    ({"messages": [{"role": "bot", "content": "hi"}]}, "messages[0].role",
     "messages[0].role 'bot' is not one of 'system', 'developer', 'user' or 'assistant'"),
    ({"messages": [{"role": "user", "content": None}]}, "messages[0].content",
     'messages[0].content: must be a string or a list of {"type": "text", "text": ...} parts'),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages[0].content[0].type",
     "messages[0].content[0].type 'image_url' is not one of 'text'; messages[0].content[0].text is required; "
     "messages[0].content[0].image_url is not a field of this request"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, None, "the last message must be from the user"),
])
def test_bad_requests_are_400s_that_name_the_field(served, request_fields, param, message):
    server, _ = served
    body = {"model": "micro", "messages": MESSAGES, **request_fields}
    status, error = post(server.url + "/v1/chat/completions", body)
    assert status == 400
    assert error == {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}


def test_the_client_raises_bad_request_for_a_bad_temperature(served):
    _, client = served
    with pytest.raises(openai.BadRequestError, match="temperature 3 is out of range") as info:
        client.chat.completions.create(model="micro", messages=MESSAGES, temperature=3)
    assert info.value.param == "temperature" and info.value.type == "invalid_request_error"


def post(url: str, body, headers: dict | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_unparseable_unknown_routes_and_oversized_bodies_answer_in_openai_shape(served):
    server, client = served
    status, error = post(server.url + "/v1/chat/completions", b"{not json")
    assert status == 400 and error["error"]["message"].startswith("the request body is not valid JSON")
    status, error = post(server.url + "/v1/completions", {"model": "micro", "prompt": "hi"})
    assert (status, error["error"]["message"], error["error"]["type"]) == (404, "no operation at POST /v1/completions", "invalid_request_error")
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="micro", messages=[{"role": "user", "content": "x" * (2 << 20)}])
    assert info.value.status_code == 413 and info.value.body["message"].startswith("the request body is")


# --- Auth -----------------------------------------------------------------------------------
def test_with_credentials_the_secret_is_the_api_key(tmp_path, taught_model, engine):
    with open_server(tmp_path, taught_model, credentials={"AKIDTUNESMITH": "s3cret"}) as server:
        base = server.url + "/v1"
        good = openai.OpenAI(base_url=base, api_key="s3cret", max_retries=0)
        assert [m.id for m in good.models.list().data] == ["micro"]
        answer = good.chat.completions.create(model="micro", messages=MESSAGES, temperature=0, max_tokens=24)
        assert answer.choices[0].message.content == expected(engine).text
        for key in ("wrong", "AKIDTUNESMITH"):  # a secret, not an access key id
            with pytest.raises(openai.AuthenticationError) as info:
                openai.OpenAI(base_url=base, api_key=key, max_retries=0).chat.completions.create(model="micro", messages=MESSAGES)
            assert info.value.status_code == 401
            assert info.value.body == {"message": "the API key is not the secret of any credentials this server has",
                                       "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}
        status, error = post(base + "/chat/completions", {"model": "micro", "messages": MESSAGES})
        assert status == 401 and error["error"]["code"] is None
        assert error["error"]["message"].startswith("no API key: send Authorization: Bearer <secret>")
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "/models")
        assert missing.value.code == 401
        # boto3's SigV4 signature is good on /v1 too.
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        for secret, status in (("s3cret", 200), ("wrong", 401)):
            signed = AWSRequest(method="GET", url=base + "/models")
            SigV4Auth(Credentials("AKIDTUNESMITH", secret), "bedrock", "us-east-1").add_auth(signed)
            try:
                answered = urllib.request.urlopen(urllib.request.Request(base + "/models", headers=dict(signed.headers.items()))).status
            except urllib.error.HTTPError as exc:
                answered = exc.code
                assert json.loads(exc.read())["error"]["message"].startswith("The request signature we calculated does not match")
            assert answered == status
        # The Bedrock routes still want SigV4, and say so in Bedrock's shape.
        with pytest.raises(urllib.error.HTTPError) as bedrock:
            urllib.request.urlopen(urllib.request.Request(server.url + "/custom-models", headers={"Authorization": "Bearer s3cret"}))
        assert bedrock.value.code == 403 and bedrock.value.headers["x-amzn-ErrorType"] == "AccessDeniedException"
