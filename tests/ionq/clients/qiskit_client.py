"""qiskit-ionq against Keyplane, pointed by IONQ_API_URL and IONQ_API_KEY (see README.md)."""

from __future__ import annotations

import json
import os
import sys
import time

from qiskit import QuantumCircuit, transpile
from qiskit.circuit.library import MCPhaseGate, PauliEvolutionGate
from qiskit.quantum_info import SparsePauliOp, Statevector
from qiskit_ionq import IonQProvider
from qiskit_ionq.exceptions import IonQAPIError


def circuits() -> list[QuantumCircuit]:
    bell = QuantumCircuit(2, 2, name="bell")
    bell.h(0)
    bell.cx(0, 1)

    ghz = QuantumCircuit(4, 4, name="ghz")
    ghz.h(0)
    for qubit in range(3):
        ghz.cx(qubit, qubit + 1)

    mixed = QuantumCircuit(3, 3, name="mixed")
    mixed.rx(0.7, 0)
    mixed.ry(1.1, 1)
    mixed.h(2)
    mixed.cp(0.9, 2, 0)
    mixed.crz(0.4, 0, 1)
    mixed.ccx(0, 2, 1)
    mixed.swap(0, 2)
    mixed.sdg(1)
    mixed.sx(0)
    mixed.t(2)
    mixed.rzz(0.3, 0, 1)
    mixed.cy(1, 2)
    mixed.rz(1.3, 1)
    mixed.h(1)

    evolved = QuantumCircuit(4, 4, name="evolved")
    evolved.h(range(4))
    terms = SparsePauliOp(["XZI", "IZY", "YYZ"], [0.3, -0.8, 0.5])  # commuting terms
    evolved.append(PauliEvolutionGate(terms, time=0.6), [0, 1, 3])
    evolved.append(MCPhaseGate(0.77, 2), [3, 0, 1])
    evolved.ch(0, 1)
    evolved.csx(1, 2)
    evolved.cry(0.7, 2, 3)
    evolved.ryy(0.9, 1, 3)
    evolved.mcx([0, 1, 2], 3)
    evolved.sxdg(1)
    evolved.p(0.3, 2)
    evolved.h(range(4))
    return [bell, ghz, evolved, mixed]


def run_circuits() -> dict[str, object]:
    backend = IonQProvider().get_backend("simulator")
    results = []
    for number, circuit in enumerate(circuits()):
        reference = Statevector(circuit).probabilities_dict()
        measured = circuit.copy()
        measured.measure(range(circuit.num_qubits), range(circuit.num_qubits))
        if number == len(circuits()) - 1:
            # The usual flow: transpile for the backend, then run.
            measured = transpile(measured, backend, optimization_level=1)
        job = backend.run(measured, shots=100_000, sampler_seed=7, name=f"qiskit-{circuit.name}")
        result = job.result(wait=0.2)
        probabilities = result.get_probabilities()
        counts = result.get_counts()
        results.append(
            {
                "name": circuit.name,
                "job_id": job.job_id(),
                "remote": {key: float(value) for key, value in probabilities.items()},
                "reference": {
                    key: float(value) for key, value in reference.items() if value > 1e-12
                },
                "counts_total": int(sum(counts.values())),
            }
        )
    # Several circuits in one job (ionq.multi-circuit.v1).
    batch = circuits()[:2]
    measured_batch = []
    for circuit in batch:
        measured = circuit.copy()
        measured.measure(range(circuit.num_qubits), range(circuit.num_qubits))
        measured_batch.append(measured)
    job = backend.run(measured_batch, shots=100_000, sampler_seed=7, name="qiskit-batch")
    result = job.result(wait=0.2)
    for index, circuit in enumerate(batch):
        probabilities = result.get_probabilities(index)
        results.append(
            {
                "name": f"batch-{circuit.name}",
                "job_id": job.job_id(),
                "remote": {key: float(value) for key, value in probabilities.items()},
                "reference": {
                    key: float(value)
                    for key, value in Statevector(circuit).probabilities_dict().items()
                    if value > 1e-12
                },
            }
        )
    return {"client": "qiskit-ionq", "results": results}


def too_large() -> QuantumCircuit:
    """Over Keyplane's default work budget: 600 gates on 20 qubits (2^29 allowed)."""
    circuit = QuantumCircuit(20, 20)
    for index in range(600):
        circuit.h(index % 20)
    circuit.measure(range(20), range(20))
    return circuit


def run_revoked(circuit: QuantumCircuit | None = None) -> dict[str, object]:
    """Submit one circuit the server refuses (by default: any, with a revoked key)."""
    backend = IonQProvider().get_backend("simulator")
    if circuit is None:
        circuit = QuantumCircuit(1, 1)
        circuit.h(0)
        circuit.measure(0, 0)
    started = time.monotonic()
    try:
        backend.run(circuit, shots=10)
    except IonQAPIError as error:
        return {
            "error": type(error).__name__,
            "status": error.status_code,
            "message": error.message,
            "seconds": time.monotonic() - started,
        }
    return {"error": None, "seconds": time.monotonic() - started}


if __name__ == "__main__":
    os.environ["IONQ_API_URL"] = os.environ["KEYPLANE_TEST_URL"] + "/v0.4"
    os.environ["IONQ_API_KEY"] = os.environ["KEYPLANE_TEST_KEY"]
    mode = sys.argv[1]
    if mode == "circuits":
        output = run_circuits()
    else:
        output = run_revoked(too_large() if mode == "too-large" else None)
    print(json.dumps(output))
