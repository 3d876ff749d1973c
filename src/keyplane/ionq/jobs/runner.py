"""A small pool of threads that runs the IonQ-compatible API's jobs.

Each thread claims a job through :class:`~keyplane.ionq.jobs.queue.JobQueue` (atomically, in the
database, so several server processes share one queue), simulates it and
stores the outcome. A heartbeat renews the leases of the jobs this process
is running; if the process dies, their leases run out and another worker
queues them again. A running simulation stops within a fraction of a second
when its job is canceled (anywhere: the simulation reads the job's status) or
when the pool stops (the job is then queued again at once). Submitting in
this process wakes a thread at once; jobs submitted elsewhere are seen within
``poll_interval``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Final

from sqlalchemy.exc import SQLAlchemyError

from keyplane.ionq.jobs.queue import JobQueue
from keyplane.ionq.jobs.records import LEASE
from keyplane.logs import Throttled
from keyplane.service.availability import DATABASE_UNAVAILABLE_ERRORS, cause_name
from keyplane.storage.errors import StorageUnavailable

logger = logging.getLogger("keyplane.jobs")

POLL_INTERVAL: Final = 0.5


class JobRunner:
    def __init__(
        self, jobs: JobQueue, *, workers: int, poll_interval: float = POLL_INTERVAL
    ) -> None:
        self._jobs = jobs
        self.workers = workers
        self.poll_interval = poll_interval
        self._wake = threading.Condition()
        self._pending_wakeups = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: set[str] = set()
        self._running_lock = threading.Lock()
        self._warnings = Throttled(logger)

    def start(self) -> None:
        if self._threads or self.workers == 0:
            return
        self._stop.clear()
        for number in range(self.workers):
            thread = threading.Thread(
                target=self._work, name=f"keyplane-job-worker-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        heartbeat = threading.Thread(target=self._heartbeat, name="keyplane-job-lease", daemon=True)
        heartbeat.start()
        self._threads.append(heartbeat)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; wait for running jobs, and queue again those that do not end in time."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._threads = []
        with self._running_lock:
            unfinished = list(self._running)
        if unfinished:
            try:
                self._jobs.release(unfinished)
            except (SQLAlchemyError, StorageUnavailable) as error:
                logger.warning(
                    "could not re-queue %d jobs (%s)", len(unfinished), cause_name(error)
                )

    def notify(self) -> None:
        """A job was submitted: wake one idle worker now instead of at its next poll."""
        with self._wake:
            self._pending_wakeups += 1
            self._wake.notify()

    def run_pending(self) -> int:
        """Run queued jobs in the calling thread until none is left; return how many ran."""
        count = 0
        while (claimed := self._jobs.claim()) is not None:
            self._jobs.execute(claimed)
            count += 1
        return count

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                claimed = self._jobs.claim()
            except DATABASE_UNAVAILABLE_ERRORS as error:
                self._database_unavailable(error)
                claimed = None
            except Exception:  # any other failure must not kill the worker either
                logger.exception("claiming a job failed")
                claimed = None
            else:
                self._database_back()
            if claimed is None:
                self._idle()
                continue
            with self._running_lock:
                self._running.add(claimed.id)
            try:
                finished = self._jobs.execute(claimed, interrupted=self._stop.is_set)
                if not finished and self._stop.is_set():
                    self._jobs.release([claimed.id])  # for another process, not after the lease
            except DATABASE_UNAVAILABLE_ERRORS as error:
                self._database_unavailable(error)  # the lease runs out; another run re-queues it
            except Exception:
                logger.exception("job %s could not be stored; it will be re-queued", claimed.id)
            finally:
                with self._running_lock:
                    self._running.discard(claimed.id)

    def _idle(self) -> None:
        with self._wake:
            if self._pending_wakeups == 0 and not self._stop.is_set():
                self._wake.wait(self.poll_interval)
            self._pending_wakeups = max(0, self._pending_wakeups - 1)

    def _heartbeat(self) -> None:
        while not self._stop.wait(LEASE.total_seconds() / 4):
            with self._running_lock:
                running = list(self._running)
            try:
                self._jobs.renew(running)
            except DATABASE_UNAVAILABLE_ERRORS as error:
                self._database_unavailable(error)
            except Exception:
                logger.exception("renewing job leases failed")

    def _database_unavailable(self, error: Exception) -> None:
        """A few lines per outage (not a traceback per poll): workers retry at each poll."""
        self._warnings.warning(
            "database",
            "the job workers cannot reach the database (%s); retrying",
            cause_name(error),
        )

    def _database_back(self) -> None:
        self._warnings.recovered("database", "the job workers reach the database again")
