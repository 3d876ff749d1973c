"""The ``ionq`` SDK against Keyplane, pointed by ``base_url`` (see README.md)."""

from __future__ import annotations

import json
import os
import sys
import time

import requests
from ionq.jobs import Circuit
from qiskit import QuantumCircuit
from qiskit.quantum_info import Statevector

from ionq import Backend, Client

CIRCUITS = {
    "ghz": (
        3,
        [
            {"gate": "h", "targets": [0]},
            {"gate": "cnot", "controls": [0], "targets": [1]},
            {"gate": "cnot", "controls": [1], "targets": [2]},
        ],
    ),
    "rotations": (
        3,
        [
            {"gate": "ry", "targets": [0], "rotation": 0.9},
            {"gate": "rx", "targets": [1], "rotation": 2.1},
            {"gate": "x", "controls": [0, 1], "targets": [2]},
            {"gate": "swap", "targets": [0, 2]},
            {"gate": "v", "targets": [1]},
            {"gate": "rz", "targets": [1], "rotation": 0.4},
            {"gate": "h", "targets": [1]},
            {"gate": "ti", "targets": [2]},
            {"gate": "h", "targets": [2]},
        ],
    ),
}


def reference(qubits: int, gates: list[dict[str, object]]) -> dict[str, float]:
    """The same gates built in qiskit; qiskit's Statevector indexes little-endian too."""
    circuit = QuantumCircuit(qubits)
    for gate in gates:
        name, targets = gate["gate"], list(gate["targets"])  # type: ignore[call-overload]
        controls = list(gate.get("controls", []))  # type: ignore[call-overload]
        if name == "cnot" or (name == "x" and controls):
            circuit.mcx(controls, targets[0])
        elif name == "swap":
            circuit.swap(*targets)
        elif name in ("rx", "ry", "rz"):
            getattr(circuit, name)(gate["rotation"], targets[0])
        else:
            {"h": circuit.h, "v": circuit.sx, "ti": circuit.tdg}[str(name)](targets[0])
    probabilities = Statevector(circuit).probabilities()
    return {str(index): float(p) for index, p in enumerate(probabilities) if p > 1e-12}


def run_circuits(backend: Backend) -> dict[str, object]:
    results = []
    for name, (qubits, gates) in CIRCUITS.items():
        job = backend.run(
            Circuit([{"circuit": gates}], qubits=qubits), name=f"ionq-{name}", shots=200
        )
        (result,) = job.results()
        results.append(
            {
                "name": name,
                "job_id": job.id,
                "remote": {key: float(value) for key, value in result.probabilities.items()},
                "reference": reference(qubits, gates),
            }
        )
    # Several circuits in one job (ionq.multi-circuit.v1).
    names = list(CIRCUITS)
    workload = Circuit([{"circuit": CIRCUITS[name][1]} for name in names], qubits=3)
    job = backend.run(workload, name="ionq-batch", shots=200)
    for name, result in zip(names, job.results(), strict=True):
        results.append(
            {
                "name": f"batch-{name}",
                "job_id": job.id,
                "remote": {key: float(value) for key, value in result.probabilities.items()},
                "reference": reference(*CIRCUITS[name]),
            }
        )
    listed = backend.client.jobs.get_jobs(limit=10)
    return {"client": "ionq", "results": results, "listed": [job.id for job in listed]}


def too_large() -> Circuit:
    """Over Keyplane's default work budget: 600 gates on 20 qubits (2^29 allowed)."""
    gates = [{"gate": "h", "targets": [index % 20]} for index in range(600)]
    return Circuit([{"circuit": gates}], qubits=20)


def run_revoked(backend: Backend, circuit: Circuit | None = None) -> dict[str, object]:
    """Submit one circuit the server refuses (by default: any, with a revoked key)."""
    if circuit is None:
        circuit = Circuit([{"circuit": [{"gate": "h", "targets": [0]}]}], qubits=1)
    started = time.monotonic()
    try:
        backend.run(circuit, shots=10)
    except requests.HTTPError as error:
        return {
            "error": type(error).__name__,
            "status": error.response.status_code,
            "message": error.response.json()["message"],
            "seconds": time.monotonic() - started,
        }
    return {"error": None, "seconds": time.monotonic() - started}


if __name__ == "__main__":
    client = Client(
        api_key=os.environ["KEYPLANE_TEST_KEY"], base_url=os.environ["KEYPLANE_TEST_URL"] + "/v0.4"
    )
    backend = Backend("simulator", client=client)
    mode = sys.argv[1]
    if mode == "circuits":
        output = run_circuits(backend)
    else:
        output = run_revoked(backend, too_large() if mode == "too-large" else None)
    print(json.dumps(output))
