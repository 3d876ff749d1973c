"""The IonQ feature's web layer: the ``/v0.4`` app and the console's Jobs page.

- ``app.py``: :func:`create_ionq_app`, the app mounted at ``/v0.4`` (its own
  routes and its own IonQ-shaped errors);
- ``routes.py``: the v0.4 routes (whoami, backends, jobs), served at ``core.paths.IONQ_PREFIX``;
- ``dependencies.py``: request -> the authenticated key, with the scope a route needs;
- ``errors.py``: errors in IonQ's shape (``{"statusCode", "error", "message"}``);
- ``console.py``: the console's Jobs page (``/console/jobs``) and its template.

Calls the job service (``keyplane.ionq.jobs``) through the process's
``Services``; never touches the database itself.
"""
