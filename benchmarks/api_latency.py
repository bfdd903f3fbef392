"""How fast the API answers while a job trains micro in a worker process.

    python benchmarks/api_latency.py [--calls 200]

Starts ``tunesmith serve`` on a loopback port with a fresh home, creates a fine-tuning job
on the example data, waits until training is under way, then times GetModelCustomizationJob
and ListModelCustomizationJobs through boto3 and prints p50 / p95 / max in milliseconds
(target: answers within 100 ms while a job trains). Then it stops the job and times how long
StopModelCustomizationJob takes to reach ``Stopped`` (a stop lands between micro-batches).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from service_harness import Server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    examples = Path(__file__).resolve().parents[1] / "examples"
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "home").mkdir()
        (folder / "models.toml").write_text("")
        server = Server(folder / "home", examples.parent, folder / "models.toml").start()
        try:
            client = server.client()
            arn = client.create_model_customization_job(
                jobName="latency", customModelName="latency-model", roleArn="arn:aws:iam::123456789012:role/x",
                baseModelIdentifier="amazon.nova-micro-v1:0:128k",
                trainingDataConfig={"s3Uri": str(examples / "orders.train.jsonl")},
                outputDataConfig={"s3Uri": str(folder / "home" / "out")},
                hyperParameters={"epochCount": "2", "learningRate": "0.0001", "learningRateWarmupSteps": "0"},
            )["jobArn"]
            while "trainingMetrics" not in client.get_model_customization_job(jobIdentifier=arn):
                time.sleep(0.5)
            timings = {"GetModelCustomizationJob": [], "ListModelCustomizationJobs": []}
            for _ in range(args.calls):
                for name, call in (("GetModelCustomizationJob", lambda: client.get_model_customization_job(jobIdentifier=arn)),
                                   ("ListModelCustomizationJobs", client.list_model_customization_jobs)):
                    started = time.perf_counter()
                    call()
                    timings[name].append((time.perf_counter() - started) * 1000)
            status = client.get_model_customization_job(jobIdentifier=arn)["status"]
            asked = time.perf_counter()
            client.stop_model_customization_job(jobIdentifier=arn)
            while client.get_model_customization_job(jobIdentifier=arn)["status"] != "Stopped":
                time.sleep(0.1)
            stop_seconds = time.perf_counter() - asked
        finally:
            server.kill()
    print(f"{args.calls} calls each while the job was training (status at the end: {status})")
    for name, values in timings.items():
        values.sort()
        p95 = values[int(len(values) * 0.95) - 1]
        print(f"{name:<28} p50 {statistics.median(values):6.1f} ms  p95 {p95:6.1f} ms  max {values[-1]:6.1f} ms")
    print(f"StopModelCustomizationJob -> Stopped in {stop_seconds:.1f} s (checkpoint of the last completed step included)")


if __name__ == "__main__":
    main()
