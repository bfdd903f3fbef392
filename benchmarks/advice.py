"""Does the advisor's advice train better models? The guide's defaults, the guide's rules as
written, the advisor's settings and ``tunesmith tune``'s best, on four tasks with computed
answers, at three dataset sizes.

    python benchmarks/advice.py [--tasks classify,extract,sort_list,compose] [--sizes 300,1000,5000]
                                [--settings defaults,guide,advice,tune] [--tune-budget 10m] [--model micro]
                                [--device auto] [--output advice-results]

For every task and size (``advice_tasks.py``: the same 200 held-out test records at every
size) and every setting, it fine-tunes the model (LoRA) with that setting's hyperparameters
and duplication, then scores the trained model on the test split: greedy exact match and the
answer loss. Compute spent is the training tokens (every epoch and duplicate) and minutes of
the training alone; for ``tune`` it is the whole search plus the final training. ``tune``
never sees the test split: it holds out part of the training records itself.

``guide`` is ``recommend(..., as_written=True)``: the guide's rules without tunesmith's measured
deviations (``tunesmith/deviations.py``); ``advice`` is what ``tunesmith advise`` says. Where
the two choose the same settings, the ``advice`` cell reuses the ``guide`` cell's scores
(``sameAs`` in the results) instead of training the same thing twice.

Each finished cell is saved in ``OUTPUT/results.json`` as soon as it is done, and a rerun
skips the cells that are there, so the benchmark can run in pieces (one task at a time, on
different days, or on a GPU). ``OUTPUT/results.md`` is the table, rewritten after each cell,
with the machine it ran on. The README's table is that file.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from advice_tasks import SIZES, TASKS, TEST_RECORDS, splits  # noqa: E402

SETTINGS = ("defaults", "guide", "advice", "tune")
MAX_NEW_TOKENS = {"classify": 8, "extract": 48, "sort_list": 112, "compose": 16}


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    name = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            name = line.split(":", 1)[1].strip()
            break
    return f"{name} ({platform.machine()}, {torch.get_num_threads()} threads), torch {torch.__version__}"


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def chosen_settings(setting: str, train: Path, records: int, model: str, folder: Path, budget: str, device: str) -> dict:
    """The hyperparameters (wire map) and duplication of ``setting``, and what choosing them cost."""
    from tunesmith.advisor import recommend
    from tunesmith.hyperparameters import Hyperparameters
    from tunesmith.models.registry import resolve_model

    if setting == "defaults":
        return {"hyperParameters": Hyperparameters().to_wire(), "duplicationFactor": 1, "searchTokens": 0, "searchSeconds": 0.0}
    if setting in ("guide", "advice"):
        advice = recommend(records, resolve_model(model).tier, as_written=setting == "guide")
        return {"hyperParameters": advice.hyperparameters.to_wire(), "duplicationFactor": advice.plan.duplication_factor,
                "searchTokens": 0, "searchSeconds": 0.0}
    started = time.perf_counter()
    command = [sys.executable, "-m", "tunesmith", "tune", str(train), "--model", model, "--budget", budget,
               "--output", str(folder / "tune"), "--device", device, "--json"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"tune failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    best = report["best"]
    return {"hyperParameters": best["hyperParameters"], "duplicationFactor": best["duplicationFactor"],
            "searchTokens": report["spent"]["tokens"], "searchSeconds": time.perf_counter() - started}


def run_cell(task: str, size: int, setting: str, model: str, folder: Path, budget: str, device: str, eval_batch: int) -> dict:
    from tunesmith.evaluation.evaluate import evaluate
    from tunesmith.evaluation.generation import GenerationSettings
    from tunesmith.hyperparameters import Hyperparameters
    from tunesmith.training import TrainConfig, finetune

    train_records, test_records = splits(task, size)
    train = write_jsonl(folder / "train.jsonl", train_records)
    test = write_jsonl(folder / "test.jsonl", test_records)
    chosen = chosen_settings(setting, train, size, model, folder / setting, budget, device)
    output = folder / setting / "run"
    config = TrainConfig(
        data=train, output=output, model=model, hyperparameters=Hyperparameters.from_wire(chosen["hyperParameters"]),
        hyperparameters_sent=chosen["hyperParameters"], duplication=int(chosen["duplicationFactor"]), device=device,
        resume=(output / "checkpoints").exists(),
    )
    result = finetune(config)
    if result.stopped:  # SIGINT/SIGTERM: the cell is not scored; a rerun resumes its training
        raise SystemExit(f"stopped while training {task} {size} {setting}; run the same command again to go on")
    scored = evaluate(str(output), test, GenerationSettings(max_new_tokens=MAX_NEW_TOKENS[task], batch_size=eval_batch), device)
    trained = result.manifest["result"]
    return {
        "task": task, "records": size, "setting": setting, "hyperParameters": chosen["hyperParameters"],
        "duplicationFactor": int(chosen["duplicationFactor"]), "steps": trained["steps"],
        "exactMatch": round(scored.exact_match, 4), "answerLoss": round(scored.loss, 4),
        "trainingTokens": trained["tokens"] + chosen["searchTokens"],
        "minutes": round((trained["wallSeconds"] + chosen["searchSeconds"]) / 60, 2),
    }


def same_as_guide(results: list[dict], task: str, size: int, setting: str, model: str) -> dict | None:
    """The ``guide`` cell's scores for an ``advice`` cell whose settings are the same."""
    if setting != "advice":
        return None
    from tunesmith.advisor import recommend
    from tunesmith.models.registry import resolve_model

    advice = recommend(size, resolve_model(model).tier)
    for r in results:
        if (r["task"], r["records"], r["setting"]) == (task, size, "guide") and r["duplicationFactor"] == \
                advice.plan.duplication_factor and r["hyperParameters"] == advice.hyperparameters.to_wire():
            return {**r, "setting": "advice", "sameAs": "guide"}
    return None


def write_table(results: list[dict], path: Path, ran_on: str, budget: str) -> str:
    """The table of ``results``; with cells from several machines, a column names each row's."""
    machines = sorted({r.get("machine", ran_on) for r in results}) or [ran_on]
    tuned = any(r["setting"] == "tune" for r in results)
    where = machines[0] if len(machines) == 1 else "; ".join(f"({chr(97 + i)}) {m}" for i, m in enumerate(machines))
    extra = len(machines) > 1
    lines = [
        f"Measured on {where}. Test split: {TEST_RECORDS} held-out records per task."
        + (f" `tune`: budget {budget}, compute includes its search." if tuned else ""),
        "",
        "| task | records | setting | epochs | LR | warmup | dup | exact match | answer loss | tokens | minutes |" + (" ran on |" if extra else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if extra else ""),
    ]
    order = {name: i for i, name in enumerate(TASKS)}
    for r in sorted(results, key=lambda r: (order[r["task"]], r["records"], SETTINGS.index(r["setting"]))):
        hp = r["hyperParameters"]
        lines.append(
            f"| {r['task']} | {r['records']:,} | {r['setting']}{' (= guide)' if r.get('sameAs') else ''} | {hp['epochCount']} | {hp['learningRate']} | "
            f"{hp['learningRateWarmupSteps']} | {r['duplicationFactor']} | {r['exactMatch']:.1%} | {r['answerLoss']:.3f} | "
            f"{r['trainingTokens']:,} | {r['minutes']:.1f} |" + (f" ({chr(97 + machines.index(r['machine']))}) |" if extra else "")
        )
    table = "\n".join(lines) + "\n"
    path.write_text(table)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--tune-budget", default="10m", help="tunesmith tune's --budget for each task and size")
    parser.add_argument("--model", default="micro")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", type=Path, default=Path("advice-results"))
    parser.add_argument("--eval-batch", type=int, default=25, help="test prompts generated at once")
    parser.add_argument("--table-only", action="store_true", help="rewrite OUTPUT/results.md from OUTPUT/results.json; train nothing")
    args = parser.parse_args()
    tasks, settings = args.tasks.split(","), args.settings.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    for name, known in (("task", TASKS), ("setting", SETTINGS)):
        unknown = [x for x in (tasks if name == "task" else settings) if x not in known]
        if unknown:
            parser.error(f"unknown {name} {unknown[0]!r}: choose from {', '.join(known)}")
    args.output.mkdir(parents=True, exist_ok=True)
    saved = args.output / "results.json"
    results: list[dict] = json.loads(saved.read_text()) if saved.exists() else []
    if args.table_only:
        print(write_table(results, args.output / "results.md", "unknown machine", args.tune_budget))
        return
    ran_on = machine()
    print(f"machine: {ran_on}", flush=True)
    for size in sizes:  # smallest first: a run cut short still covers every task at the small sizes
        for task in tasks:
            for setting in settings:
                if any((r["task"], r["records"], r["setting"]) == (task, size, setting) for r in results):
                    continue
                print(f"... {task} {size} {setting}", file=sys.stderr, flush=True)
                cell = same_as_guide(results, task, size, setting, args.model) or run_cell(task, size, setting, args.model, args.output / f"{task}-{size}", args.tune_budget, args.device,
                                args.eval_batch)
                cell.setdefault("machine", ran_on)
                results.append(cell)
                saved.write_text(json.dumps(results, indent=1))
                print(f"{task:<10}{size:>6} {setting:<9} exact match {cell['exactMatch']:.1%}, answer loss "
                      f"{cell['answerLoss']:.3f}, {cell['trainingTokens']:,} tokens, {cell['minutes']:.1f} min", flush=True)
    print(write_table(results, args.output / "results.md", ran_on, args.tune_budget))


if __name__ == "__main__":
    main()
