"""The supervisor with an executor other than the local one: a worker lost with its host is
resumed from the checkpoint (a bounded number of times); a stop cancels a worker that never began."""

from __future__ import annotations

import pytest

from test_service_store import _queued_job
from tunesmith.jobs import lifecycle
from tunesmith.jobs.layout import JobFolder
from tunesmith.jobs.settings import ServiceSettings
from tunesmith.jobs.store import Job, JobStore
from tunesmith.jobs.supervisor import MAX_ATTEMPTS, Supervisor
from tunesmith.training.checkpoints import checkpoint_path


class FakeHandle:
    def __init__(self, pid: int):
        self.pid, self.code, self.lost, self.killed = pid, None, None, False

    def poll(self):
        return self.code

    def terminate(self):
        self.code = -15

    def kill(self):
        self.killed, self.code = True, -9

    def wait(self, timeout=None):
        return self.code


class FakeExecutor:
    """Like the Ray executor: the cluster holds the resources, and a host can vanish under a worker."""

    name = "fake"

    def __init__(self):
        self.launched: list[tuple[str, FakeHandle]] = []

    def problem(self, wanted):
        return None

    def take(self, wanted, busy):
        return []

    def room(self, device, busy):
        return 1

    def launch(self, job_id, devices, ranks):
        handle = FakeHandle(70_000 + len(self.launched))
        self.launched.append((job_id, handle))
        return handle

    def alive(self, job):
        return False

    def lost(self, handle):
        return handle.lost

    def error(self, handle):
        return None

    def describe(self, handle, devices):
        return f"fake worker {handle.pid}"

    def shutdown(self, handles):
        return False

    def close(self):
        pass


@pytest.fixture
def supervised(tmp_path):
    url = f"sqlite:///{tmp_path / 'tunesmith.db'}"
    store = JobStore(url)
    settings = ServiceSettings(home=tmp_path / "home", database_url=url, run_workers=False, devices=["cpu"], concurrency=2)
    executor = FakeExecutor()
    return Supervisor(store, settings, executor), executor, store


def begin(store: JobStore, job_id: str) -> None:
    """What a worker does first: it started (one more attempt) and began validating the data."""
    with store.session() as session:
        job = session.get(Job, job_id)
        lifecycle.worker_started(job, 4242)
        lifecycle.enter_phase(job, lifecycle.Phase.VALIDATION)
        session.commit()


def test_a_worker_lost_with_its_host_resumes_from_the_checkpoint_until_the_attempts_run_out(supervised, tmp_path):
    supervisor, executor, store = supervised
    job_id = _queued_job(store, "lost")
    checkpoint = checkpoint_path(JobFolder(tmp_path / "home", job_id).run, 3)
    checkpoint.mkdir(parents=True)
    (checkpoint / "state.json").write_text("{}")
    supervisor.tick()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        begin(store, job_id)
        handle = executor.launched[-1][1]
        handle.lost, handle.code = "Ray lost the job's worker (WorkerCrashedError: the worker died)", -9
        supervisor.tick()  # reaped: queued again, and claimed again at once while attempts are left
        with store.session() as session:
            job = session.get(Job, job_id)
        if attempt < MAX_ATTEMPTS:
            assert job.status == "InProgress" and len(executor.launched) == attempt + 1
            assert job.worker_pid == executor.launched[-1][1].pid
    assert job.status == "Failed" and job.attempts == MAX_ATTEMPTS
    assert job.failure_message.startswith("Ray lost the job's worker (WorkerCrashedError: the worker died); "
                                          f"the job started {MAX_ATTEMPTS} times, the most allowed")


def test_a_lost_worker_without_a_checkpoint_fails_saying_why(supervised):
    supervisor, executor, store = supervised
    job_id = _queued_job(store, "early")
    supervisor.tick()
    begin(store, job_id)
    handle = executor.launched[0][1]
    handle.lost, handle.code = "Ray lost the job's worker (NodeDiedError: node gone)", -9
    supervisor.tick()
    with store.session() as session:
        job = session.get(Job, job_id)
        assert job.status == "Failed"
        assert job.failure_message == ("Ray lost the job's worker (NodeDiedError: node gone) before the first checkpoint; "
                                       "nothing could be resumed: create the job again")


def test_a_worker_lost_before_it_began_queues_its_job_again(supervised):
    supervisor, executor, store = supervised
    job_id = _queued_job(store, "unbegun")
    supervisor.tick()
    handle = executor.launched[0][1]
    handle.lost, handle.code = "Ray lost the job's worker (WorkerCrashedError: the worker died)", -9
    supervisor.tick()  # nothing was lost: queued again, and claimed again at once
    with store.session() as session:
        job = session.get(Job, job_id)
        assert job.status == "InProgress" and len(executor.launched) == 2 and job.worker_pid == executor.launched[1][1].pid


def test_a_stopping_server_gives_back_the_jobs_whose_worker_never_began(supervised):
    supervisor, executor, store = supervised
    waiting, running = _queued_job(store, "waiting"), _queued_job(store, "running")
    supervisor.tick()
    begin(store, running)
    supervisor.shutdown()
    with store.session() as session:
        assert session.get(Job, waiting).server_id is None and session.get(Job, waiting).worker_pid is None  # any server's now
        assert session.get(Job, running).server_id == supervisor.claimant.server_id  # its worker queues it again itself


def test_a_stop_cancels_a_worker_that_never_began_and_leaves_a_running_one_to_stop_itself(supervised):
    supervisor, executor, store = supervised
    waiting, running = _queued_job(store, "waiting"), _queued_job(store, "running")
    supervisor.tick()
    begin(store, running)
    with store.session() as session:
        for job_id in (waiting, running):
            lifecycle.request_stop(session.get(Job, job_id))
        session.commit()
    supervisor.tick()
    handles = dict(executor.launched)
    assert handles[waiting].killed and not handles[running].killed
    supervisor.tick()  # reaped: the cancelled one is Stopped
    with store.session() as session:
        assert session.get(Job, waiting).status == "Stopped"
        assert session.get(Job, running).status == "Stopping"  # its worker stops between micro-batches
