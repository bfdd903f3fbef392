"""Malformed requests against a running ``tunesmith serve``: no 5xx, Bedrock-shaped errors, no stalls.

Every route gets bodies, query strings and path ids that are wrong in the ways attackers and
careless clients are: wrong JSON types, missing and unknown fields, lengths past Bedrock's
limits, backtracking bait for name patterns, NUL bytes and lone surrogates, UTF-16 and
binary bodies, 10,000-deep nesting, integers past 64 bits, infinite timestamps, junk page
tokens, unknown routes and methods. Every field that carries a path or URI (the create
request's training, validation and output ``s3Uri``, the teacher, runtime and OpenAI model ids,
job, model and deployment ids, list filters, the console's data paths) also gets locations
that must never reach the file system unchecked: control characters raw and percent-encoded,
double encoding, ``..``, paths outside the allowed roots, symlinks out of them, very long paths
and odd schemes. A thread polls ``/health`` all the while.

Run it against a server (``tunesmith serve --allow-path DIR``)::

    python tests/fuzz_service.py --url http://127.0.0.1:8000 --cases 3000 --data-dir DIR

``tests/test_service_fuzz.py`` runs 3,000 cases of the same generator against a real ``tunesmith serve`` (``FUZZ_CASES`` changes that).
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode, urlsplit

ROLE = "arn:aws:iam::123456789012:role/tunesmith"
REDOS_NAME = "a" + "-" * 61 + "!"
BAD_VALUES: list = [
    None, True, 0, -1, 5, 2**70, -(2**70), 1.5, 1e308, "", " ", "x", "a" * 3000, REDOS_NAME, "a\x00b", "\ud800", "\udfff x",
    "../../etc/passwd", "file:///etc/passwd", "file:///dev/zero", "s3://", "http://example.com/x", "\u202e\u0000",
    [], [1], [None], [{"s3Uri": 5}], {}, {"a": 1}, {"s3Uri": None}, {"s3Uri": "a" * 2000}, [[[[[]]]]],
]


def valid_create(data_dir: str, index: int) -> dict:
    return {
        "jobName": f"fuzz-{index}", "customModelName": f"fuzz-model-{index}", "roleArn": ROLE,
        "baseModelIdentifier": "micro", "trainingDataConfig": {"s3Uri": f"{data_dir}/missing.jsonl"},
        "outputDataConfig": {"s3Uri": f"{data_dir}/out"}, "hyperParameters": {"epochCount": "1"},
    }


def valid_converse() -> dict:
    return {"messages": [{"role": "user", "content": [{"text": "hi"}]}], "inferenceConfig": {"maxTokens": 4}}


def _mutate(body: dict, rng: random.Random) -> dict:
    """One field (possibly nested) replaced, removed or joined by an unknown one."""
    body = json.loads(json.dumps(body))
    target, key = body, rng.choice(list(body))
    while isinstance(target[key], dict) and target[key] and rng.random() < 0.5:
        target, key = target[key], rng.choice(list(target[key]))
    roll = rng.random()
    if roll < 0.75:
        target[key] = rng.choice(BAD_VALUES)
    elif roll < 0.9:
        del target[key]
    else:
        target[rng.choice(["unknownKey", "hyperParametersResolved", "x" * 300])] = rng.choice(BAD_VALUES)
    return body


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@dataclass
class Case:
    method: str
    path: str
    body: bytes | None = None
    headers: dict = field(default_factory=dict)
    what: str = ""
    shaped: bool = True
    """Its errors come in Bedrock's shape (the console's are pages for people)."""


def raw_bodies(rng: random.Random, base: dict) -> list[tuple[bytes, str]]:
    text = json.dumps(base)
    return [
        (b"{", "truncated JSON"), (b"not json", "not JSON"), (b"[]", "array body"), (b"null", "null body"), (b"", "empty body"),
        (text.encode("utf-16"), "UTF-16 body"), (bytes(rng.randrange(256) for _ in range(200)), "random bytes"),
        (_deep(10_000), "10,000-deep nesting"), (b'{"a":' * 5000 + b"1" + b"}" * 5000, "deep objects"),
        (text.replace('"micro"', '"\\ud800"').encode(), "lone surrogate escape"),
        (text.replace('"micro"', "1" + "0" * 400).encode(), "400-digit integer"),
        (text.replace('"micro"', "1e999999").encode(), "infinite float"),
        (text.encode()[: len(text) // 2], "half a body"), (b"\xff\xfe\x00", "invalid UTF-8"),
    ]


ID_PATHS = [
    "/model-customization-jobs/{}", "/model-customization-jobs/{}/stop", "/model-customization-jobs/{}/events",
    "/model-customization-jobs/{}/checkpoints", "/custom-models/{}", "/model-customization/custom-model-deployments/{}",
]
BAD_IDS = ["%00", "a%00b", "%ff%fe", "%ED%A0%80", "x" * 5000, "..", "..%2F..%2Fetc", quote(REDOS_NAME), "%20", "arn:aws:bedrock:x",
           quote("\u202e\u2028")]
LIST_PATHS = ["/model-customization-jobs", "/custom-models", "/model-customization/custom-model-deployments"]
BAD_QUERIES = [
    "creationTimeAfter=1e30", "creationTimeAfter=inf", "creationTimeBefore=nan", "creationTimeAfter=-99999999999999",
    "creationTimeAfter=9999-99-99", "createdAfter=1e30", "maxResults=0", "maxResults=100000000000000000000000", "maxResults=x",
    "maxResults=-1", "nextToken=%00", "nextToken=!!!!", "nextToken=WzEsMl0=", "nextToken=" + "A" * 3000, "sortBy=Name",
    "sortOrder=Up", "statusEquals=Running", "modelStatus=x", "nameContains=" + "n" * 100, "nameContains=%00", "unknown=1",
    "isOwned=maybe", "after=x", "creationTimeAfter=0001-01-01T00:00:00%2B01:00", "creationTimeBefore=9999-12-31T23:59:59-01:00",
    "createdAfter=0001-01-01T00:00:00%2B01:00", "nextToken=WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzAxOjAwIiwieCJd",
    "nextToken=" + "W1tb" * 500,  # base64 of 1,500 "[": deep JSON in a token
]


ESCAPE = "escape"
"""A symlink in the data folder to a folder outside it, where the caller made one."""


def bad_uris(data_dir: str) -> list[str]:
    """Locations to refuse (or, as ``%2500`` and a plain path's ``%00``, to read as literal names)."""
    d = data_dir.rstrip("/")
    raw = ["\x00", "\x01", "\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\x9f", "\u2028"]
    encoded = ["%00", "%0a", "%0D", "%1B", "%7f", "%C2%85", "%C0%80", "%E2%80%A8", "%ED%A0%80", "%ff", "%", "%zz"]
    uris = [form.format(d=d, c=c) for c in raw for form in ("{d}/a{c}b.jsonl", "file://{d}/{c}", "s3://bucket/{c}key", "{c}")]
    uris += [form.format(d=d, e=e) for e in encoded for form in ("file://{d}/a{e}b.jsonl", "file://localhost{d}/{e}", "{d}/{e}")]
    uris += [  # decoded once, these stay literal names; decoded twice they would be NUL or ..
        f"file://{d}/%2500", f"file://{d}/%25%30%30", f"file://{d}/%25252500", f"file://{d}/%252e%252e/%252e%252e/etc/passwd",
    ]
    uris += [
        f"{d}/../../etc/passwd", f"file://{d}/%2e%2e/%2e%2e/etc/passwd", f"file://{d}/..%2F..%2Fetc%2Fpasswd", f"{d}/{ESCAPE}/passwd",
        f"file://{d}/{ESCAPE}/x", f"{d}x/t.jsonl", "../../etc/passwd", "/etc/passwd", "file:///etc/shadow", "/", "file:///", ".",
        "~", "~root/.ssh/id_rsa", "~no-such-user/x", "/proc/self/environ", "/dev/zero", "/dev/stdin",
    ]
    uris += ["/" + "a" * 1023, f"{d}/" + "a/" * 500, f"{d}/" + "a" * 256, f"file://{d}/" + "%41" * 330, f"file://{d}/" + "%2e%2e/" * 140]
    uris += [
        "http://example.com/x", "https://169.254.169.254/latest/meta-data", "ftp://x/y", "S3://b/k", "FILE:///etc/passwd",
        "file:/etc/passwd", "file:etc/passwd", "file://evil.example/etc/passwd", "file://localhost/etc/passwd", f"file://{d}/x?y#z",
        "s3:/b/k", "s3://", "s3:///k", "s3://b/%00", "data:text/plain,x", "javascript:alert(1)", "\\\\server\\share\\x", "C:\\x",
        "file://", "", " ", f"{d}/\u202e.jsonl", "\ud800", f"{d}/\udfff",
    ]
    return uris


URI_FIELDS = ["trainingDataConfig", "outputDataConfig", "validationDataConfig", "teacherModelIdentifier"]


def _with_uri(body: dict, where: str, uri: str, data_dir: str, rng: random.Random) -> dict:
    """``body`` (a create request) with ``uri`` in the field ``where``."""
    if where == "validationDataConfig":
        validators = [{"s3Uri": f"{data_dir}/v.jsonl"}, {"s3Uri": uri}]
        body[where] = {"validators": rng.sample(validators, 2)}
    elif where == "teacherModelIdentifier":
        body["customizationType"] = "DISTILLATION"
        body["customizationConfig"] = {"distillationConfig": {"teacherModelConfig": {where: uri}}}
    else:
        body[where] = {"s3Uri": uri}
    return body


def _quoted(uri: str) -> str:
    """``uri`` as one path segment or query value: every reserved character (``/``, ``%``) encoded."""
    return quote(uri, safe="", errors="surrogatepass")


def uri_elsewhere(rng: random.Random, uri: str, data_dir: str, n: int) -> Case:
    """A bad location in a field other than the create request's: ids, model ids, filters, console forms."""
    json_headers, form_headers = {"Content-Type": "application/json"}, {"Content-Type": "application/x-www-form-urlencoded"}
    chat = {"messages": [{"role": "user", "content": [{"text": "hi"}]}], "inferenceConfig": {"maxTokens": 4}}
    form = {"job_name": f"fuzz-console-{n}", "model_name": f"fuzz-console-{n}", "base_model": "micro", "training": uri,
            "output": f"{data_dir}/out", "validation": rng.choice(["", uri])}
    choices = [
        lambda: Case("POST", f"/model/{_quoted(uri)}/{rng.choice(['converse', 'converse-stream', 'invoke'])}",
                     json.dumps(chat).encode(), json_headers, "URI as runtime model id"),
        lambda: Case("POST", "/v1/chat/completions", json.dumps({"model": uri, "messages": [{"role": "user", "content": "hi"}],
                                                                 "max_tokens": 4}).encode(), json_headers, "URI as OpenAI model"),
        lambda: Case("GET", f"/v1/models/{_quoted(uri)}", what="URI as OpenAI model id"),
        lambda: Case(rng.choice(["GET", "DELETE"]), rng.choice(ID_PATHS[:1] + ID_PATHS[4:]).format(_quoted(uri)), what="URI as id"),
        lambda: Case("POST", "/model-customization/custom-model-deployments",
                     json.dumps({"modelDeploymentName": f"d{n}", "modelArn": uri}).encode(), json_headers, "URI as deployment modelArn"),
        lambda: Case("GET", f"{rng.choice(LIST_PATHS)}?nameContains={_quoted(uri)}", what="URI as list filter"),
        lambda: Case("POST", rng.choice(["/console/new-job/advice", "/console/new-job"]),
                     urlencode(form, errors="surrogatepass").encode(), form_headers, "URI in console form", shaped=False),
        lambda: Case("POST", "/console/playground/stream", json.dumps({"modelId": uri, **chat}).encode(), json_headers,
                     "URI as playground model", shaped=False),
    ]
    return rng.choice(choices)()


def cases(rng: random.Random, count: int, data_dir: str) -> list[Case]:
    """``count`` malformed requests, every route represented."""
    json_headers = {"Content-Type": "application/json"}
    uris = bad_uris(data_dir)
    out: list[Case] = []
    while len(out) < count:
        kind = rng.randrange(12)
        n = len(out)
        if kind <= 2:
            body = _mutate(valid_create(data_dir, n), rng)
            out.append(Case("POST", "/model-customization-jobs", json.dumps(body).encode(), json_headers, "create, one field wrong"))
        elif kind == 3:
            raw, what = rng.choice(raw_bodies(rng, valid_create(data_dir, n)))
            route = rng.choice(["/model-customization-jobs", "/model-customization/custom-model-deployments",
                                "/model/micro/converse", "/model/micro/invoke", "/model/micro/converse-stream"])
            out.append(Case("POST", route, raw, rng.choice([json_headers, {"Content-Type": "text/plain"}, {}]), what))
        elif kind == 4:
            path = rng.choice(ID_PATHS).format(rng.choice(BAD_IDS))
            method = "POST" if path.endswith("/stop") else rng.choice(["GET", "GET", "DELETE"])
            out.append(Case(method, path, what="odd id"))
        elif kind == 5:
            path = rng.choice(LIST_PATHS + ["/model-customization-jobs/none/events"])
            query = "&".join(rng.sample(BAD_QUERIES, rng.randint(1, 3)))
            out.append(Case("GET", f"{path}?{query}", what="bad query"))
        elif kind == 6:
            body = _mutate(valid_converse(), rng)
            route = rng.choice(["converse", "converse-stream", "invoke"])
            model = rng.choice(["no-such-model", "micro%00", "x" * 3000, quote(REDOS_NAME)])
            out.append(Case("POST", f"/model/{model}/{route}", json.dumps(body).encode(), json_headers, "runtime body"))
        elif kind == 7:
            body = {"modelDeploymentName": rng.choice(BAD_VALUES), "modelArn": rng.choice(BAD_VALUES + ["arn:aws:bedrock:x"])}
            out.append(Case("POST", "/model-customization/custom-model-deployments", json.dumps(body).encode(), json_headers,
                            "deployment body"))
        elif kind in (9, 10):
            where = URI_FIELDS[n % len(URI_FIELDS)]
            body = _with_uri(valid_create(data_dir, n), where, rng.choice(uris), data_dir, rng)
            out.append(Case("POST", "/model-customization-jobs", json.dumps(body).encode(), json_headers, f"URI in {where}"))
        elif kind == 11:
            out.append(uri_elsewhere(rng, rng.choice(uris), data_dir, n))
        else:
            method, path = rng.choice([("PUT", "/model-customization-jobs"), ("PATCH", "/custom-models/x"), ("GET", "/nope"),
                                       ("DELETE", "/model-customization-jobs"), ("GET", "/model/micro/converse"),
                                       ("POST", "/health/x"), ("GET", "/%00")])
            out.append(Case(method, path, what="unknown route or method"))
    return out


@dataclass
class Outcome:
    case: Case
    status: int
    error_type: str | None
    seconds: float


def send(base: str, case: Case, timeout: float = 30) -> Outcome:
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    started = time.perf_counter()
    try:
        if case.headers.get("Transfer-Encoding") == "chunked" and case.body:  # streamed, no Content-Length
            chunks = (case.body[i : i + 65536] for i in range(0, len(case.body), 65536))
            connection.request(case.method, case.path, body=chunks, headers=case.headers, encode_chunked=True)
        else:
            connection.request(case.method, case.path, body=case.body, headers=case.headers)
        response = connection.getresponse()
        response.read()
        return Outcome(case, response.status, response.getheader("x-amzn-ErrorType"), time.perf_counter() - started)
    except (OSError, http.client.HTTPException) as exc:  # a dropped connection is a failure too
        return Outcome(case, 599, f"connection: {exc}", time.perf_counter() - started)
    finally:
        connection.close()


class HealthWatch(threading.Thread):
    """Polls /health every 50 ms; records the slowest answer and any failure."""

    def __init__(self, base: str):
        super().__init__(daemon=True)
        self.base, self.stop, self.slowest, self.failures, self.polls = base, threading.Event(), 0.0, 0, 0

    def run(self) -> None:
        while not self.stop.wait(0.05):
            outcome = send(self.base, Case("GET", "/health"), timeout=10)
            self.polls += 1
            self.slowest = max(self.slowest, outcome.seconds)
            self.failures += outcome.status != 200


@dataclass
class Report:
    outcomes: list[Outcome]
    health: HealthWatch
    wall_s: float

    @property
    def server_errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status >= 500]

    @property
    def unshaped(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status >= 400 and not o.error_type and o.case.shaped]

    @property
    def accepted(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status < 400]

    @property
    def slowest(self) -> Outcome:
        return max(self.outcomes, key=lambda o: o.seconds)

    def lines(self) -> list[str]:
        seconds = [o.seconds for o in self.outcomes]
        statuses: dict[int, int] = {}
        uri_cases: dict[str, int] = {}
        for o in self.outcomes:
            statuses[o.status] = statuses.get(o.status, 0) + 1
            if o.case.what.startswith("URI"):
                uri_cases[o.case.what] = uri_cases.get(o.case.what, 0) + 1
        return [
            f"requests: {len(self.outcomes)} in {self.wall_s:.1f} s; statuses {dict(sorted(statuses.items()))}",
            f"bad URIs: {sum(uri_cases.values())} ({', '.join(f'{what}: {k}' for what, k in sorted(uri_cases.items()))})",
            f"5xx: {len(self.server_errors)}; errors without x-amzn-ErrorType: {len(self.unshaped)}; accepted (2xx): {len(self.accepted)}",
            f"latency: p50 {statistics.median(seconds) * 1000:.1f} ms, p99 {sorted(seconds)[int(len(seconds) * 0.99) - 1] * 1000:.1f} ms, "
            f"max {self.slowest.seconds * 1000:.1f} ms ({self.slowest.case.what}: {self.slowest.case.method} {self.slowest.case.path[:60]})",
            f"/health: {self.health.polls} polls, {self.health.failures} failures, slowest {self.health.slowest * 1000:.1f} ms",
        ]


def run(base: str, count: int, data_dir: str, seed: int = 0, threads: int = 4) -> Report:
    todo = cases(random.Random(seed), count, data_dir)
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    health = HealthWatch(base)
    health.start()
    started = time.perf_counter()

    def work(share: list[Case]) -> None:
        for case in share:
            outcome = send(base, case)
            with lock:
                outcomes.append(outcome)

    workers = [threading.Thread(target=work, args=(todo[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    health.stop.set()
    health.join()
    return Report(outcomes, health, wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--cases", type=int, default=3000)
    parser.add_argument("--data-dir", required=True, help="A folder the server allows (--allow-path).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    report = run(args.url, args.cases, args.data_dir, args.seed, args.threads)
    for line in report.lines():
        print(line)
    for outcome in (report.server_errors + report.unshaped)[:20]:
        print(f"  {outcome.status} {outcome.error_type} {outcome.case.what}: {outcome.case.method} {outcome.case.path[:80]}")
    big = send(args.url, Case("POST", "/model-customization-jobs", b"x" * (50 << 20), {"Content-Type": "application/json"}, "50 MB"))
    print(f"50 MB body: HTTP {big.status} {big.error_type} in {big.seconds * 1000:.0f} ms")


if __name__ == "__main__":
    main()
