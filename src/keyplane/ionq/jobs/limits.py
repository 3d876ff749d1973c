"""The job limits: what one key and one project may ask of the simulator.

The operator sets them with the ``KEYPLANE_JOB_*`` variables (read in
``keyplane.config``, into ``Settings.jobs``). Where each is enforced:

- ``max_open_per_key``, ``max_open_per_project``: when a job is submitted,
  under the project's row lock (``service.JobService.submit``);
- ``max_gates``, ``max_shots``, ``max_work``: when a job is submitted, from its
  circuit alone, and again before it runs (``requests.parse_submission``,
  ``requests.parse_programs``);
- ``max_running_per_project``: when a worker claims a job (``queue.JobQueue.claim``);
- ``max_result_outcomes``: while the result is built (``queue.JobQueue.execute``).

See docs/security.md, "Limits".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobLimits:
    """What one key and one project may ask of the IonQ-compatible API's simulator.

    Checked when a job is submitted (and again before it runs, in case the
    operator lowered them); see docs/security.md, "Limits".
    """

    #: Jobs one key may have queued or running (``KEYPLANE_JOB_MAX_OPEN_PER_KEY``).
    max_open_per_key: int = 50
    #: Jobs one project may have queued or running, all its keys together.
    max_open_per_project: int = 100
    #: Jobs of one project the workers (of every instance) run at the same time.
    max_running_per_project: int = 1
    #: Gates in a job (all its circuits together; a pauliexp counts one per term).
    max_gates: int = 10_000
    #: Shots a job may ask for (the simulator computes exact probabilities).
    max_shots: int = 1_000_000
    #: Estimated work of a job: amplitude updates, ``2^qubits`` per gate step
    #: and at least ``simulator.STEP_FLOOR`` (see :func:`keyplane.ionq.circuits.simulator.work`).
    max_work: int = 1 << 29
    #: Outcomes a job's result may hold (all circuits together), about 30 bytes each.
    max_result_outcomes: int = 1 << 16
