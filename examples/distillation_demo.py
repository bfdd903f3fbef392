"""Distillation demo: a teacher good at the quickstart task teaches a fresh micro from prompts alone.

    tunesmith quickstart                       # makes the teacher: micro fine-tuned on labels
    python examples/distillation_demo.py tunesmith-quickstart/micro-lora demo-distill

The student never sees a label: the quickstart's 1,000 training prompts go to the teacher,
its accepted answers become the student's training data (advised hyperparameters), and the
teacher, the base micro and the distilled student are scored on the same 100 held-out
records the quickstart uses.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tunesmith.distillation.distill import DistillConfig, run_distillation
from tunesmith.distillation.teachers import LocalTeacher
from tunesmith.evaluation.evaluate import evaluate
from tunesmith.quickstart.run import GENERATION, TEST_RECORDS, TRAIN_RECORDS
from tunesmith.quickstart.task import make_splits


def main(teacher_folder: str, output: str) -> None:
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    train, test = make_splits(TRAIN_RECORDS, TEST_RECORDS)
    prompts = [{**r, "messages": r["messages"][:1]} for r in train]  # the answers are dropped
    (folder / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in prompts))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))

    teacher = LocalTeacher.load(teacher_folder, batch_size=32)
    report = run_distillation(
        DistillConfig(data=folder / "prompts.jsonl", output=folder / "run", student="micro", max_response_length=32),
        teacher, on_step=lambda info: print(f"student step {info.step}/{info.total_steps} loss {info.loss:.3f}", flush=True),
    )
    print(json.dumps(report["synthesis"], indent=2))
    if report["stopped"]:  # a half-trained student is not worth scoring
        sys.exit(f"stopped at student step {report['steps']} of {report['totalSteps']}; continue with DistillConfig(..., resume=True)")
    rows = []
    for name, spec in (("teacher", teacher_folder), ("base micro", "micro"), ("distilled student", str(folder / "run" / "student"))):
        result = evaluate(spec, folder / "test.jsonl", GENERATION)
        rows.append((name, result))
        print(f"{name:<18} exact match {result.exact_match:6.1%}  ROUGE-L {result.rouge_l:.3f}", flush=True)
    (folder / "demo.json").write_text(json.dumps({name: r.as_dict() for name, r in rows} | {"synthesis": report["synthesis"]}, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:3])
