"""tunesmith decide: the guide's rules on measured scores, and two contrasting cases end to end."""

import pytest

from conftest import arithmetic, write_jsonl
from test_distillation import CodeTeacher
from tunesmith import guide
from tunesmith.distillation.decide import Measurement, apply_rules, decide, split
from tunesmith.evaluation.generation import Completion


def m(name, score, speed=10.0):
    return Measurement(name, score, score, speed, None)


def test_rules():
    assert apply_rules(m("t", 0.1), m("s", 0.0), m("ft", 0.6))[1] is guide.FINE_TUNE_INTELLIGENCE_GAP
    assert apply_rules(m("t", 0.9), m("s", 0.1), m("ft", 0.85))[1] is guide.FINE_TUNE_NARROW_DOMAIN
    recommendation, rule, text = apply_rules(m("t", 0.95, speed=20), m("s", 0.0, 100), m("ft", 0.4, 100))
    assert (recommendation, rule) == ("distill", guide.DISTILL_FOR_LATENCY) and "5.0x the teacher's speed" in text
    assert apply_rules(m("t", 0.5), m("s", 0.0), m("ft", 0.1))[0] == "distill"


def test_split_is_deterministic_and_bounded():
    records = arithmetic(50)
    rest, holdout = split(records)
    assert (len(rest), len(holdout)) == (40, 10) and split(records) == (rest, holdout)
    with pytest.raises(ValueError, match="too few"):
        split(arithmetic(15))


class WrongTeacher(CodeTeacher):
    name = "wrong"

    def answer(self, chats, max_tokens, on_done=None):
        return [Completion("I think it is 42.", 5, 6, "end_turn") for _ in chats]


@pytest.mark.parametrize("teacher,expected,rule", [
    (CodeTeacher(), "distill", guide.DISTILL_FOR_LATENCY),  # a teacher that knows the task; the tiny student does not
    (WrongTeacher(), "fine-tune", guide.FINE_TUNE_INTELLIGENCE_GAP),  # even the teacher fails
])
def test_two_contrasting_cases(tmp_path, tiny_model, teacher, expected, rule):
    write_jsonl(tmp_path / "labelled.jsonl", arithmetic(40))
    decision = decide(tmp_path / "labelled.jsonl", teacher, str(tiny_model), tmp_path / "work", max_tokens=12, precision="fp32")
    assert (decision.recommendation, decision.rule) == (expected, rule)
    assert decision.teacher.exact_match == (1.0 if expected == "distill" else 0.0)
    assert decision.holdout == 8 and decision.train_records == 32
    assert (tmp_path / "work" / "student" / "manifest.json").exists()
    assert set(decision.as_dict()) >= {"recommendation", "rule", "explanation", "measurements"}


def test_a_stopped_fine_tune_is_not_scored(tmp_path, tiny_model):
    write_jsonl(tmp_path / "labelled.jsonl", arithmetic(40))
    scored = []

    def load(spec):
        scored.append(spec)
        return CodeTeacher()

    with pytest.raises(InterruptedError, match=r"the student's fine-tune stopped at step 0 of 2: no decision without it"):
        decide(tmp_path / "labelled.jsonl", CodeTeacher(), str(tiny_model), tmp_path / "work", student_teacher=load,
               precision="fp32", stop=lambda: True)
    assert scored == [str(tiny_model)]  # the base student only; never the half-trained one
