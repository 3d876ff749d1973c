"""Parsing IonQ circuit JSON: what the clients send is accepted, a mistake is InvalidCircuit."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyplane.ionq.circuits.circuit import (
    InvalidCircuit,
    Operation,
    circuit_size,
    commute,
    first_anticommuting_pair,
    parse_circuit,
    symplectic,
)


def parse(circuit: list[Any], qubits: int | None = 3, **extra: Any) -> Any:
    workload: dict[str, Any] = {"circuit": circuit, **extra}
    if qubits is not None:
        workload["qubits"] = qubits
    return parse_circuit(workload, max_qubits=5)


def test_accepts_the_shapes_each_client_sends() -> None:
    program = parse(
        [
            {"gate": "cnot", "control": 0, "target": 1},  # cirq-ionq
            {"gate": "x", "controls": [0, 1], "targets": [2]},  # qiskit-ionq (ccx)
            {"gate": "cnot", "controls": [1], "targets": [2]},  # ionq
            {"gate": "h", "targets": [0], "controls": []},  # ionq's Circuit.append
            {"gate": "rx", "targets": [1], "rotation": 1},
            {"gate": "z", "targets": [1], "rotation": 0.5},  # qiskit's p(θ)
            {"gate": "not", "target": 2},
        ]
    )
    assert program.operations[0] == Operation("x", (1,), (0,))
    assert program.operations[1] == Operation("x", (2,), (0, 1))
    assert program.operations[4].rotation == 1.0
    assert program.gate_counts() == {"1q": 4, "2q": 3}


def test_qubits_are_inferred_when_not_declared() -> None:
    assert parse([{"gate": "h", "target": 3}], qubits=None).qubits == 4
    assert parse([], qubits=0).qubits == 1


@pytest.mark.parametrize(
    ("circuit", "code", "words"),
    [
        pytest.param(
            [{"gate": "u3", "target": 0}], "UnsupportedGate", "not supported", id="unknown-gate"
        ),
        pytest.param([{"target": 0}], "UnsupportedGate", "not supported", id="no-gate"),
        pytest.param([{"gate": "h", "target": 3}], "Invalid", "out of range", id="out-of-range"),
        pytest.param([{"gate": "h", "target": -1}], "Invalid", "non-negative", id="negative"),
        pytest.param([{"gate": "h", "target": True}], "Invalid", "non-negative", id="bool-qubit"),
        pytest.param([{"gate": "h", "target": "0"}], "Invalid", "non-negative", id="string-qubit"),
        pytest.param([{"gate": "h", "targets": 0}], "Invalid", "list", id="targets-not-list"),
        pytest.param([{"gate": "h"}], "Invalid", "needs 'target'", id="no-target"),
        pytest.param([{"gate": "h", "targets": [0, 0]}], "Invalid", "twice", id="duplicate"),
        pytest.param(
            [{"gate": "x", "control": 0, "target": 0}], "Invalid", "both", id="control-is-target"
        ),
        pytest.param(
            [{"gate": "cnot", "target": 1}], "Invalid", "control", id="cnot-without-control"
        ),
        pytest.param([{"gate": "rx", "target": 0}], "Invalid", "rotation", id="missing-rotation"),
        pytest.param(
            [{"gate": "rx", "target": 0, "rotation": "1"}],
            "Invalid",
            "finite",
            id="string-rotation",
        ),
        pytest.param(
            [{"gate": "rx", "target": 0, "rotation": float("nan")}], "Invalid", "finite", id="nan"
        ),
        pytest.param(
            [{"gate": "h", "target": 0, "rotation": 1}],
            "Invalid",
            "no rotation",
            id="rotation-on-h",
        ),
        pytest.param(
            [{"gate": "swap", "targets": [0]}], "Invalid", "two targets", id="swap-one-target"
        ),
        pytest.param(
            [
                {
                    "gate": "pauliexp",
                    "targets": [0, 1],
                    "terms": ["XX", "ZI"],
                    "coefficients": [1, 1],
                    "time": 1,
                }
            ],
            "Invalid",
            "commute",
            id="non-commuting-terms",
        ),
        pytest.param(
            [
                {
                    "gate": "pauliexp",
                    "targets": [0, 1],
                    "terms": ["XQ"],
                    "coefficients": [1],
                    "time": 1,
                }
            ],
            "Invalid",
            "I, X, Y, Z",
            id="bad-pauli",
        ),
        pytest.param(["h"], "Invalid", "object", id="gate-not-object"),
    ],
)
def test_mistakes_are_invalid_circuits(circuit: list[Any], code: str, words: str) -> None:
    with pytest.raises(InvalidCircuit, match=words) as caught:
        parse(circuit)
    assert caught.value.failure_code == code


def test_too_many_qubits_is_circuit_too_large() -> None:
    with pytest.raises(InvalidCircuit) as caught:
        parse([], qubits=6)
    assert caught.value.failure_code == "CircuitTooLarge"


def test_too_many_gates() -> None:
    with pytest.raises(InvalidCircuit) as caught:
        parse_circuit(
            {"qubits": 1, "circuit": [{"gate": "h", "target": 0}] * 3}, max_qubits=1, max_gates=2
        )
    assert caught.value.failure_code == "TooManyGates"


@pytest.mark.parametrize(
    "workload",
    [
        pytest.param("h 0", id="not-object"),
        pytest.param({"circuit": "h"}, id="circuit-not-list"),
        pytest.param({"circuit": [], "qubits": "3"}, id="qubits-string"),
        pytest.param({"circuit": [], "gateset": "native"}, id="native-gateset"),
    ],
)
def test_bad_workloads(workload: Any) -> None:
    with pytest.raises(InvalidCircuit):
        parse_circuit(workload, max_qubits=5)


# -- pauliexp terms: counted first, commutation checked in linear time (issue 11) ------

PAULI_STRINGS = st.integers(1, 6).flatmap(
    lambda width: st.lists(st.text("IXYZ", min_size=width, max_size=width), min_size=1, max_size=12)
)


def pairwise_commute(first: str, second: str) -> bool:
    """The definition replaced: an even number of places with two different non-I letters."""
    clashes = sum(1 for a, b in zip(first, second, strict=True) if "I" not in (a, b) and a != b)
    return clashes % 2 == 0


@given(PAULI_STRINGS)
@settings(max_examples=400, deadline=None)
def test_the_linear_commutation_check_agrees_with_comparing_every_pair(terms: list[str]) -> None:
    pairs = [(a, b) for i, a in enumerate(terms) for b in terms[i + 1 :]]
    clash = first_anticommuting_pair(terms)
    assert (clash is None) == all(pairwise_commute(a, b) for a, b in pairs)
    if clash is not None:  # the pair named in the refusal is one that does not commute
        first, second = clash
        assert first in terms
        assert second in terms
        assert not pairwise_commute(first, second)
    for a, b in pairs:
        assert commute(symplectic(a), symplectic(b)) == pairwise_commute(a, b)


def test_pauliexp_terms_count_toward_the_gate_limit_before_any_is_checked() -> None:
    """The tester's body: 647 gates of 256 terms (165,632) is refused by its count alone."""
    gate = {"gate": "pauliexp", "targets": [0], "terms": ["Z"] * 256,
            "coefficients": [1] * 256, "time": 1}  # fmt: skip
    bad_last = {**gate, "terms": ["X", "Z"] * 128}  # would be refused for not commuting
    with pytest.raises(InvalidCircuit) as caught:
        parse_circuit({"qubits": 1, "circuit": [gate] * 646 + [bad_last]}, max_qubits=1)
    assert caught.value.failure_code == "TooManyGates"
    assert "this circuit has 165,632" in str(caught.value)
    assert circuit_size([gate] * 39) == 9_984
    assert parse_circuit({"qubits": 1, "circuit": [gate] * 39}, max_qubits=1).size() == 9_984
    with pytest.raises(InvalidCircuit) as caught:
        parse_circuit({"qubits": 1, "circuit": [gate] * 40}, max_qubits=1)
    assert caught.value.failure_code == "TooManyGates"
