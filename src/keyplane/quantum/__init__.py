"""Pure quantum-circuit code: IonQ circuit JSON -> validated program -> ideal probabilities.

Imports only ``core`` and numpy; no web, no database. The service layer
validates circuits with it when a job is created and runs them in its workers.
"""
