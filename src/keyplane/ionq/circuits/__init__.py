"""Pure quantum-circuit code: IonQ circuit JSON -> validated program -> ideal probabilities.

``circuit`` parses and checks IonQ's ``ionq.circuit.v1`` input into a
:class:`~keyplane.ionq.circuits.circuit.Program`; ``simulator`` runs a program
on an ideal state vector and prices it (:func:`~keyplane.ionq.circuits.simulator.work`,
the cost the job limits budget with). Imports only ``core`` and numpy: no web,
no database, nothing else of ``keyplane.ionq``. The job service
(``keyplane.ionq.jobs``) validates circuits with it when a job is submitted
and runs them in its workers.
"""
