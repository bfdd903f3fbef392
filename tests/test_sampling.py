"""Choosing the next token: OpenAI's penalties and logit bias (exact numbers), sampling from a
request's own generator (what transformers draws, without its global state), and JSON answers
constrained by llguidance, which parse even when max_new_tokens is tight. The untrained tiny
model writes near-random tokens: the harshest test of a constraint."""

import json
import threading

import numpy as np
import pytest
import torch

from tunesmith.evaluation.generation import GenerationSettings, generate, generation_kwargs, render_prompt
from tunesmith.evaluation.json_output import ANY_OBJECT, block, schema_problem
from tunesmith.evaluation.sampling import Penalties, Sampling

QUESTIONS = [[{"role": "user", "content": f"What is {i} plus {i}?"}] for i in range(8)]


@pytest.fixture(scope="module")
def tiny(tiny_model):
    from tunesmith.models.loading import load_model, load_tokenizer
    from tunesmith.models.registry import resolve_model

    source = resolve_model(str(tiny_model))
    return load_model(source), load_tokenizer(source)


# --- Penalties and bias ---------------------------------------------------------------------
def test_penalties_and_bias_are_openais_formula_over_generated_tokens_only():
    # Two rows: prompt [5, 5] (not counted), then generated [1, 2, 2] and [2, 4, 4].
    input_ids = torch.tensor([[5, 5, 1, 2, 2], [5, 5, 2, 4, 4]])
    processor = Penalties(prompt_length=2, presence=0.5, frequency=0.25, bias={3: 2.0, 0: -100.0})
    scores = processor(input_ids, torch.zeros(2, 6))
    # logits[j] += bias[j] - c[j] * 0.25 - (c[j] > 0) * 0.5
    assert scores.tolist() == [[-100.0, -0.75, -1.0, 2.0, 0.0, 0.0],
                               [-100.0, 0.0, -0.75, 2.0, -1.0, 0.0]]


def test_negative_penalties_favour_what_was_said_and_nothing_generated_means_no_penalty():
    scores = Penalties(prompt_length=2, presence=-1.0, frequency=-2.0)(torch.tensor([[5, 5, 1, 1]]), torch.zeros(1, 3))
    assert scores.tolist() == [[0.0, 5.0, 0.0]]
    assert Penalties(prompt_length=2, presence=2.0, frequency=2.0)(torch.tensor([[5, 5]]), torch.zeros(1, 6)).tolist() == [[0.0] * 6]


# --- Sampling -------------------------------------------------------------------------------
def encoded(tokenizer, questions=QUESTIONS[:2]):
    tokenizer.padding_side = "left"
    prompts = [render_prompt(tokenizer, q) for q in questions]
    return tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)


@pytest.mark.parametrize(("temperature", "top_p", "top_k"), [(0.7, 0.9, None), (1.0, 1.0, 0), (1.5, 0.5, 5)])
def test_sampling_draws_what_transformers_draws_after_manual_seed(tiny, temperature, top_p, top_k):
    """Same warpers, same draw: only the generator is the request's own instead of torch's global one."""
    model, tokenizer = tiny
    inputs = encoded(tokenizer)
    torch.manual_seed(3)
    theirs = model.generate(**inputs, max_new_tokens=20, do_sample=True, temperature=temperature, top_p=top_p,
                            top_k=50 if top_k is None else top_k, pad_token_id=tokenizer.pad_token_id)
    settings = GenerationSettings(max_new_tokens=20, temperature=temperature, top_p=top_p, top_k=top_k, seed=3)
    ours = model.generate(**inputs, **generation_kwargs(tokenizer, settings, inputs["input_ids"].shape[1]))
    assert torch.equal(theirs, ours)


def test_sampling_leaves_one_token_and_a_seed_is_its_own():
    scores = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    first = Sampling(1.0, seed=11)
    picks = [int(first(None, scores).argmax()) for _ in range(8)]
    assert first(None, scores).isinf().sum() == 3
    torch.manual_seed(0), torch.rand(100)  # the global generator moving on changes nothing
    second = Sampling(1.0, seed=11)
    assert [int(second(None, scores).argmax()) for _ in range(8)] == picks
    assert int(Sampling(1.0, top_p=0.5, seed=11)(None, scores).argmax()) == 3  # the top token holds over half the mass


def test_same_seed_same_answers_while_other_threads_sample(tiny):
    """Four threads answer with seed 7 on their own copies of the model while a fifth keeps
    reseeding torch's global generator: every answer is the one a lone call gives."""
    import copy

    model, tokenizer = tiny
    settings = GenerationSettings(max_new_tokens=16, temperature=1.0, top_k=0, seed=7, batch_size=4)
    alone = generate(model, tokenizer, QUESTIONS, settings)
    results, stop = {}, threading.Event()

    def answer(index: int) -> None:
        results[index] = generate(copy.deepcopy(model), tokenizer, QUESTIONS, settings)

    def churn() -> None:
        while not stop.is_set():
            torch.manual_seed(int(torch.randint(0, 1000, ())))

    threads = [threading.Thread(target=answer, args=(i,)) for i in range(4)]
    noise = threading.Thread(target=churn)
    noise.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    noise.join()
    assert all(results[i] == alone for i in range(4))
    assert generate(model, tokenizer, QUESTIONS, GenerationSettings(max_new_tokens=16, temperature=1.0, top_k=0, seed=8, batch_size=4)) != alone


# --- JSON -----------------------------------------------------------------------------------
@pytest.mark.parametrize("max_new_tokens", [6, 9, 14, 24, 40])
def test_json_object_answers_always_parse_even_from_a_random_model_with_few_tokens(tiny, max_new_tokens):
    model, tokenizer = tiny
    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=1.0, top_k=0, seed=max_new_tokens, json_schema=ANY_OBJECT)
    answers = generate(model, tokenizer, QUESTIONS, settings)
    for answer in answers:
        assert isinstance(json.loads(answer.text), dict), answer
        assert answer.stop_reason == "end_turn" and answer.output_tokens <= max_new_tokens


def test_closing_nested_arrays_objects_strings_and_escapes_in_time(tiny):
    """Bias the random model towards opening things (and escaping): it still closes them all."""
    model, tokenizer = tiny
    ids = {c: tokenizer.convert_tokens_to_ids(c) for c in ':{["\\,-t'}
    for favoured in (':{["', '\\"', ':[",', ',-t\\'):
        settings = GenerationSettings(max_new_tokens=20, temperature=1.0, top_k=0, seed=1, json_schema=ANY_OBJECT,
                                      logit_bias={ids[c]: 6.0 for c in favoured})
        for answer in generate(model, tokenizer, QUESTIONS, settings):
            assert isinstance(json.loads(answer.text), dict), (favoured, answer)


def test_json_schema_answers_follow_the_schema(tiny):
    model, tokenizer = tiny
    schema = {"type": "object", "properties": {"sum": {"type": "integer"}, "unit": {"enum": ["apples", "pears"]}},
              "required": ["sum", "unit"], "additionalProperties": False}
    settings = GenerationSettings(max_new_tokens=80, temperature=1.0, top_k=0, seed=2, json_schema=schema)
    for answer in generate(model, tokenizer, QUESTIONS, settings):
        assert answer.stop_reason == "end_turn"
        value = json.loads(answer.text)
        assert set(value) == {"sum", "unit"} and isinstance(value["sum"], int) and value["unit"] in ("apples", "pears"), answer


def test_blocking_tokens_is_the_same_through_numpy_and_through_torch():
    blocked = np.array([False, True, False, True])
    on_cpu, strided = torch.zeros(4), torch.zeros(4, 2)[:, 0]  # a column is not contiguous: torch's masked_fill_ (as on a GPU)
    block(on_cpu, blocked)
    block(strided, blocked)
    assert on_cpu.tolist() == strided.tolist() == [0.0, float("-inf"), 0.0, float("-inf")]


def test_a_schema_llguidance_cannot_use_says_why():
    assert schema_problem({"type": "object", "properties": {"a": {"type": "integer"}}}) is None
    assert schema_problem({"type": "foo"}) == "Invalid type: foo"
    assert schema_problem({"$ref": "#/nowhere"}) == "Pointer '/nowhere' does not exist"
