"""What a job request may be: IonQ's job JSON, checked before a job is queued.

The clients differ in what they send (shots as a number or a string, extra
members such as ``lang`` or ``dry_run``); everything that Keyplane cannot run
is refused here with :class:`InvalidInput` (400), so an accepted job can run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from keyplane.config import DEFAULT_MAX_JSON_DEPTH, MAX_JSON_DEPTH_CEILING
from keyplane.core.errors import InvalidInput
from keyplane.quantum.circuit import MAX_GATES, InvalidCircuit, Program, parse_circuit
from keyplane.service.validation import MAX_METADATA_BYTES, check_json, check_metadata, is_text
from keyplane.storage.models import NAME_LENGTH

CIRCUIT_JOB: Final = "ionq.circuit.v1"
MULTI_CIRCUIT_JOB: Final = "ionq.multi-circuit.v1"
JOB_TYPES: Final = (CIRCUIT_JOB, MULTI_CIRCUIT_JOB)
MAX_CIRCUITS: Final = 100
SIMULATOR: Final = "simulator"
DEFAULT_SHOTS: Final = 100
MAX_SHOTS: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class Submission:
    name: str | None
    shots: int
    input: Mapping[str, Any]
    type: str
    programs: tuple[Program, ...]
    metadata: dict[str, Any] | None
    noise: dict[str, Any] | None
    settings: dict[str, Any] | None


def parse_submission(
    body: Mapping[str, Any], *, max_qubits: int, max_depth: int = DEFAULT_MAX_JSON_DEPTH
) -> Submission:
    """Check a job request as IonQ's clients send it; :class:`InvalidInput` on any fault."""
    if not isinstance(body, Mapping):
        raise InvalidInput("the body must be a JSON object")
    # All of it is stored and parts are rendered back: plain, shallow JSON only.
    check_json(body, "the body", max_depth=max_depth)
    job_type = body.get("type", CIRCUIT_JOB)
    if job_type not in JOB_TYPES:
        raise InvalidInput(
            f"job type {str(job_type)[:60]!r} is not supported: Keyplane runs "
            f"{' and '.join(JOB_TYPES)}",
            field="type",
        )
    backend = body.get("backend", SIMULATOR)
    if backend != SIMULATOR:
        raise InvalidInput(
            f"backend {str(backend)[:60]!r} is not available: Keyplane has '{SIMULATOR}' only",
            field="backend",
        )
    workload = body.get("input")
    if not isinstance(workload, Mapping):
        raise InvalidInput("input must be an object with the circuit", field="input")
    programs = parse_programs(job_type, workload, max_qubits=max_qubits)
    return Submission(
        name=_name(body.get("name")),
        shots=_shots(body.get("shots")),
        input=workload,
        type=job_type,
        programs=programs,
        metadata=_object(body.get("metadata"), "metadata"),
        noise=_noise(body.get("noise")),
        settings=_object(body.get("settings"), "settings"),
    )


def _name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > NAME_LENGTH or not is_text(value):
        raise InvalidInput(f"name is a string of at most {NAME_LENGTH} characters", field="name")
    return value


def _shots(value: Any) -> int:
    """Shots come as a number (qiskit-ionq, ionq) or a string (cirq-ionq)."""
    if value is None:
        return DEFAULT_SHOTS
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 9:
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SHOTS:
        raise InvalidInput(f"shots must be an integer from 1 to {MAX_SHOTS}", field="shots")
    return value


def _object(value: Any, field: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        # Its depth was checked with the whole body's (parse_submission).
        checked = check_metadata(value, max_depth=MAX_JSON_DEPTH_CEILING)
    except InvalidInput:
        raise InvalidInput(
            f"{field} must be a JSON object of at most {MAX_METADATA_BYTES} bytes", field=field
        ) from None
    return dict(checked)


def _noise(value: Any) -> dict[str, Any] | None:
    noise = _object(value, "noise")
    if noise is not None and noise.get("model") not in (None, "ideal"):
        raise InvalidInput(
            "only the 'ideal' noise model is simulated; leave noise out or use {'model': 'ideal'}",
            field="noise",
        )
    return noise


def parse_programs(
    job_type: str, workload: Mapping[str, Any], *, max_qubits: int
) -> tuple[Program, ...]:
    """The circuit of a circuit job, or each circuit of a multi-circuit job, checked."""
    if job_type == CIRCUIT_JOB:
        return (parse_circuit(workload, max_qubits=max_qubits),)
    circuits = workload.get("circuits")
    if not isinstance(circuits, list) or not 1 <= len(circuits) <= MAX_CIRCUITS:
        raise InvalidCircuit(
            "Invalid", f"input.circuits must be a list of 1 to {MAX_CIRCUITS} circuits"
        )
    budget = MAX_GATES  # for the whole job, as for one circuit
    programs = []
    for index, entry in enumerate(circuits):
        if not isinstance(entry, Mapping):
            raise InvalidCircuit("Invalid", f"circuit {index} must be an object")
        one = {
            "gateset": workload.get("gateset", "qis"),
            "qubits": entry.get("qubits", workload.get("qubits")),
            "circuit": entry.get("circuit"),
        }
        try:
            program = parse_circuit(one, max_qubits=max_qubits, max_gates=budget)
        except InvalidCircuit as error:
            raise InvalidCircuit(error.code, f"circuit {index}: {error}") from None
        budget -= len(program.operations)
        programs.append(program)
    return tuple(programs)


def gate_counts(programs: Iterable[Program]) -> dict[str, int]:
    total = {"1q": 0, "2q": 0}
    for program in programs:
        for kind, count in program.gate_counts().items():
            total[kind] += count
    return total
