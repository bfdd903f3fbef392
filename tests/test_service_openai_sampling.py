"""OpenAI's generation fields through the official ``openai`` client against a live server:
``seed``, the penalties, ``logit_bias``, ``response_format``, OpenAI's defaults (1 and 1), the
fields accepted and not used, those refused, and ``models.list`` holding only what can answer.

micro is the taught tiny model (short arithmetic answers), lite the untrained one (near-random
tokens, so different seeds give different answers), pro points at a folder that is not there.
Expected answers come from the engine (``generate``) with the same settings."""

import json

import openai
import pytest

from service_harness import ApiOnlyServer
from test_service_openai import post
from tunesmith.api.openai_protocol import ChatCompletionRequest
from tunesmith.api.openai_routes import generation_settings
from tunesmith.evaluation.generation import GenerationSettings, generate

QUESTION = "What is 2 plus 2?"
MESSAGES = [{"role": "user", "content": QUESTION}]


@pytest.fixture(scope="module")
def engines(taught_model, tiny_model):
    from tunesmith.models.loading import load_model, load_tokenizer
    from tunesmith.models.registry import resolve_model

    return {tier: (load_model(source), load_tokenizer(source))
            for tier, source in (("micro", resolve_model(str(taught_model))), ("lite", resolve_model(str(tiny_model))))}


@pytest.fixture
def served(tmp_path, taught_model, tiny_model):
    """A server whose configuration is the test's own (``TUNESMITH_CONFIG``: conftest's isolated_home)."""
    (tmp_path / "models.toml").write_text(f'[tiers.micro]\nsource = "{taught_model}"\n\n[tiers.lite]\nsource = "{tiny_model}"\n\n'
                                          f'[tiers.pro]\nsource = "{tmp_path / "nowhere"}"\n')
    with ApiOnlyServer(tmp_path / "home", tmp_path) as server:
        yield server, openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def reference(engines, tier: str, question: str = QUESTION, **settings) -> str:
    model, tokenizer = engines[tier]
    [answer] = generate(model, tokenizer, [[{"role": "user", "content": question}]], GenerationSettings(**{"max_new_tokens": 16, **settings}))
    return answer.text


def ask(client, model: str = "micro", **request) -> str:
    return client.chat.completions.create(model=model, messages=MESSAGES, **{"max_tokens": 16, **request}).choices[0].message.content


# --- Defaults and seed ----------------------------------------------------------------------
def test_unset_temperature_and_top_p_are_openais_1_and_1():
    settings = generation_settings(ChatCompletionRequest(model="micro", messages=MESSAGES))
    assert (settings.temperature, settings.top_p, settings.top_k, settings.seed, settings.json_schema) == (1.0, 1.0, 0, None, None)


def test_seed_gives_the_same_sampled_answer_and_other_seeds_others(served, engines):
    _, client = served
    first = ask(client, "lite", seed=42)
    assert first == ask(client, "lite", seed=42) == reference(engines, "lite", temperature=1.0, top_p=1.0, top_k=0, seed=42)
    streamed = client.chat.completions.create(model="lite", messages=MESSAGES, max_tokens=16, seed=42, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices) == first
    assert len({ask(client, "lite", seed=seed) for seed in range(4)} | {first}) >= 4
    assert ask(client, "lite") != ask(client, "lite")  # unseeded: a fresh seed each time
    # Converse's defaults (0.7, 0.9 and top-k 50) sample another answer from the same seed.
    assert first != reference(engines, "lite", temperature=0.7, top_p=0.9, seed=42)


# --- Penalties and bias ---------------------------------------------------------------------
def test_penalties_change_the_answer_as_the_engine_computes_them(served, engines):
    """The untrained model's greedy answer is one whitespace token repeated: a penalty breaks the loop."""
    _, client = served
    _, tokenizer = engines["lite"]
    plain = ask(client, "lite", temperature=0)
    assert plain == reference(engines, "lite") == ""
    for penalties in ({"frequency_penalty": 2.0}, {"presence_penalty": 2.0}):
        penalised = ask(client, "lite", temperature=0, **penalties)
        assert penalised == reference(engines, "lite", **penalties) != plain, penalties
    # Negative penalties reward repeating: sampled from the same seed, the answer changes too.
    sampled = ask(client, "lite", seed=5)
    for penalties in ({"frequency_penalty": -2.0}, {"presence_penalty": -2.0}):
        rewarded = ask(client, "lite", seed=5, **penalties)
        assert rewarded == reference(engines, "lite", temperature=1.0, top_p=1.0, top_k=0, seed=5, **penalties) != sampled, penalties


def test_logit_bias_bans_and_forces_tokens(served, engines):
    _, client = served
    _, tokenizer = engines["micro"]
    plain = ask(client, temperature=0)
    first = tokenizer(plain, add_special_tokens=False)["input_ids"][0]
    banned = ask(client, temperature=0, logit_bias={str(first): -100})
    assert banned == reference(engines, "micro", logit_bias={first: -100.0})
    assert tokenizer(banned, add_special_tokens=False)["input_ids"][0] != first
    plus = tokenizer(" plus", add_special_tokens=False)["input_ids"][-1]
    forced = client.chat.completions.create(model="micro", messages=MESSAGES, max_tokens=5, temperature=0, logit_bias={str(plus): 100})
    assert forced.choices[0].message.content == tokenizer.decode([plus] * 5).strip()
    assert (forced.choices[0].finish_reason, forced.usage.completion_tokens) == ("length", 5)
    # Sampled at temperature 1 too: +100 leaves no other token a chance.
    assert ask(client, max_tokens=5, seed=3, logit_bias={str(plus): 100}) == forced.choices[0].message.content


def test_logit_bias_names_tokens_of_the_models_vocabulary(served):
    server, _ = served
    status, error = post(server.url + "/v1/chat/completions", {"model": "micro", "messages": MESSAGES, "logit_bias": {"400": 1}})
    assert status == 400
    assert error["error"] == {"message": "logit_bias: token 400 is not in the vocabulary of micro (ids 0 to 399)",
                              "type": "invalid_request_error", "param": "logit_bias", "code": None}


# --- JSON -----------------------------------------------------------------------------------
@pytest.mark.parametrize("tier", ["micro", "lite"])
def test_json_object_answers_parse_streamed_or_not(served, tier):
    _, client = served
    for seed in range(2):
        for max_tokens in (8, 24):
            request = {"model": tier, "messages": MESSAGES, "max_tokens": max_tokens, "seed": seed, "response_format": {"type": "json_object"}}
            answer = client.chat.completions.create(**request)
            assert isinstance(json.loads(answer.choices[0].message.content), dict), answer
            assert answer.choices[0].finish_reason == "stop"
            chunks = client.chat.completions.create(**request, stream=True)
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer.choices[0].message.content


def test_json_schema_answers_follow_the_schema(served):
    _, client = served
    schema = {"type": "object", "properties": {"sum": {"type": "integer"}, "unit": {"enum": ["apples", "pears"]}},
              "required": ["sum", "unit"], "additionalProperties": False}
    form = {"type": "json_schema", "json_schema": {"name": "sum", "schema": schema, "strict": True}}
    for seed in range(3):
        value = json.loads(ask(client, "lite", seed=seed, max_tokens=80, response_format=form))
        assert set(value) == {"sum", "unit"} and isinstance(value["sum"], int) and value["unit"] in ("apples", "pears"), value


# --- What is accepted and not used, and what is refused --------------------------------------
def test_fields_that_change_nothing_are_accepted_and_change_nothing(served):
    _, client = served
    plain = ask(client, temperature=0)
    ignored = {"user": "u-1", "safety_identifier": "s-1", "prompt_cache_key": "k", "prompt_cache_retention": "24h",
               "metadata": {"team": "a"}, "service_tier": "auto", "store": False, "logprobs": False, "modalities": ["text"],
               "parallel_tool_calls": True, "tool_choice": "none", "reasoning_effort": "none", "verbosity": "medium",
               "prediction": {"type": "content", "content": "2 plus 2 is 4."}, "response_format": {"type": "text"}, "n": 1,
               "presence_penalty": 0, "frequency_penalty": 0, "logit_bias": {}}
    assert ask(client, temperature=0, **ignored) == plain
    extra = {"prompt_cache_options": {"mode": "implicit", "ttl": "30m"}}
    assert ask(client, temperature=0, extra_body=extra) == plain
    chunks = client.chat.completions.create(model="micro", messages=MESSAGES, max_tokens=16, temperature=0, stream=True,
                                            stream_options={"include_usage": True, "include_obfuscation": False})
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == plain


@pytest.mark.parametrize(("request_fields", "param", "message"), [
    ({"seed": 2**63}, "seed", f"seed {2**63} is out of range: must be at most {2**63 - 1}"),
    ({"presence_penalty": 2.5}, "presence_penalty", "presence_penalty 2.5 is out of range: must be at most 2.0"),
    ({"frequency_penalty": -3}, "frequency_penalty", "frequency_penalty -3 is out of range: must be at least -2.0"),
    ({"logit_bias": {"50": 101}}, "logit_bias[50]", "logit_bias[50] 101 is out of range: must be at most 100.0"),
    ({"logit_bias": {"plus": 1}}, "logit_bias", "logit_bias: keys are token ids, such as \"15339\"; 'plus' is not one"),
    ({"response_format": {"type": "xml"}}, "response_format.type",
     "response_format.type 'xml' is not one of 'text', 'json_object' or 'json_schema'"),
    ({"response_format": {"type": "json_schema"}}, "response_format",
     "response_format: json_schema goes with type json_schema, and only with it"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "foo"}}}},
     "response_format.json_schema.schema",
     "response_format.json_schema.schema: answers cannot be constrained to this schema: Invalid type: foo"),
    ({"store": True}, "store", "store: this server keeps no completions; send false or leave it out"),
    ({"logprobs": True}, "logprobs", "logprobs: log probabilities are not implemented by this server; send false or leave it out"),
    ({"top_logprobs": 2}, "top_logprobs", "top_logprobs: log probabilities are not implemented by this server; send false or leave it out"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "tools: function calling is not implemented by this server"),
    ({"tool_choice": "required"}, "tool_choice",
     "tool_choice: function calling is not implemented by this server: without tools, only none and auto (the same here) are accepted"),
    ({"modalities": ["text", "audio"]}, "modalities", 'modalities: only text answers are implemented; send ["text"] or leave it out'),
    ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio", "audio: audio answers are not implemented by this server"),
    ({"reasoning_effort": "high"}, "reasoning_effort", "reasoning_effort: these models do not reason; only none is accepted"),
    ({"verbosity": "low"}, "verbosity", "verbosity: answers have no verbosity setting; only medium (the default) is accepted"),
    ({"web_search_options": {}}, "web_search_options", "web_search_options: web search is not implemented by this server"),
    ({"moderation": {"mode": "block"}}, "moderation", "moderation: moderation is not implemented by this server"),
    ({"service_tier": "gold"}, "service_tier",
     "service_tier 'gold' is not one of 'auto', 'default', 'flex', 'scale', 'priority' or 'fast'"),
])
def test_fields_that_would_change_the_answer_are_refused_by_name(served, request_fields, param, message):
    server, _ = served
    status, error = post(server.url + "/v1/chat/completions", {"model": "micro", "messages": MESSAGES, **request_fields})
    assert status == 400
    assert error == {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}


# --- Models ---------------------------------------------------------------------------------
def test_models_lists_only_what_can_answer(served):
    _, client = served
    assert [m.id for m in client.models.list().data] == ["micro", "lite"]
    assert client.models.retrieve("amazon.nova-lite-v1:0").parent == "lite"
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("pro")
    assert missing.value.body["code"] == "model_not_found" and missing.value.body["param"] == "model"
    assert missing.value.body["message"].startswith("pro cannot answer here: ") and "nowhere does not exist" in missing.value.body["message"]
