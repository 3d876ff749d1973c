"""IonQ's ``ionq.circuit.v1`` input (gateset ``qis``), parsed and checked into a program.

A gate is a JSON object such as ``{"gate": "cnot", "control": 0, "target": 1}``
(cirq-ionq), ``{"gate": "x", "controls": [0], "targets": [1]}`` (qiskit-ionq)
or ``{"gate": "rx", "targets": [0], "rotation": 1.57}``. Rotations are in
radians. Everything a client can get wrong raises :class:`InvalidCircuit`
with one of IonQ's failure codes, so the API answers 400 and never 500.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from keyplane.core.errors import InvalidInput

#: Gates that act on each of their targets alone (controls allowed).
SINGLE_QUBIT_GATES: Final = frozenset(
    {"h", "x", "y", "z", "s", "si", "t", "ti", "v", "vi", "rx", "ry", "rz", "not", "cnot"}
)
ROTATION_GATES: Final = frozenset({"rx", "ry", "rz", "xx", "yy", "zz"})
PARITY_GATES: Final = frozenset({"xx", "yy", "zz"})
ALL_GATES: Final = SINGLE_QUBIT_GATES | PARITY_GATES | {"swap", "pauliexp"}
MAX_GATES: Final = 10_000
MAX_TERMS: Final = 256
_PAULI_LETTERS: Final = frozenset("IXYZ")


class InvalidCircuit(InvalidInput):
    """The circuit cannot run; ``failure_code`` is IonQ's (``UnsupportedGate``, ...)."""

    def __init__(self, failure_code: str, message: str) -> None:
        super().__init__(message, field="input")
        self.failure_code = failure_code


@dataclass(frozen=True, slots=True)
class Operation:
    """One checked gate. ``rotation`` is radians; ``terms``/``coefficients`` only for pauliexp."""

    gate: str
    targets: tuple[int, ...]
    controls: tuple[int, ...] = ()
    rotation: float | None = None
    terms: tuple[str, ...] = ()
    coefficients: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Program:
    qubits: int
    operations: tuple[Operation, ...]

    def gate_counts(self) -> dict[str, int]:
        """IonQ's ``stats.gate_counts``: gates on one qubit and on two or more."""
        one = sum(1 for op in self.operations if len(op.targets) + len(op.controls) == 1)
        return {"1q": one, "2q": len(self.operations) - one}

    def size(self) -> int:
        """What it counts toward ``KEYPLANE_JOB_MAX_GATES`` (see :func:`circuit_size`)."""
        return sum(len(op.terms) if op.gate == "pauliexp" else 1 for op in self.operations)


def parse_circuit(workload: Any, *, max_qubits: int, max_gates: int = MAX_GATES) -> Program:
    """Check an ``input`` object of an ``ionq.circuit.v1`` job and return its program."""
    if not isinstance(workload, Mapping):
        raise InvalidCircuit("Invalid", "input must be an object with a 'circuit' list")
    gateset = workload.get("gateset", "qis")
    if gateset != "qis":
        raise InvalidCircuit(
            "UnsupportedGate",
            f"gateset {gateset!r} is not supported: Keyplane's simulator runs the 'qis' gateset",
        )
    circuit = workload.get("circuit")
    if not isinstance(circuit, list):
        raise InvalidCircuit("Invalid", "input.circuit must be a list of gates")
    # Counted before any gate is checked, so an oversized circuit costs one cheap pass.
    size = circuit_size(circuit)
    if size > max_gates:
        raise InvalidCircuit(
            "TooManyGates",
            f"a job has at most {max_gates} gates (KEYPLANE_JOB_MAX_GATES; a pauliexp "
            f"counts one per term); this circuit has {size:,}",
        )
    declared = workload.get("qubits")
    if declared is not None and (not _is_int(declared) or declared < 0):
        raise InvalidCircuit("Invalid", "input.qubits must be a non-negative integer")
    if declared is not None and declared > max_qubits:
        raise _too_large(declared, max_qubits)
    operations = []
    # Without a declared width, check against the limit and infer it below.
    width = declared if declared else max_qubits
    for position, gate in enumerate(circuit):
        operations.append(_parse_gate(gate, position, width))
    if not declared:
        used = [q for op in operations for q in (*op.targets, *op.controls)]
        width = max(used, default=0) + 1
    return Program(max(width, 1), tuple(operations))


def circuit_size(circuit: list[Any]) -> int:
    """What a circuit counts toward ``KEYPLANE_JOB_MAX_GATES``: one per gate, one per pauliexp term.

    A pauliexp of 256 terms is 256 exponentials to check and to run, so it
    counts as 256 gates. This pass reads only lengths (linear in the gates,
    nothing per term), so it can run before anything costlier.
    """
    size = 0
    for gate in circuit:
        pauliexp = isinstance(gate, Mapping) and gate.get("gate") == "pauliexp"
        terms = gate.get("terms") if pauliexp else None
        size += max(1, len(terms)) if isinstance(terms, list) else 1
    return size


def _too_large(qubits: int, max_qubits: int) -> InvalidCircuit:
    return InvalidCircuit(
        "CircuitTooLarge",
        f"the circuit uses {qubits} qubits; this simulator runs at most {max_qubits} "
        "(KEYPLANE_IONQ_MAX_QUBITS)",
    )


def _parse_gate(gate: Any, position: int, qubits: int) -> Operation:
    where = f"gate {position}"
    if not isinstance(gate, Mapping):
        raise InvalidCircuit("Invalid", f"{where} must be an object")
    name = gate.get("gate")
    if not isinstance(name, str) or name not in ALL_GATES:
        shown = repr(name)[:40] if isinstance(name, str) else "missing"
        raise InvalidCircuit(
            "UnsupportedGate",
            f"{where}: gate {shown} is not supported; use one of {', '.join(sorted(ALL_GATES))}",
        )
    where = f"gate {position} ({name})"
    targets = _qubit_list(gate, "target", "targets", where, qubits)
    controls = _qubit_list(gate, "control", "controls", where, qubits)
    if not targets:
        raise InvalidCircuit("Invalid", f"{where} needs 'target' or 'targets'")
    if len(set(targets)) != len(targets) or len(set(controls)) != len(controls):
        raise InvalidCircuit("Invalid", f"{where} names a qubit twice")
    if set(targets) & set(controls):
        raise InvalidCircuit("Invalid", f"{where} uses a qubit as both control and target")
    if name == "cnot" and not controls:
        raise InvalidCircuit("Invalid", f"{where} needs 'control' or 'controls'")
    rotation = _rotation(gate, name, where)
    if (name in PARITY_GATES or name == "swap") and len(targets) != 2:
        raise InvalidCircuit("Invalid", f"{where} needs exactly two targets")
    if name == "pauliexp":
        return _pauliexp(gate, targets, controls, where)
    if name in ("not", "cnot"):
        name = "x"
    return Operation(name, targets, controls, rotation)


def _qubit_list(
    gate: Mapping[str, Any], one: str, many: str, where: str, qubits: int
) -> tuple[int, ...]:
    values: list[Any] = []
    single = gate.get(one)
    if single is not None:
        values.append(single)
    multiple = gate.get(many)
    if multiple is not None:
        if not isinstance(multiple, list):
            raise InvalidCircuit("Invalid", f"{where}: '{many}' must be a list of qubit indices")
        values.extend(multiple)
    for value in values:
        if not _is_int(value) or value < 0:
            raise InvalidCircuit("Invalid", f"{where}: qubit indices are non-negative integers")
        if value >= qubits:
            raise InvalidCircuit(
                "Invalid", f"{where}: qubit {value} is out of range (the circuit has {qubits})"
            )
    return tuple(int(value) for value in values)


def _rotation(gate: Mapping[str, Any], name: str, where: str) -> float | None:
    value = gate.get("rotation")
    if value is None:
        if name in ROTATION_GATES:
            raise InvalidCircuit("Invalid", f"{where} needs a 'rotation' in radians")
        return None
    # qiskit-ionq sends the phase gate p(θ) as "z" with a rotation.
    if name not in ROTATION_GATES and name != "z":
        raise InvalidCircuit("Invalid", f"{where} takes no rotation")
    return _finite(value, f"{where}: 'rotation' must be a finite number (radians)")


def _pauliexp(
    gate: Mapping[str, Any], targets: tuple[int, ...], controls: tuple[int, ...], where: str
) -> Operation:
    if controls:
        raise InvalidCircuit("Invalid", f"{where} cannot be controlled")
    terms = gate.get("terms")
    coefficients = gate.get("coefficients")
    if (
        not isinstance(terms, list)
        or not isinstance(coefficients, list)
        or not terms
        or len(terms) != len(coefficients)
        or len(terms) > MAX_TERMS
    ):
        raise InvalidCircuit(
            "Invalid",
            f"{where} needs 'terms' and 'coefficients' lists of equal length (1 to {MAX_TERMS})",
        )
    for term in terms:
        if (
            not isinstance(term, str)
            or len(term) != len(targets)
            or not set(term) <= _PAULI_LETTERS
        ):
            raise InvalidCircuit(
                "Invalid", f"{where}: each term is a string of I, X, Y, Z, one per target"
            )
    clash = first_anticommuting_pair(terms)
    if clash is not None:
        first, second = clash
        raise InvalidCircuit("Invalid", f"{where}: terms {first} and {second} do not commute")
    time = _finite(gate.get("time"), f"{where} needs a finite 'time'")
    numbers = tuple(_finite(c, f"{where}: coefficients are finite numbers") for c in coefficients)
    return Operation("pauliexp", targets, (), time, terms=tuple(terms), coefficients=numbers)


def symplectic(term: str) -> tuple[int, int]:
    """A Pauli string as bitmasks ``(x, z)``: X is x, Z is z, Y is both, I neither."""
    x = z = 0
    for position, letter in enumerate(term):
        bit = 1 << position
        if letter in "XY":
            x |= bit
        if letter in "ZY":
            z |= bit
    return x, z


def commute(first: tuple[int, int], second: tuple[int, int]) -> bool:
    """Two Pauli strings commute iff they anticommute on an even number of positions."""
    (x1, z1), (x2, z2) = first, second
    return ((x1 & z2) ^ (z1 & x2)).bit_count() % 2 == 0


def first_anticommuting_pair(terms: list[str]) -> tuple[str, str] | None:
    """A pair of ``terms`` that do not commute, or None if all commute: O(terms x letters).

    Commutation is a bilinear form on the (x, z) bit vectors over GF(2), so a
    term commutes with every earlier term iff it commutes with a basis of
    their span. Only a basis is kept (reduced, so a new term is reduced in one
    pass); while all terms commute the span is isotropic and the basis has at
    most one vector per letter. The earlier term to name is searched for only
    once a clash is found. Comparing every pair instead was 32,640 string
    comparisons per gate of 256 terms (12 s for a 1 MiB body).
    """
    # basis[pivot] = vector with its highest set bit at pivot (x bits above z bits)
    basis: dict[int, tuple[int, int, int]] = {}
    width = max((len(term) for term in terms), default=0)
    for index, term in enumerate(terms):
        x, z = symplectic(term)
        if any(not commute((x, z), (bx, bz)) for bx, bz, _ in basis.values()):
            for earlier in terms[:index]:  # one exists: the form is bilinear
                if not commute(symplectic(earlier), (x, z)):
                    return earlier, term
        packed = (x << width) | z
        for pivot in sorted(basis, reverse=True):
            if packed >> pivot & 1:
                packed ^= basis[pivot][2]
        if packed:
            pivot = packed.bit_length() - 1
            basis[pivot] = (packed >> width, packed & ((1 << width) - 1), packed)
    return None


def _finite(value: Any, message: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidCircuit("Invalid", message)
    return float(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
