"""One refusal rule: the API and the middleware refuse a key with the same answer.

Each refusal is driven through both surfaces from the same cause: the API's
``check_request_key`` (FastAPI routes, the hot path, the IonQ surface) and the
middleware's ``guard.check`` + ``guard.problem`` (fed the Outcome a local
verifier makes of the same decision). Both must give the status, problem type,
``code`` and message of ``core.refusals.Refusal``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import anyio
import pytest

from keyplane.core.errors import KeyplaneError
from keyplane.core.grant import Allowance, Decision, GrantCode, KeyState
from keyplane.core.keys import KeyFormat
from keyplane.core.refusals import Refusal
from keyplane.http.authentication import check_request_key, missing_scope
from keyplane.http.problems import TYPE_BASE, Problem, problem_for
from keyplane.integrations.guard import RequestFacts, check, problem
from keyplane.integrations.verifiers import UNAVAILABLE, Outcome, _from_decision

FORMAT = KeyFormat()
KEY = FORMAT.generate().reveal()
STATE = KeyState("key_A", "n", "kp_...x", "prj_A", "org_A", ("keys:read",), True, None, None)
SOON = time.time() + 30


class DecidingVerifier:
    """Both surfaces' verifier, answering one fixed decision."""

    key_format = FORMAT

    def __init__(self, decision: Decision) -> None:
        self.decision = decision

    async def verify_async(self, raw_key: str, **_: Any) -> Decision:
        return self.decision

    def check(self, key: str, **_: Any) -> Outcome:
        return _from_decision(self.decision)

    async def check_async(self, key: str, **_: Any) -> Outcome:
        return _from_decision(self.decision)

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


def api_answer(decision: Decision, headers: dict[str, str], query: str = "") -> Problem:
    async def run() -> Problem:
        try:
            checked = await check_request_key(
                DecidingVerifier(decision),
                key_format=FORMAT,
                trusted_proxies=(),
                path="/api/v1/whoami",
                query=query,
                headers=headers,
                peer="127.0.0.1",
            )
        except KeyplaneError as error:
            return problem_for(error)
        assert checked.code is GrantCode.INSUFFICIENT_SCOPE, "the decision was not refused"
        return problem_for(missing_scope("keys:write"))

    return anyio.run(run)


def guard_answer(decision: Decision, headers: dict[str, str], query: str = "") -> Problem:
    facts = RequestFacts(headers, "/api/v1/whoami", query, "127.0.0.1")
    outcome = check(facts, DecidingVerifier(decision), ["keys:write"])
    assert not outcome.granted
    return problem(outcome)


def limited(code: GrantCode) -> Decision:
    allowance = Allowance(5, 0, SOON)
    if code is GrantCode.RATE_LIMITED:
        return Decision(code, STATE, rate_limit=allowance)
    return Decision(code, STATE, quota=allowance)


SENT = {"authorization": f"Bearer {KEY}"}
CASES: list[Any] = [
    pytest.param(Refusal.KEY_IN_URL, Decision(GrantCode.VALID, STATE), {}, f"key={KEY}"),
    pytest.param(Refusal.MISSING_KEY, Decision(GrantCode.VALID, STATE), {}, ""),
    pytest.param(Refusal.NOT_FOUND, Decision(GrantCode.NOT_FOUND), SENT, "", id="unknown"),
    pytest.param(Refusal.REVOKED, Decision(GrantCode.REVOKED, STATE), SENT, ""),
    pytest.param(Refusal.EXPIRED, Decision(GrantCode.EXPIRED, STATE), SENT, ""),
    pytest.param(Refusal.DISABLED, Decision(GrantCode.DISABLED, STATE), SENT, ""),
    pytest.param(Refusal.FORBIDDEN, Decision(GrantCode.FORBIDDEN, STATE), SENT, ""),
    pytest.param(
        Refusal.INSUFFICIENT_SCOPE,
        Decision(GrantCode.INSUFFICIENT_SCOPE, STATE, ("keys:write",)),
        SENT,
        "",
    ),
    pytest.param(Refusal.RATE_LIMITED, limited(GrantCode.RATE_LIMITED), SENT, ""),
    pytest.param(Refusal.USAGE_EXCEEDED, limited(GrantCode.USAGE_EXCEEDED), SENT, ""),
]


def facts_of(answer: Problem) -> tuple[int, str, Any, str]:
    body = answer.body()
    return answer.status, body["type"], body["code"], body["detail"]


@pytest.mark.parametrize(("refusal", "decision", "headers", "query"), CASES)
def test_both_surfaces_give_the_refusal_s_code_status_type_and_message(
    refusal: Refusal, decision: Decision, headers: dict[str, str], query: str
) -> None:
    api = api_answer(decision, headers, query)
    guard = guard_answer(decision, headers, query)
    assert facts_of(api) == facts_of(guard)
    assert facts_of(api) == (
        refusal.status,
        f"{TYPE_BASE}{refusal.problem_type}",
        refusal,
        refusal.detail(scopes="the scope 'keys:write'"),
    )
    if refusal in (Refusal.RATE_LIMITED, Refusal.USAGE_EXCEEDED):
        # The same wait, to the second (each rounds up its own reading of the clock).
        assert abs(int(api.headers["Retry-After"]) - int(guard.headers["Retry-After"])) <= 1


def test_every_refusal_of_a_key_is_covered() -> None:
    covered = {case.values[0] for case in CASES}
    # A remote verifier that cannot reach Keyplane is the middleware's alone.
    assert covered | {Refusal.VERIFICATION_UNAVAILABLE} == set(Refusal)


def test_an_unreachable_verifier_is_the_table_s_503() -> None:
    answer = problem(Outcome(UNAVAILABLE))
    refusal = Refusal.VERIFICATION_UNAVAILABLE
    assert facts_of(answer) == (
        refusal.status,
        f"{TYPE_BASE}{refusal.problem_type}",
        refusal,
        refusal.detail(),
    )


@pytest.mark.parametrize(
    ("scopes", "phrase"),
    [
        ((), "a scope"),
        (("a:b",), "the scope 'a:b'"),
        (("a:b", "c:d"), "the scopes 'a:b', 'c:d'"),
    ],
)
def test_the_scope_message_names_every_missing_scope(scopes: Iterable[str], phrase: str) -> None:
    answer = problem(Outcome(GrantCode.INSUFFICIENT_SCOPE, missing_scopes=tuple(scopes)))
    assert answer.detail == f"The API key lacks {phrase} this call needs."
