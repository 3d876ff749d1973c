"""The IonQ feature: IonQ's v0.4 jobs API on Keyplane keys, with a built-in simulator.

One package, in layers (each imports only those below it):

- ``circuits/``: pure code, IonQ circuit JSON -> checked program -> ideal
  probabilities (no I/O; imports only ``core`` and numpy);
- ``jobs/``: the job service (limits, request checks, store and queries, the
  queue and its worker threads), on the shared ``storage``;
- ``web/``: the ``/v0.4`` app (routes, IonQ's error shape, key dependencies)
  and the console's Jobs page;
- ``feature.py``: the one hook the rest of Keyplane knows: how ``Services``
  gets the job service and its runner, and how the app mounts ``/v0.4`` and
  the Jobs page.

Nothing outside this package imports from it except through ``feature.py``
(and ``config``, for :class:`~keyplane.ionq.jobs.limits.JobLimits`, the type
of ``Settings.jobs``). This module imports nothing, so importing the limits
stays cheap.
"""
