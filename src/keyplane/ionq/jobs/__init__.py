"""The IonQ feature's job service: jobs stored, checked, queued and run.

- ``limits.py``: :class:`JobLimits`, every limit a key and a project are held
  to (the ``KEYPLANE_JOB_*`` settings), and where each is enforced;
- ``requests.py``: what a job request may be (IonQ's job JSON, checked);
- ``records.py``: the values handed out (``JobRecord``, ``JobStatus``,
  ``JobOwner``) and the job errors;
- ``service.py``: :class:`JobService`, the clients' side (submit, read, list,
  cancel, delete), on top of
- ``queue.py``: :class:`JobQueue`, the workers' side (claim, simulate, store,
  renew, release);
- ``runner.py``: :class:`JobRunner`, the pool of worker threads.

Uses ``keyplane.ionq.circuits`` to parse and simulate, and the shared
``storage`` (the ``jobs`` table) and ``service`` helpers; knows nothing of the web.
"""
