"""Devices in the service: ``serve --devices``, ``tunesmithConfig.devices``, the supervisor handing
devices out through ``CUDA_VISIBLE_DEVICES`` (worker processes mocked), and the job record."""

import json
import types
import urllib.error
import urllib.request

import pytest
import torch

from conftest import arithmetic, write_jsonl
from service_harness import ApiOnlyServer, Server, wait_for
from tunesmith import devices
from tunesmith.devices import DeviceError
from tunesmith.jobs.device_pool import DevicePool, jobs_per_device, memory_share_gb, parse_devices, visible_devices
from tunesmith.jobs.executors import local as local_executor

ROLE = "arn:aws:iam::123456789012:role/tunesmith"


def request_body(folder, name, **extra):
    return {
        "jobName": name, "customModelName": f"{name}-model", "roleArn": ROLE, "baseModelIdentifier": "amazon.nova-micro-v1:0:128k",
        "trainingDataConfig": {"s3Uri": f"file://{folder}/t.jsonl"}, "outputDataConfig": {"s3Uri": f"file://{folder}/out"}, **extra,
    }


def post(url: str, body: dict) -> tuple[int, dict]:
    """A plain HTTP create request (no SigV4: these servers have no credentials)."""
    request = urllib.request.Request(f"{url}/model-customization-jobs", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def record(url: str, job: str) -> dict:
    """GetModelCustomizationJob over plain HTTP: its ``tunesmith`` object, which boto3 drops."""
    return json.loads(urllib.request.urlopen(f"{url}/model-customization-jobs/{job}").read()).get("tunesmith") or {}


# -- serve --devices ---------------------------------------------------------------------------
@pytest.fixture
def gpus(monkeypatch):
    def build(count: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(devices, "mps_available", lambda: False)

    return build


def test_devices_option_names_cuda_devices_or_one_shared_device(gpus):
    gpus(3)
    assert parse_devices("auto") == parse_devices("cuda") == ["cuda:0", "cuda:1", "cuda:2"]
    assert parse_devices("cuda:2, cuda:0,cuda:2") == ["cuda:2", "cuda:0"]
    assert parse_devices("cpu") == ["cpu"]
    with pytest.raises(DeviceError, match=r"^--device cuda:3: this machine has 3 CUDA device\(s\)"):
        parse_devices("cuda:0,cuda:3")
    with pytest.raises(DeviceError, match=r"^--devices cpu,cuda:0: 'cpu' cannot be combined with other devices"):
        parse_devices("cpu,cuda:0")
    gpus(0)
    assert parse_devices("auto") == ["cpu"]
    with pytest.raises(DeviceError, match="^--device cuda: no CUDA device is available"):
        parse_devices("cuda")


def test_a_serve_with_missing_devices_stops_with_one_line(gpus, tmp_path):
    from click.testing import CliRunner

    from tunesmith.cli import cli

    gpus(1)
    result = CliRunner().invoke(cli, ["serve", "--home", str(tmp_path), "--devices", "cuda:0,cuda:1"])
    assert result.exit_code == 1
    assert result.output == "error: --device cuda:1: this machine has 1 CUDA device(s)\n"


def test_visible_devices_index_into_the_servers_own_list():
    assert visible_devices(["cuda:0", "cuda:2"], environ={}) == "0,2"
    assert visible_devices(["cuda:0", "cuda:2"], environ={"CUDA_VISIBLE_DEVICES": "4,5,GPU-abc"}) == "4,GPU-abc"
    assert visible_devices(["cpu"], environ={}) == ""  # the CPU's workers see no GPU


def test_pool_hands_out_free_cuda_devices_and_shares_the_cpu():
    pool = DevicePool(["cuda:0", "cuda:1", "cuda:2"])
    assert pool.take(2, {"cuda:0"}) == ["cuda:1", "cuda:2"]
    assert pool.take(2, {"cuda:1"}) == ["cuda:0", "cuda:2"]
    assert pool.take(3, {"cuda:1"}) is None
    assert pool.problem(4) == "tunesmithConfig.devices is 4, but this server trains on 3 device(s) (cuda:0, cuda:1, cuda:2)"
    cpu = DevicePool(["cpu"])
    assert (cpu.take(2, {"cpu"}), cpu.problem(8), cpu.worker_device) == (["cpu"], None, "cpu")
    assert DevicePool(["mps"]).problem(2) == "tunesmithConfig.devices is 2, but this server trains on MPS, which runs one rank"


def test_jobs_per_device_gives_slots_to_one_gpu_jobs_and_whole_gpus_to_bigger_ones():
    pool = DevicePool(["cuda:0", "cuda:1"], per_device=3)
    assert pool.take(1, []) == ["cuda:0"]
    assert pool.take(1, ["cuda:0"]) == ["cuda:1"]  # the least busy device
    assert pool.take(1, ["cuda:0", "cuda:0", "cuda:0", "cuda:1", "cuda:1", "cuda:1"]) is None  # every slot taken
    assert pool.take(2, ["cuda:0"]) is None and pool.take(2, []) == ["cuda:0", "cuda:1"]  # two GPUs: whole ones
    assert (pool.room("cuda:0", ["cuda:0"]), pool.room("cuda:1", ["cuda:0"])) == (2, 3)
    assert DevicePool(["cpu"], per_device=4).room("cpu", ["cpu", "cpu"]) == 4  # the CPU is shared; --concurrency bounds it


def test_jobs_per_device_auto_follows_the_gpus_memory(monkeypatch):
    memory = {0: 141 * 2**30, 1: 24 * 2**30}
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: types.SimpleNamespace(total_memory=memory[index]))
    assert jobs_per_device("auto", ["cuda:0"]) == 8  # 126 GB: 15 at 8 GB, at most 8
    assert jobs_per_device("auto", ["cuda:0", "cuda:1"]) == 2  # the smallest GPU decides: 21.6 GB
    assert jobs_per_device("auto", ["cpu"]) == 1 and jobs_per_device("3", ["cpu"]) == 3
    with pytest.raises(DeviceError, match="neither auto nor a whole number"):
        jobs_per_device("many", ["cpu"])
    with pytest.raises(DeviceError, match="at least 1"):
        jobs_per_device("0", ["cuda:0"])


def test_jobs_sharing_a_gpu_get_a_share_of_its_memory(monkeypatch, tmp_path):
    """Not 90% of the free memory each, which a second job on the GPU would not find."""
    from tunesmith.jobs.executors.local import group_command
    from tunesmith.jobs.settings import ServiceSettings

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: types.SimpleNamespace(total_memory=80 * 2**30))
    assert memory_share_gb("cuda:0", 4) == 18.0 and memory_share_gb("cuda:0", 1) is None and memory_share_gb("cpu", 4) is None
    settings = ServiceSettings(home=tmp_path, devices=["cpu"])
    assert local_executor.worker_arguments(settings, "j1", "cuda", 1, 18.0)[-2:] == ["--max-memory", "18.0"]
    assert "--max-memory" not in local_executor.worker_arguments(settings, "j1", "cpu")
    command = group_command(settings, ["j1", "j2"], "cuda", 36.0)
    assert command[-2:] == ["--max-memory", "36.0"] and command.count("--job") == 2


# -- tunesmithConfig on the wire -----------------------------------------------------------------
@pytest.fixture
def two_gpu_api(tmp_path):
    """The API (no workers) of a server that trains on two CUDA devices."""
    write_jsonl(tmp_path / "t.jsonl", arithmetic(20))
    with ApiOnlyServer(tmp_path / "home", tmp_path, devices=["cuda:0", "cuda:1"]) as server:
        yield server, tmp_path


def stored_spec(server, name):
    store = server.app.state.store
    with store.session() as session:
        return store.job(session, name).spec


def test_tunesmith_config_over_plain_http(two_gpu_api):
    server, folder = two_gpu_api
    status, body = post(server.url, request_body(folder, "two", tunesmithConfig={"devices": 2}))
    assert status == 201 and body["jobArn"].startswith("arn:aws:bedrock:")
    assert stored_spec(server, "two").devices == 2
    assert post(server.url, request_body(folder, "plain"))[0] == 201
    assert stored_spec(server, "plain").devices == 1

    for extra, message in [
        ({"devices": 3}, "tunesmithConfig.devices is 3, but this server trains on 2 device(s) (cuda:0, cuda:1)"),
        ({"devices": 0}, "tunesmithConfig.devices 0 is out of range"),
        ({"devices": 9}, "tunesmithConfig.devices 9 is out of range"),
        ({"devices": "2"}, "tunesmithConfig.devices"),
        ({"gpus": 2}, "tunesmithConfig.gpus"),
    ]:
        status, body = post(server.url, request_body(folder, "bad", tunesmithConfig=extra))
        assert status == 400 and body["message"].startswith(message), (extra, body)


def test_boto3_cannot_send_the_field_but_an_event_handler_can(two_gpu_api):
    from botocore.exceptions import ParamValidationError

    from tunesmith.client import add_tunesmith_config

    server, folder = two_gpu_api
    client = server.client()
    request = request_body(folder, "boto")
    with pytest.raises(ParamValidationError, match='Unknown parameter in input: "tunesmithConfig"'):
        client.create_model_customization_job(**request, tunesmithConfig={"devices": 2})
    client.create_model_customization_job(**request)  # boto3 callers omit it: one device
    assert stored_spec(server, "boto").devices == 1

    add_tunesmith_config(client, {"devices": 2})
    client.create_model_customization_job(**request_body(folder, "boto-two"))
    assert stored_spec(server, "boto-two").devices == 2
    add_tunesmith_config(client, {"devices": 3})  # a second handler wins: the body is rewritten again
    with pytest.raises(client.exceptions.ValidationException, match=r"tunesmithConfig.devices is 3, but this server trains on 2"):
        client.create_model_customization_job(**request_body(folder, "boto-three"))


def test_jobs_cli_asks_for_devices(two_gpu_api):
    from click.testing import CliRunner

    from tunesmith.cli import cli

    server, folder = two_gpu_api
    result = CliRunner().invoke(cli, ["jobs", "create", "--name", "cli-two", "--model-name", "cli-two-model", "--data",
                                      str(folder / "t.jsonl"), "--output", str(folder / "out"), "--devices", "2",
                                      "--endpoint", server.url])
    assert result.exit_code == 0, result.output
    assert stored_spec(server, "cli-two").devices == 2


# -- the supervisor ------------------------------------------------------------------------------
class FakeProcess:
    """Stands in for a worker process: records how it was started; ``exit()`` ends it."""

    started: list["FakeProcess"] = []
    next_pid = 40_000

    def __init__(self, command, env=None, stdout=None, stderr=None):
        self.command, self.env, self.code = command, env, None
        FakeProcess.next_pid += 1
        self.pid = FakeProcess.next_pid
        FakeProcess.started.append(self)

    def poll(self):
        return self.code

    def exit(self, code: int = 0) -> None:
        self.code = code


@pytest.fixture
def fake_workers(monkeypatch):
    FakeProcess.started = []
    monkeypatch.setattr(local_executor.subprocess, "Popen", FakeProcess)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return FakeProcess.started


def test_concurrent_jobs_get_disjoint_devices_and_wait_for_enough(tmp_path, fake_workers):
    write_jsonl(tmp_path / "t.jsonl", arithmetic(20))
    with ApiOnlyServer(tmp_path / "home", tmp_path, devices=["cuda:0", "cuda:1", "cuda:2"], concurrency=3) as server:
        for name, count in [("one", 1), ("pair", 2), ("next", 1)]:
            assert post(server.url, request_body(tmp_path, name, tunesmithConfig={"devices": count}))[0] == 201
        supervisor = server.app.state.supervisor
        supervisor.tick()
        one, pair = fake_workers
        assert (one.env["CUDA_VISIBLE_DEVICES"], pair.env["CUDA_VISIBLE_DEVICES"]) == ("0", "1,2")
        assert one.command[1:3] == ["-m", "tunesmith.jobs.worker"] and one.command[-2:] == ["--device", "cuda"]
        assert pair.command[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m"]
        assert record(server.url, "one")["devices"] == ["cuda:0"]
        assert record(server.url, "pair")["devices"] == ["cuda:1", "cuda:2"]
        assert record(server.url, "next") == {}  # waits: every device is held

        supervisor.tick()
        assert len(fake_workers) == 2
        one.exit(0)
        supervisor.tick()
        assert fake_workers[2].env["CUDA_VISIBLE_DEVICES"] == "0"
        assert record(server.url, "next")["devices"] == ["cuda:0"]


def test_a_job_that_can_no_longer_get_its_devices_fails_clearly(tmp_path, fake_workers):
    from tunesmith.jobs.settings import ServiceSettings
    from tunesmith.jobs.supervisor import Supervisor

    write_jsonl(tmp_path / "t.jsonl", arithmetic(20))
    with ApiOnlyServer(tmp_path / "home", tmp_path, devices=["cuda:0", "cuda:1"]) as server:
        post(server.url, request_body(tmp_path, "big", tunesmithConfig={"devices": 2}))
        post(server.url, request_body(tmp_path, "small"))
        store = server.app.state.store
        fewer = ServiceSettings(home=tmp_path / "home", database_url=server.app.state.settings.database_url, devices=["cuda:0"])
        Supervisor(store, fewer).tick()  # as after a restart with --devices cuda:0
        job = server.client().get_model_customization_job(jobIdentifier="big")
        assert job["status"] == "Failed"
        assert job["failureMessage"] == "tunesmithConfig.devices is 2, but this server trains on 1 device(s) (cuda:0)"
        assert [p.env["CUDA_VISIBLE_DEVICES"] for p in fake_workers] == ["0"]  # the next job was not held up


def test_cpu_servers_hide_gpus_and_run_several_ranks_under_torchrun(tmp_path, fake_workers):
    write_jsonl(tmp_path / "t.jsonl", arithmetic(20))
    with ApiOnlyServer(tmp_path / "home", tmp_path, devices=["cpu"], concurrency=2) as server:
        post(server.url, request_body(tmp_path, "a", tunesmithConfig={"devices": 2}))
        post(server.url, request_body(tmp_path, "b"))
        server.app.state.supervisor.tick()
        a, b = fake_workers
        assert a.env["CUDA_VISIBLE_DEVICES"] == b.env["CUDA_VISIBLE_DEVICES"] == ""
        assert "--nproc-per-node=2" in a.command and "torch.distributed.run" not in b.command
        assert a.command[-2:] == b.command[-2:] == ["--device", "cpu"]


def test_the_job_record_states_devices_precision_and_world_size(tmp_path, fake_workers):
    from tunesmith.devices import place
    from tunesmith.jobs.worker import JobWorker
    from tunesmith.training.distributed import World

    write_jsonl(tmp_path / "t.jsonl", arithmetic(20))
    with ApiOnlyServer(tmp_path / "home", tmp_path, devices=["cuda:0", "cuda:1"]) as server:
        post(server.url, request_body(tmp_path, "rec", tunesmithConfig={"devices": 2}))
        server.app.state.supervisor.tick()
        store = server.app.state.store
        with store.session() as session:
            job_id = store.job(session, "rec").id
        run = types.SimpleNamespace(warnings=[], plan=types.SimpleNamespace(as_dict=lambda: {"steps": 3}),
                                    placement=place("cpu", "fp32"), world=World(0, 2, 0))
        JobWorker(store, tmp_path / "home", job_id)._on_start(run)
        shown = record(server.url, "rec")
        assert (shown["devices"], shown["precision"], shown["worldSize"]) == (["cuda:0", "cuda:1"], "fp32", 2)


# -- a real job on two CPU ranks -----------------------------------------------------------------
def test_a_job_with_two_devices_trains_on_two_ranks(tmp_path, tiny_model):
    write_jsonl(tmp_path / "t.jsonl", arithmetic(40))
    (tmp_path / "models.toml").write_text(f'[tiers.micro]\nsource = "{tiny_model}"\neffective_batch_size = 16\n')
    (tmp_path / "home").mkdir()
    server = Server(tmp_path / "home", tmp_path, tmp_path / "models.toml", options=["--devices", "cpu"]).start()
    try:
        body = request_body(tmp_path, "ranks", tunesmithConfig={"devices": 2},
                            hyperParameters={"epochCount": "1", "learningRate": "0.0001", "learningRateWarmupSteps": "1"})
        status, created = post(server.url, body)
        assert status == 201, created
        job = wait_for(server.client(), created["jobArn"], {"Completed", "Failed"}, timeout=300)
        assert job["status"] == "Completed", job.get("failureMessage")
        shown = record(server.url, "ranks")
        assert (shown["devices"], shown["worldSize"]) == (["cpu"], 2)
        assert shown["precision"] in ("bf16", "fp32")
    finally:
        server.kill()
