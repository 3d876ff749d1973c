"""Background work: the one loop of the mail outbox, the event dispatcher, the
webhook deliveries and the key scheduler.

A :class:`Loop` runs ``threads`` daemon threads. Each sleeps until it is woken
(:meth:`Loop.wake`, or a :class:`Doorbell` it listens to) or ``interval``
seconds pass, then calls ``step(worker)`` until the step says there is nothing
left to do. A database outage is logged once (then once a minute, and once when
it ends, through :class:`~keyplane.logs.Throttled`); any other error is logged
with its traceback; neither ends the thread. :meth:`Loop.stop` wakes the
threads and waits for them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

from keyplane.core.ids import new_id
from keyplane.logs import Throttled
from keyplane.storage.errors import StorageUnavailable

JOIN_TIMEOUT = 20.0


class Doorbell:
    """Wakes every listening thread of this process (events were committed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[threading.Event] = []

    def subscribe(self, listener: threading.Event) -> None:
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: threading.Event) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def ring(self) -> None:
        with self._lock:
            listeners = tuple(self._listeners)
        for listener in listeners:
            listener.set()


def worker_name() -> str:
    """This process's name for leases: host, process id, a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{new_id('wrk')[4:12]}"


class Loop:
    def __init__(
        self,
        name: str,
        step: Callable[[str], bool],
        *,
        interval: float,
        logger: logging.Logger,
        threads: int = 1,
        doorbell: Doorbell | None = None,
        worker: str | None = None,
    ) -> None:
        """``step(worker)`` does one piece of work and says whether there may be more;
        ``worker`` names this process in leases (each thread adds its number)."""
        self.name = name
        self._step = step
        self._interval = interval
        self._logger = logger
        self._count = threads
        self._doorbell = doorbell
        self.worker = worker or worker_name()
        self._stop = threading.Event()
        self._threads: list[tuple[threading.Thread, threading.Event]] = []
        self._outage = Throttled(logger)

    @property
    def running(self) -> bool:
        return bool(self._threads)

    def wake(self) -> None:
        for _, wake in self._threads:
            wake.set()

    def start(self) -> None:
        if self._threads or self._count <= 0:
            return
        self._stop.clear()
        for number in range(self._count):
            wake = threading.Event()
            if self._doorbell is not None:
                self._doorbell.subscribe(wake)
            worker = f"{self.worker}:{number}" if self._count > 1 else self.worker
            thread = threading.Thread(
                target=self._run, args=(worker, wake), name=f"keyplane-{self.name}", daemon=True
            )
            self._threads.append((thread, wake))
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for _, wake in self._threads:
            if self._doorbell is not None:
                self._doorbell.unsubscribe(wake)
            wake.set()
        for thread, _ in self._threads:
            thread.join(timeout=JOIN_TIMEOUT)
        self._threads = []

    def _run(self, worker: str, wake: threading.Event) -> None:
        while not self._stop.is_set():
            wake.wait(self._interval)
            wake.clear()
            if self._stop.is_set():
                break
            try:
                while self._step(worker) and not self._stop.is_set():
                    pass
                self._outage.recovered("database", "%s: the database is back", self.name)
            except StorageUnavailable as error:
                self._outage.warning(
                    "database", "%s: the database is unavailable (%s)", self.name, error.cause
                )
            except Exception:  # keep the thread alive; the work stays for the next turn
                self._logger.exception("%s: unexpected error", self.name)
