"""A worker's lease heartbeat: renews its job's lease while the process lives.

The server renews the leases of the workers it started; this thread renews them too, so a
worker that outlives its server (one killed alone, not with its process group) keeps its
job instead of having it taken over and run twice. It renews under the server id the claim
recorded, and stops when it no longer holds the job (ended, or taken over).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from tunesmith.jobs import lifecycle
from tunesmith.jobs.store import Job, JobStore

log = logging.getLogger("tunesmith.service.jobs")


class LeaseHeartbeat:
    """``with LeaseHeartbeat(store, job_id, lease_seconds): ...`` renews every third of the lease."""

    def __init__(self, store: JobStore, job_id: str, lease_seconds: float):
        self.store, self.job_id, self.lease = store, job_id, dt.timedelta(seconds=lease_seconds)
        self.server_id: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="tunesmith-lease", daemon=True)

    def __enter__(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def beat(self) -> bool:
        """One renewal; False once the job is no longer this worker's."""
        with self.store.session() as session:
            if self.server_id is None:
                job = session.get(Job, self.job_id)
                self.server_id = job.server_id if job is not None else None
                if self.server_id is None:
                    return False  # not claimed by a server (run by hand), or already ended
            return lifecycle.renew(session, [self.job_id], self.server_id, self.lease) == 1

    def _beat(self) -> None:
        while not self._stop.wait(self.lease.total_seconds() / 3):
            try:
                if not self.beat():
                    return
            except Exception as exc:  # the database is away: try again next time (the lease may lapse meanwhile)
                log.warning("job %s: could not renew its lease: %s", self.job_id, str(exc).splitlines()[0] if str(exc) else exc)
