"""cirq-ionq against Keyplane, pointed by ``remote_host`` (see README.md)."""

from __future__ import annotations

import json
import os
import sys
import time

import cirq
import cirq_ionq
import numpy as np
from cirq_ionq.ionq_exceptions import IonQException


def circuits() -> list[tuple[str, cirq.Circuit]]:
    q = cirq.LineQubit.range(3)
    bell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(q[0], q[1]), cirq.measure(q[0], q[1], key="m"))
    mixed = cirq.Circuit(
        cirq.rx(0.3)(q[0]),
        cirq.ry(1.2)(q[1]),
        cirq.H(q[2]),
        cirq.CNOT(q[2], q[0]),
        cirq.S(q[1]),
        cirq.T(q[0]) ** -1,
        cirq.X(q[2]) ** 0.5,
        cirq.SWAP(q[0], q[1]),
        cirq.ZZ(q[1], q[2]) ** 0.37,
        cirq.XX(q[0], q[2]) ** 0.21,
        cirq.rz(0.8)(q[2]),
        cirq.PauliStringPhasor(
            cirq.PauliString({q[0]: cirq.X, q[2]: cirq.Z}), exponent_neg=0.4, exponent_pos=0.1
        ),
        cirq.Y(q[1]) ** 0.7,
        cirq.H(q[0]),
        cirq.measure(*q, key="all"),
    )
    return [("bell", bell), ("mixed", mixed)]


def reference(circuit: cirq.Circuit) -> dict[int, float]:
    """cirq's own simulator: probabilities keyed big-endian over the sorted qubits."""
    unmeasured = cirq.drop_terminal_measurements(circuit)
    qubits = sorted(circuit.all_qubits())
    state = (
        cirq.Simulator(dtype=np.complex128)
        .simulate(unmeasured, qubit_order=qubits)
        .final_state_vector
    )
    probabilities = np.abs(state) ** 2
    return {index: float(p) for index, p in enumerate(probabilities) if p > 1e-12}


def run_circuits(service: cirq_ionq.Service) -> dict[str, object]:
    results = []
    for number, (name, circuit) in enumerate(circuits()):
        if number == 0:
            # The one-call flow: run, poll, sample.
            sampled = service.run(circuit, repetitions=50, name=f"cirq-{name}")
            assert len(sampled.measurements["m"]) == 50
        job = service.create_job(circuit, repetitions=100, name=f"cirq-{name}")
        result = job.results(timeout_seconds=60, polling_seconds=0.1)
        remote = result.probabilities()
        results.append(
            {
                "name": name,
                "job_id": job.job_id(),
                "remote": {str(key): float(value) for key, value in remote.items()},
                "reference": {str(key): value for key, value in reference(circuit).items()},
            }
        )
    # Several circuits in one job (ionq.multi-circuit.v1).
    batch = [circuit for _, circuit in circuits()]
    job = service.create_batch_job(batch, repetitions=100, name="cirq-batch")
    for (name, circuit), result in zip(
        circuits(), job.results(timeout_seconds=60, polling_seconds=0.1), strict=True
    ):
        results.append(
            {
                "name": f"batch-{name}",
                "job_id": job.job_id(),
                "remote": {str(k): float(v) for k, v in result.probabilities().items()},
                "reference": {str(k): v for k, v in reference(circuit).items()},
            }
        )
    sampled_batch = service.run_batch(batch, repetitions=20)
    assert [
        len(result.measurements["m" if i == 0 else "all"]) for i, result in enumerate(sampled_batch)
    ] == [20, 20]
    listed = service.list_jobs()
    return {"client": "cirq-ionq", "results": results, "listed": [job.job_id() for job in listed]}


def too_large() -> cirq.Circuit:
    """Over Keyplane's default work budget: 600 gates on 20 qubits (2^29 allowed)."""
    qubits = cirq.LineQubit.range(20)
    gates = [cirq.H(qubits[index % 20]) for index in range(600)]
    return cirq.Circuit(*gates, cirq.measure(*qubits))


def run_revoked(
    service: cirq_ionq.Service, circuit: cirq.Circuit | None = None
) -> dict[str, object]:
    """Submit one circuit the server refuses (by default: any, with a revoked key)."""
    if circuit is None:
        circuit = cirq.Circuit(cirq.H(cirq.LineQubit(0)), cirq.measure(cirq.LineQubit(0)))
    started = time.monotonic()
    try:
        service.run(circuit, repetitions=10)
    except IonQException as error:
        return {
            "error": type(error).__name__,
            "status": error.status_code,
            "message": str(error),
            "seconds": time.monotonic() - started,
        }
    return {"error": None, "seconds": time.monotonic() - started}


if __name__ == "__main__":
    service = cirq_ionq.Service(
        remote_host=os.environ["KEYPLANE_TEST_URL"],
        api_key=os.environ["KEYPLANE_TEST_KEY"],
        default_target="simulator",
    )
    mode = sys.argv[1]
    if mode == "circuits":
        output = run_circuits(service)
    else:
        output = run_revoked(service, too_large() if mode == "too-large" else None)
    print(json.dumps(output))
