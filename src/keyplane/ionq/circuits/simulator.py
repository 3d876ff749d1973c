"""An ideal state-vector simulator for checked programs (see :mod:`keyplane.ionq.circuits`).

The state of ``n`` qubits is a complex array of shape ``(2,) * n`` whose axis
``n - 1 - q`` is qubit ``q``, so flattening it gives the amplitude of basis
state ``sum(bit_q << q)``: IonQ's little-endian convention, qubit 0 the least
significant bit. A gate touches only views of that array (the control
subspace, then the halves along its target axes), never a 2^n x 2^n matrix, so
20 qubits (16 MiB of state) take milliseconds per gate.

A gate is applied in *steps* (one target, one Pauli term) and each step in
*chunks* of at most ``2^CHUNK_QUBITS`` amplitudes (fixing qubits the step does
not touch), with a ``checkpoint`` call after each chunk: so a caller can stop
a simulation within milliseconds whatever the gate, and no temporary copy is
larger than a chunk. :func:`work` is the cost model the service budgets with.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from keyplane.ionq.circuits.circuit import Operation, Program

State = npt.NDArray[np.complex128]

#: Probabilities below this are rounding noise of an exact zero and are left out.
ZERO_CUTOFF: Final = 1e-12
#: A step touches at most 2^CHUNK_QUBITS amplitudes (4 MiB) between two checkpoints.
CHUNK_QUBITS: Final = 18
#: Passes over the state per step, relative to a dense single-qubit gate
#: (measured: an exponential of a Pauli term copies the state and adds it back).
_STEP_COST: Final = {"single": 1, "swap": 1, "xx": 2, "yy": 2, "zz": 2, "pauliexp": 2}
#: Extra passes of a pauliexp term with a Z or Y letter (its sign pattern is
#: built and multiplied in): measured on 20 qubits, a Z^20 or Y^20 term takes
#: 2.5 to 3 Hadamards' time, an X^20 term about one, whatever the letters.
_SIGNED_TERM_COST: Final = 2
#: The least a step counts in :func:`work`, whatever its width: a step has a
#: fixed cost (Python dispatch, views, the checkpoint) of 4-10 us on the
#: project's 2-core machine (one-qubit steps timed in process, 2026-12-02),
#: what 2^13 amplitude updates cost on 20 qubits (~1-2 ns each). So the most
#: steps the budget admits (2^16, ``small-steps`` in bench/jobs.py) run about
#: as long as its 512 dense 20-qubit gates. Without it 10,000 gates on every
#: target of 12 qubits (120,000 steps) fitted in 92 % of the budget and ran
#: twice as long, and a raised KEYPLANE_JOB_MAX_GATES let steps grow unbounded.
STEP_FLOOR: Final = 1 << 13

_SQRT_HALF: Final = 1 / math.sqrt(2)
_FIXED: Final[dict[str, tuple[complex, complex, complex, complex]]] = {
    "h": (_SQRT_HALF, _SQRT_HALF, _SQRT_HALF, -_SQRT_HALF),
    "x": (0, 1, 1, 0),
    "y": (0, -1j, 1j, 0),
    "z": (1, 0, 0, -1),
    "s": (1, 0, 0, 1j),
    "si": (1, 0, 0, -1j),
    "t": (1, 0, 0, complex(math.cos(math.pi / 4), math.sin(math.pi / 4))),
    "ti": (1, 0, 0, complex(math.cos(math.pi / 4), -math.sin(math.pi / 4))),
    "v": ((1 + 1j) / 2, (1 - 1j) / 2, (1 - 1j) / 2, (1 + 1j) / 2),
    "vi": ((1 - 1j) / 2, (1 + 1j) / 2, (1 + 1j) / 2, (1 - 1j) / 2),
}


def matrix_of(op: Operation) -> tuple[complex, complex, complex, complex]:
    """The 2x2 matrix (row-major) of a single-qubit gate."""
    theta = op.rotation
    if theta is None:
        return _FIXED[op.gate]
    cos, sin = math.cos(theta / 2), math.sin(theta / 2)
    if op.gate == "rx":
        return (cos, -1j * sin, -1j * sin, cos)
    if op.gate == "ry":
        return (cos, -sin, sin, cos)
    if op.gate == "rz":
        return (complex(cos, -sin), 0, 0, complex(cos, sin))
    # "z" with a rotation is the phase gate diag(1, e^{iθ}) (qiskit's p, cp, mcphase).
    return (1, 0, 0, complex(math.cos(theta), math.sin(theta)))


def _no_checkpoint() -> None:
    return None


def run(
    program: Program, *, checkpoint: Callable[[], None] = _no_checkpoint
) -> npt.NDArray[np.float64]:
    """The final state's probabilities, indexed by the little-endian basis state."""
    return probabilities(final_state(program, checkpoint=checkpoint))


def final_state(program: Program, *, checkpoint: Callable[[], None] = _no_checkpoint) -> State:
    """Simulate ``program``; ``checkpoint()`` runs after every chunk and may raise to stop."""
    n = program.qubits
    state = np.zeros((2,) * n, dtype=np.complex128)
    state[(0,) * n] = 1
    for op in program.operations:
        for step in steps(op):
            apply = _APPLY[_kind(step)]
            for chunk in _chunks(state, n, (*step.targets, *step.controls)):
                apply(chunk, n, step)
                checkpoint()
    return state.reshape(-1)


def work(program: Program) -> int:
    """Estimated cost: amplitude updates, ``2^qubits`` per step weighted by its passes.

    Each step counts at least :data:`STEP_FLOOR`, so the budget bounds the
    time of a job of many small steps as well as that of a job of wide ones.
    """
    return sum(_op_work(op, program.qubits) for op in program.operations)


def _op_work(op: Operation, qubits: int) -> int:
    """The work of ``op``'s steps, computed without building them (a pauliexp has up to 256)."""
    kind = _kind(op)
    if kind == "pauliexp":
        passes = _STEP_COST[kind]
        return sum(
            max(STEP_FLOOR, (passes + _SIGNED_TERM_COST * _signed(term)) << qubits)
            for term in op.terms
        )
    count = len(op.targets) if kind == "single" else 1
    return count * max(STEP_FLOOR, _STEP_COST[kind] << qubits)


def _signed(term: str) -> bool:
    return "Z" in term or "Y" in term


def steps(op: Operation) -> Iterator[Operation]:
    """``op`` as steps that each pass over the state once or twice.

    A gate on several targets is that gate on each target in turn, and the
    terms of a ``pauliexp`` commute, so its exponential is the product of
    one exponential per term.
    """
    if op.gate == "pauliexp" and len(op.terms) > 1:
        for term, coefficient in zip(op.terms, op.coefficients, strict=True):
            yield replace(op, terms=(term,), coefficients=(coefficient,))
    elif _kind(op) == "single" and len(op.targets) > 1:
        for target in op.targets:
            yield replace(op, targets=(target,))
    else:
        yield op


def _chunks(state: State, n: int, used: tuple[int, ...]) -> Iterator[State]:
    """Views of ``state`` of at most 2^CHUNK_QUBITS amplitudes, each fixing qubits not in ``used``.

    An axis is fixed with a slice of length one, not an index, so the views
    keep all ``n`` axes and the gate functions address qubits as on the whole.
    """
    touched = {n - 1 - qubit for qubit in used}
    free = [axis for axis in range(n) if axis not in touched]
    fixed = free[: max(0, n - CHUNK_QUBITS)]
    if not fixed:
        yield state
        return
    for bits in itertools.product((0, 1), repeat=len(fixed)):
        index: list[Any] = [slice(None)] * n
        for axis, bit in zip(fixed, bits, strict=True):
            index[axis] = slice(bit, bit + 1)
        yield state[tuple(index)]


def probabilities(state: State) -> npt.NDArray[np.float64]:
    result: npt.NDArray[np.float64] = state.real**2 + state.imag**2
    return result


def outcome_count(probs: npt.NDArray[np.float64]) -> int:
    """How many outcomes :func:`as_ionq_probabilities` would keep, counted without building them."""
    return int(np.count_nonzero(probs > ZERO_CUTOFF))


def as_ionq_probabilities(probs: npt.NDArray[np.float64]) -> dict[str, float]:
    """IonQ's result shape: decimal basis state (a string) -> probability, zeros left out."""
    (nonzero,) = np.nonzero(probs > ZERO_CUTOFF)
    return {str(int(index)): float(probs[index]) for index in nonzero}


def _kind(op: Operation) -> str:
    if op.gate in _FIXED or op.gate in ("rx", "ry", "rz"):
        return "single"
    return op.gate


def _view(state: State, n: int, controls: tuple[int, ...]) -> tuple[State, Callable[[int], int]]:
    """The subspace where every control is 1 (a view), and qubit -> axis in that view."""
    index: list[Any] = [slice(None)] * n
    for control in controls:
        index[n - 1 - control] = 1
    view = state[tuple(index)]
    gone = sorted(n - 1 - control for control in controls)

    def axis(qubit: int) -> int:
        position = n - 1 - qubit
        return position - sum(1 for removed in gone if removed < position)

    return view, axis


def _half(axis: int, bit: int) -> tuple[Any, ...]:
    return (slice(None),) * axis + (bit,)


def _apply_single(state: State, n: int, op: Operation) -> None:
    m00, m01, m10, m11 = matrix_of(op)
    view, axis = _view(state, n, op.controls)
    for target in op.targets:
        zero, one = _half(axis(target), 0), _half(axis(target), 1)
        if m01 == 0 and m10 == 0:  # diagonal: no mixing, scale in place
            if m00 != 1:
                view[zero] *= m00
            view[one] *= m11
            continue
        a, b = view[zero].copy(), view[one].copy()
        view[zero] = m00 * a + m01 * b
        view[one] = m10 * a + m11 * b


def _apply_swap(state: State, n: int, op: Operation) -> None:
    view, axis = _view(state, n, op.controls)
    first, second = axis(op.targets[0]), axis(op.targets[1])
    index_01: list[Any] = [slice(None)] * view.ndim
    index_10: list[Any] = [slice(None)] * view.ndim
    index_01[first], index_01[second] = 0, 1
    index_10[first], index_10[second] = 1, 0
    kept = view[tuple(index_01)].copy()
    view[tuple(index_01)] = view[tuple(index_10)]
    view[tuple(index_10)] = kept


def _apply_exponential(
    view: State, axis: Callable[[int], int], targets: tuple[int, ...], term: str, angle: float
) -> None:
    """``view <- exp(-i angle P) view`` for the Pauli string ``term`` (little-endian on targets).

    ``P`` applied at once, whatever its letters: ``(P v)[b] = (-i)^#Y (-1)^(b . z) v[b ^ x]``
    with ``x`` the X and Y positions and ``z`` the Z and Y ones, so a flipped view
    times a sign pattern (2 per Z/Y axis, broadcast) is one pass, where applying
    letter by letter was one or two passes per letter (a Y^20 term 35 Hadamards).
    """
    flips: list[int] = []
    signs: list[int] = []
    for position, target in enumerate(targets):
        letter = term[len(term) - 1 - position]
        if letter in "XY":
            flips.append(axis(target))
        if letter in "ZY":
            signs.append(axis(target))
    phase = (1, -1j, -1, 1j)[term.count("Y") % 4]
    factor: Any = (-1j * math.sin(angle)) * phase
    if signs:
        # (-1)^(number of ones) over the sign axes: the same along each, so their order is moot
        ones = np.bitwise_count(np.arange(1 << len(signs)))
        shape = [1] * view.ndim
        for sign_axis in signs:
            shape[sign_axis] = 2
        factor = factor * (1.0 - 2.0 * (ones & 1)).reshape(shape)  # float: ones is uint8
    flipped = np.flip(view, axis=tuple(flips)) if flips else view
    rotated = flipped * factor  # a new array: ``view`` is changed below
    view *= math.cos(angle)
    view += rotated


def _apply_parity(state: State, n: int, op: Operation) -> None:
    view, axis = _view(state, n, op.controls)
    letter = op.gate[0].upper()
    _apply_exponential(view, axis, op.targets, letter * 2, (op.rotation or 0.0) / 2)


def _apply_pauliexp(state: State, n: int, op: Operation) -> None:
    time = op.rotation or 0.0
    view, axis = _view(state, n, op.controls)
    for term, coefficient in zip(op.terms, op.coefficients, strict=True):
        _apply_exponential(view, axis, op.targets, term, time * coefficient)


_APPLY: Final[dict[str, Callable[[State, int, Operation], None]]] = {
    "single": _apply_single,
    "swap": _apply_swap,
    "xx": _apply_parity,
    "yy": _apply_parity,
    "zz": _apply_parity,
    "pauliexp": _apply_pauliexp,
}
