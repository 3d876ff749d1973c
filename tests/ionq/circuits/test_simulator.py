"""The state-vector simulator against known states and an independent dense-matrix reference."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from keyplane.ionq.circuits import simulator
from keyplane.ionq.circuits.circuit import parse_circuit


def probabilities(qubits: int, gates: list[dict[str, Any]]) -> dict[str, float]:
    program = parse_circuit({"qubits": qubits, "circuit": gates}, max_qubits=24)
    return simulator.as_ionq_probabilities(simulator.run(program))


def test_bell_state() -> None:
    result = probabilities(
        2, [{"gate": "h", "target": 0}, {"gate": "cnot", "control": 0, "target": 1}]
    )
    assert result.keys() == {"0", "3"}
    assert result["0"] == pytest.approx(0.5)
    assert result["3"] == pytest.approx(0.5)


def test_ghz_state_on_five_qubits() -> None:
    gates: list[dict[str, Any]] = [{"gate": "h", "targets": [0]}]
    gates += [{"gate": "cnot", "controls": [q], "targets": [q + 1]} for q in range(4)]
    result = probabilities(5, gates)
    assert result == pytest.approx({"0": 0.5, "31": 0.5})


def test_keys_are_little_endian_qubit_zero_least_significant() -> None:
    assert probabilities(3, [{"gate": "x", "targets": [2]}]) == {"4": 1.0}
    assert probabilities(3, [{"gate": "x", "targets": [0]}]) == {"1": 1.0}
    assert probabilities(3, [{"gate": "x", "targets": [0, 1]}]) == {"3": 1.0}


@pytest.mark.parametrize("theta", [0.0, 0.3, math.pi / 2, 2.0, math.pi])
@pytest.mark.parametrize("gate", ["rx", "ry"])
def test_rotation_gives_cos_and_sin_squared(gate: str, theta: float) -> None:
    result = probabilities(1, [{"gate": gate, "targets": [0], "rotation": theta}])
    assert result.get("0", 0.0) == pytest.approx(math.cos(theta / 2) ** 2)
    assert result.get("1", 0.0) == pytest.approx(math.sin(theta / 2) ** 2, abs=1e-12)


def test_phase_gates_show_up_through_interference() -> None:
    # H S S H = H Z H = X; H T T T T H = X as well; H rz(pi) H = X (up to phase).
    assert probabilities(1, [{"gate": g, "targets": [0]} for g in ("h", "s", "s", "h")]) == (
        pytest.approx({"1": 1.0})
    )
    assert probabilities(
        1,
        [
            {"gate": "h", "targets": [0]},
            *[{"gate": "t", "targets": [0]}] * 4,
            {"gate": "h", "targets": [0]},
        ],
    ) == pytest.approx({"1": 1.0})
    assert probabilities(
        1,
        [
            {"gate": "h", "targets": [0]},
            {"gate": "rz", "targets": [0], "rotation": math.pi},
            {"gate": "h", "targets": [0]},
        ],
    ) == pytest.approx({"1": 1.0})
    assert probabilities(1, [{"gate": "v", "targets": [0]}, {"gate": "v", "targets": [0]}]) == (
        pytest.approx({"1": 1.0})
    )
    assert probabilities(1, [{"gate": "v", "targets": [0]}, {"gate": "vi", "targets": [0]}]) == (
        pytest.approx({"0": 1.0})
    )


def test_a_control_that_is_zero_leaves_the_target_alone() -> None:
    assert probabilities(2, [{"gate": "cnot", "control": 0, "target": 1}]) == {"0": 1.0}
    assert probabilities(
        2, [{"gate": "x", "target": 0}, {"gate": "cnot", "control": 0, "target": 1}]
    ) == {"3": 1.0}


def test_multi_controlled_x_needs_every_control() -> None:
    toffoli = {"gate": "x", "controls": [0, 1], "targets": [2]}
    assert probabilities(3, [{"gate": "x", "targets": [0]}, toffoli]) == {"1": 1.0}
    assert probabilities(3, [{"gate": "x", "targets": [0, 1]}, toffoli]) == {"7": 1.0}


def test_swap_and_controlled_swap() -> None:
    assert probabilities(
        3, [{"gate": "x", "targets": [0]}, {"gate": "swap", "targets": [0, 2]}]
    ) == {"4": 1.0}
    fredkin = {"gate": "swap", "controls": [2], "targets": [0, 1]}
    assert probabilities(3, [{"gate": "x", "targets": [0]}, fredkin]) == {"1": 1.0}
    assert probabilities(3, [{"gate": "x", "targets": [0, 2]}, fredkin]) == {"6": 1.0}


def test_twenty_qubit_ghz() -> None:
    gates: list[dict[str, Any]] = [{"gate": "h", "targets": [0]}]
    gates += [{"gate": "cnot", "control": q, "target": q + 1} for q in range(19)]
    gates += [{"gate": "rz", "targets": [q], "rotation": 0.1 * q} for q in range(20)]
    result = probabilities(20, gates)
    assert result == pytest.approx({"0": 0.5, str(2**20 - 1): 0.5})


def test_uniform_superposition_of_twenty_qubits_keeps_every_outcome() -> None:
    result = probabilities(20, [{"gate": "h", "targets": list(range(20))}])
    assert len(result) == 2**20
    assert result["12345"] == pytest.approx(2**-20)


# -- an independent reference: dense 2^n x 2^n matrices, built with np.kron -----------

_PAULI = {
    "I": np.eye(2, dtype=complex),
    "X": np.array([[0, 1], [1, 0]], dtype=complex),
    "Y": np.array([[0, -1j], [1j, 0]], dtype=complex),
    "Z": np.array([[1, 0], [0, -1]], dtype=complex),
}


def _one_qubit(name: str, theta: float | None) -> np.ndarray:
    c, s = (math.cos(theta / 2), math.sin(theta / 2)) if theta is not None else (0.0, 0.0)
    return {
        "h": np.array([[1, 1], [1, -1]]) / math.sqrt(2),
        "x": _PAULI["X"],
        "y": _PAULI["Y"],
        "z": _PAULI["Z"] if theta is None else np.diag([1, np.exp(1j * (theta or 0))]),
        "s": np.diag([1, 1j]),
        "si": np.diag([1, -1j]),
        "t": np.diag([1, np.exp(1j * math.pi / 4)]),
        "ti": np.diag([1, np.exp(-1j * math.pi / 4)]),
        "v": np.array([[1 + 1j, 1 - 1j], [1 - 1j, 1 + 1j]]) / 2,
        "vi": np.array([[1 - 1j, 1 + 1j], [1 + 1j, 1 - 1j]]) / 2,
        "rx": np.array([[c, -1j * s], [-1j * s, c]]),
        "ry": np.array([[c, -s], [s, c]]),
        "rz": np.diag([np.exp(-1j * (theta or 0) / 2), np.exp(1j * (theta or 0) / 2)]),
    }[name].astype(complex)


def _embed(n: int, factors: dict[int, np.ndarray]) -> np.ndarray:
    """Kronecker product with qubit n-1 leftmost (little-endian basis indices)."""
    matrix = np.eye(1, dtype=complex)
    for qubit in reversed(range(n)):
        matrix = np.kron(matrix, factors.get(qubit, np.eye(2, dtype=complex)))
    return matrix


def _controlled(n: int, controls: list[int], unitary: np.ndarray) -> np.ndarray:
    if not controls:
        return unitary
    projector = _embed(n, {c: np.diag([0, 1]).astype(complex) for c in controls})
    return projector @ unitary + (np.eye(2**n) - projector)


def _dense(n: int, gate: dict[str, Any]) -> np.ndarray:
    name, targets = gate["gate"], gate["targets"]
    controls = gate.get("controls", [])
    theta = gate.get("rotation")
    if name in ("xx", "yy", "zz"):
        pauli = _embed(n, {t: _PAULI[name[0].upper()] for t in targets})
        unitary = math.cos(theta / 2) * np.eye(2**n) - 1j * math.sin(theta / 2) * pauli
    elif name == "swap":
        a, b = targets
        unitary = (
            sum(_embed(n, {a: _PAULI[p], b: _PAULI[p]}) for p in "IXYZ") / 2
        )  # SWAP = (II + XX + YY + ZZ) / 2
    elif name == "pauliexp":
        unitary = np.eye(2**n, dtype=complex)
        for term, coefficient in zip(gate["terms"], gate["coefficients"], strict=True):
            factors = {t: _PAULI[term[len(term) - 1 - i]] for i, t in enumerate(targets)}
            angle = gate["time"] * coefficient
            unitary = (
                math.cos(angle) * np.eye(2**n) - 1j * math.sin(angle) * _embed(n, factors)
            ) @ unitary
    else:
        unitary = np.eye(2**n, dtype=complex)
        for target in targets:
            unitary = _embed(n, {target: _one_qubit(name, theta)}) @ unitary
    return _controlled(n, controls, unitary)


def _random_gate(rng: random.Random, n: int) -> dict[str, Any]:
    qubits = list(range(n))
    rng.shuffle(qubits)
    name = rng.choice(
        [
            "h",
            "x",
            "y",
            "z",
            "s",
            "si",
            "t",
            "ti",
            "v",
            "vi",
            "rx",
            "ry",
            "rz",
            "xx",
            "yy",
            "zz",
            "swap",
            "pauliexp",
            "z",
        ]
    )
    gate: dict[str, Any] = {"gate": name}
    if name in ("xx", "yy", "zz", "swap"):
        gate["targets"], rest = qubits[:2], qubits[2:]
    elif name == "pauliexp":
        gate["targets"] = qubits[:2]
        gate["terms"] = rng.choice([["XX", "YY"], ["ZI", "IZ"], ["XY"]])
        gate["coefficients"] = [rng.uniform(-1, 1) for _ in gate["terms"]]
        gate["time"] = rng.uniform(0, 2)
        return gate
    else:
        gate["targets"], rest = qubits[:1], qubits[1:]
    if name in ("rx", "ry", "rz", "xx", "yy", "zz") or (name == "z" and rng.random() < 0.5):
        gate["rotation"] = rng.uniform(-math.pi, math.pi)
    gate["controls"] = rest[: rng.choice([0, 0, 1, 2])]
    return gate


@pytest.mark.parametrize(
    "chunk_qubits",
    [
        pytest.param(simulator.CHUNK_QUBITS, id="whole-state"),
        pytest.param(1, id="chunks-of-2"),
        pytest.param(2, id="chunks-of-4"),
    ],
)
@pytest.mark.parametrize("seed", range(25))
def test_random_circuits_match_a_dense_matrix_reference(
    seed: int, chunk_qubits: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Applied in chunks (each fixing qubits a step does not touch) or whole, the same state."""
    monkeypatch.setattr(simulator, "CHUNK_QUBITS", chunk_qubits)
    rng = random.Random(seed)
    n = 4
    gates = [_random_gate(rng, n) for _ in range(14)]
    state = np.zeros(2**n, dtype=complex)
    state[0] = 1
    for gate in gates:
        state = _dense(n, gate) @ state
    expected = np.abs(state) ** 2
    program = parse_circuit({"qubits": n, "circuit": gates}, max_qubits=n)
    assert np.allclose(simulator.run(program), expected, atol=1e-12)
    assert np.allclose(simulator.final_state(program), state, atol=1e-12)


def test_a_gate_on_several_targets_is_that_gate_on_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simulator, "CHUNK_QUBITS", 1)
    many = probabilities(3, [{"gate": "h", "targets": [0, 2]}, {"gate": "x", "targets": [1, 2]}])
    assert many == pytest.approx({"2": 0.25, "3": 0.25, "6": 0.25, "7": 0.25})


def test_the_checkpoint_runs_between_chunks_and_can_stop_the_simulation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(simulator, "CHUNK_QUBITS", 2)
    gates = [{"gate": "h", "targets": [0, 1, 2, 3]}]  # 4 steps, each in 2^(5-2) = 8 chunks
    gates.append({"gate": "pauliexp", "targets": [0, 1], "terms": ["XX", "YY", "ZZ"],
                  "coefficients": [0.1, 0.2, 0.3], "time": 1.0})  # fmt: skip
    program = parse_circuit({"qubits": 5, "circuit": gates}, max_qubits=5)
    calls = 0

    def count() -> None:
        nonlocal calls
        calls += 1

    simulator.final_state(program, checkpoint=count)
    assert calls == (4 + 3) * 8

    class Stop(Exception):
        pass

    def stop_at_once() -> None:
        raise Stop

    with pytest.raises(Stop):
        simulator.final_state(program, checkpoint=stop_at_once)


@pytest.mark.parametrize(
    ("gate", "passes"),
    [
        pytest.param({"gate": "h", "target": 0}, 1, id="h"),
        pytest.param({"gate": "h", "targets": [0, 1, 2]}, 3, id="h-on-three-targets"),
        pytest.param({"gate": "cnot", "control": 0, "target": 1}, 1, id="cnot"),
        pytest.param({"gate": "swap", "targets": [0, 1]}, 1, id="swap"),
        pytest.param({"gate": "xx", "targets": [0, 1], "rotation": 0.5}, 2, id="xx"),
        pytest.param(
            {
                "gate": "pauliexp",
                "targets": [0, 1],
                "terms": ["XX", "YY"],
                "coefficients": [1, 2],
                "time": 0.1,
            },
            2 + (2 + 2),  # a pass to copy, one to add back, two for the signs of a Y or Z
            id="pauliexp-two-terms",
        ),
    ],
)
def test_work_counts_passes_over_the_state(gate: dict[str, Any], passes: int) -> None:
    program = parse_circuit({"qubits": 14, "circuit": [gate, gate]}, max_qubits=14)
    assert simulator.work(program) == 2 * passes * 2**14


@pytest.mark.parametrize("qubits", [1, 2, 6, 11])
def test_every_step_counts_at_least_the_floor_of_its_fixed_cost(qubits: int) -> None:
    """A step on few qubits costs what 2^13 amplitude updates cost (issue 11): its dispatch."""
    gates = [
        {"gate": "x", "target": 0},
        {"gate": "h", "targets": list(range(qubits))},
        {
            "gate": "pauliexp",
            "targets": [0],
            "terms": ["Z"] * 7,
            "coefficients": [1] * 7,
            "time": 1,
        },
    ]
    program = parse_circuit({"qubits": qubits, "circuit": gates}, max_qubits=qubits)
    assert simulator.STEP_FLOOR == 2**13
    assert simulator.work(program) == (1 + qubits + 7) * 2**13


def test_a_pauliexp_term_with_signs_counts_two_more_passes() -> None:
    """A term is applied in one go whatever its letters (a Y^20 term ran 35 Hadamards' time
    when applied letter by letter); a Z or Y letter adds its sign pattern, two passes."""

    def work_of(term: str) -> int:
        gate = {"gate": "pauliexp", "targets": list(range(16)), "terms": [term],
                "coefficients": [1], "time": 1}  # fmt: skip
        return simulator.work(parse_circuit({"qubits": 16, "circuit": [gate]}, max_qubits=16))

    assert work_of("I" * 16) == 2 * 2**16
    assert work_of("X" * 16) == 2 * 2**16
    assert work_of("Y" * 16) == (2 + 2) * 2**16
    assert work_of("XXXXXXXXXXXXXXXZ") == (2 + 2) * 2**16


@pytest.mark.parametrize("chunk_qubits", [simulator.CHUNK_QUBITS, 1])
@pytest.mark.parametrize("seed", range(40))
def test_a_pauli_string_of_any_letters_matches_the_dense_reference(
    seed: int, chunk_qubits: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A term is applied at once (flip the X/Y axes, sign the Z/Y ones): every phase checked."""
    monkeypatch.setattr(simulator, "CHUNK_QUBITS", chunk_qubits)
    rng = random.Random(seed)
    n = 4
    qubits = list(range(n))
    rng.shuffle(qubits)
    width = rng.randint(1, n)
    term = "".join(rng.choice("IXYZ") for _ in range(width))
    prepare = [{"gate": "rx", "targets": [q], "rotation": rng.uniform(-3, 3)} for q in range(n)]
    prepare += [{"gate": "h", "targets": [0]}, {"gate": "t", "targets": [1]}]
    gate = {"gate": "pauliexp", "targets": qubits[:width], "terms": [term, term],
            "coefficients": [rng.uniform(-1, 1), 0.5], "time": rng.uniform(0, 2)}  # fmt: skip
    state = np.zeros(2**n, dtype=complex)
    state[0] = 1
    for each in [*prepare, gate]:
        state = _dense(n, each) @ state
    program = parse_circuit({"qubits": n, "circuit": [*prepare, gate]}, max_qubits=n)
    assert np.allclose(simulator.final_state(program), state, atol=1e-12)
