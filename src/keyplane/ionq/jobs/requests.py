"""What a job request may be: IonQ's job JSON, checked before a job is queued.

The clients differ in what they send (shots as a number or a string, extra
members such as ``lang`` or ``dry_run``); everything that Keyplane cannot run
is refused here with :class:`InvalidInput` (400), so an accepted job can run.
A job is also held to the server's :class:`~keyplane.ionq.jobs.limits.JobLimits`: its
qubits, gates, shots and estimated work (:func:`keyplane.ionq.circuits.simulator.work`)
are known from the circuit alone, so an over-budget job is refused before it
is queued, with a message that names the limit and its setting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from keyplane.config import DEFAULT_MAX_JSON_DEPTH, MAX_JSON_DEPTH_CEILING
from keyplane.core.errors import InvalidInput
from keyplane.ionq.circuits import simulator
from keyplane.ionq.circuits.circuit import InvalidCircuit, Program, parse_circuit
from keyplane.ionq.jobs.limits import JobLimits
from keyplane.service.validation import MAX_METADATA_BYTES, check_json, check_metadata, is_text
from keyplane.storage.models import NAME_LENGTH

CIRCUIT_JOB: Final = "ionq.circuit.v1"
MULTI_CIRCUIT_JOB: Final = "ionq.multi-circuit.v1"
JOB_TYPES: Final = (CIRCUIT_JOB, MULTI_CIRCUIT_JOB)
MAX_CIRCUITS: Final = 100
SIMULATOR: Final = "simulator"
DEFAULT_SHOTS: Final = 100


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
    body: Mapping[str, Any],
    *,
    max_qubits: int,
    limits: JobLimits,
    max_depth: int = DEFAULT_MAX_JSON_DEPTH,
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
    programs = parse_programs(job_type, workload, max_qubits=max_qubits, limits=limits)
    return Submission(
        name=_name(body.get("name")),
        shots=_shots(body.get("shots"), limits.max_shots),
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


def _shots(value: Any, max_shots: int) -> int:
    """Shots come as a number (qiskit-ionq, ionq) or a string (cirq-ionq)."""
    if value is None:
        return min(DEFAULT_SHOTS, max_shots)
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 10:
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= max_shots:
        raise InvalidInput(
            f"shots must be an integer from 1 to {max_shots} (KEYPLANE_JOB_MAX_SHOTS)",
            field="shots",
        )
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
    job_type: str, workload: Mapping[str, Any], *, max_qubits: int, limits: JobLimits
) -> tuple[Program, ...]:
    """The circuit of a circuit job, or each circuit of a multi-circuit job, checked."""
    programs = _programs(job_type, workload, max_qubits=max_qubits, max_gates=limits.max_gates)
    check_work(programs, limits.max_work)
    return programs


def check_work(programs: Iterable[Program], max_work: int) -> None:
    """Refuse a job whose estimated work (all circuits together) is over ``max_work``."""
    checked = tuple(programs)
    work = sum(simulator.work(program) for program in checked)
    if work > max_work:
        widest = max(program.qubits for program in checked)
        gates = sum(len(program.operations) for program in checked)
        raise InvalidCircuit(
            "CircuitTooLarge",
            f"the job's estimated work is {work:,} amplitude updates ({gates:,} gates on up to "
            f"{widest} qubits); this server runs at most {max_work:,} per job "
            "(KEYPLANE_JOB_MAX_WORK): use fewer gates or fewer qubits",
        )


def _programs(
    job_type: str, workload: Mapping[str, Any], *, max_qubits: int, max_gates: int
) -> tuple[Program, ...]:
    if job_type == CIRCUIT_JOB:
        return (parse_circuit(workload, max_qubits=max_qubits, max_gates=max_gates),)
    circuits = workload.get("circuits")
    if not isinstance(circuits, list) or not 1 <= len(circuits) <= MAX_CIRCUITS:
        raise InvalidCircuit(
            "Invalid", f"input.circuits must be a list of 1 to {MAX_CIRCUITS} circuits"
        )
    budget = max_gates  # for the whole job, as for one circuit
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
            if error.failure_code == "TooManyGates":  # say the job's limit, not what was left of it
                error = InvalidCircuit(
                    error.failure_code,
                    f"a job has at most {max_gates} gates in all its circuits "
                    "(KEYPLANE_JOB_MAX_GATES; a pauliexp counts one per term)",
                )
            raise InvalidCircuit(error.failure_code, f"circuit {index}: {error}") from None
        budget -= program.size()
        programs.append(program)
    return tuple(programs)


def gate_counts(programs: Iterable[Program]) -> dict[str, int]:
    total = {"1q": 0, "2q": 0}
    for program in programs:
        for kind, count in program.gate_counts().items():
            total[kind] += count
    return total
