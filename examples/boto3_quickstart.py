"""Fine-tune, deploy and call a model with an unchanged Bedrock boto3 script.

Start the server in another terminal, from the repository root:

    tunesmith serve

then run this script from the repository root:

    python examples/boto3_quickstart.py

Against Amazon Bedrock the same code runs with S3 URIs and without ``endpoint_url``.
"""

import time
from pathlib import Path

import boto3

ENDPOINT = "http://127.0.0.1:8000"
DATA = Path("examples").resolve()
credentials = {"region_name": "us-east-1", "aws_access_key_id": "tunesmith", "aws_secret_access_key": "tunesmith"}
bedrock = boto3.client("bedrock", endpoint_url=ENDPOINT, **credentials)
runtime = boto3.client("bedrock-runtime", endpoint_url=ENDPOINT, **credentials)

name = f"orders-{int(time.time())}"
job_arn = bedrock.create_model_customization_job(
    jobName=name,
    customModelName=f"{name}-model",
    roleArn="arn:aws:iam::123456789012:role/BedrockCustomization",
    baseModelIdentifier="amazon.nova-micro-v1:0:128k",
    customizationType="FINE_TUNING",
    trainingDataConfig={"s3Uri": f"file://{DATA}/orders.train.jsonl"},
    validationDataConfig={"validators": [{"s3Uri": f"file://{DATA}/orders.valid.jsonl"}]},
    outputDataConfig={"s3Uri": f"file://{DATA.parent}/boto3-output"},
    hyperParameters={"epochCount": "1", "learningRate": "0.0001", "learningRateWarmupSteps": "0"},
)["jobArn"]
print("created", job_arn)

while True:
    job = bedrock.get_model_customization_job(jobIdentifier=job_arn)
    loss = job.get("trainingMetrics", {}).get("trainingLoss")
    print(job["status"], {k: v["status"] for k, v in job["statusDetails"].items()}, "loss", loss)
    if job["status"] not in ("InProgress", "Stopping"):
        break
    time.sleep(10)
if job["status"] != "Completed":
    raise SystemExit(f"job ended {job['status']}: {job.get('failureMessage')}")

deployment_arn = bedrock.create_custom_model_deployment(
    modelDeploymentName=f"{name}-deployment", modelArn=job["outputModelArn"]
)["customModelDeploymentArn"]
question = "Order #K1234 shipped on 2026-03-02 with express shipping. When will it arrive?"
reply = runtime.converse(
    modelId=deployment_arn,
    messages=[{"role": "user", "content": [{"text": question}]}],
    inferenceConfig={"maxTokens": 40, "temperature": 0},
)
print("answer:", reply["output"]["message"]["content"][0]["text"])
print("usage:", reply["usage"], "stop:", reply["stopReason"])
