"""Each error class carries its answer (status, problem type, code); the faces
render from it, so a new error needs its class and nothing else."""

from __future__ import annotations

from typing import Any

from keyplane.core.errors import ErrorCode, InvalidInput, KeyplaneError, ObjectNotFound
from keyplane.http.problems import problem_for


class _Teapot(KeyplaneError):
    status = 418
    problem_type = "teapot"
    code = "TEAPOT"

    def problem_extra(self) -> dict[str, Any]:
        return {"brew": "tea"}

    def problem_headers(self) -> dict[str, str]:
        return {"Retry-After": "3"}


def test_a_new_error_class_is_answered_from_its_attributes_alone() -> None:
    problem = problem_for(_Teapot("short and stout"))
    assert problem.status == 418
    assert problem.body() == {
        "type": "urn:keyplane:problem:teapot",
        "title": "I'm a Teapot",
        "status": 418,
        "detail": "short and stout",
        "code": "TEAPOT",
        "brew": "tea",
    }
    assert problem.headers == {"Retry-After": "3"}


def test_an_error_whose_class_says_5xx_tells_nothing() -> None:
    class Broken(KeyplaneError):
        status = 503

    for error in (Broken("database password is hunter2"), KeyplaneError("x"), ValueError("y")):
        problem = problem_for(error)
        assert problem.status == 500
        assert problem.detail == "Something went wrong on our side."
        assert problem.body()["code"] == ErrorCode.INTERNAL_ERROR


def test_codes_are_an_enum_and_subclasses_inherit_their_answer() -> None:
    class Refused(InvalidInput):
        pass

    problem = problem_for(Refused("no", field="name"))
    assert (problem.status, problem.slug, problem.body()["code"]) == (
        422,
        "invalid-input",
        "INVALID_INPUT",
    )
    assert problem.body()["field"] == "name"
    assert isinstance(ObjectNotFound.code, ErrorCode)
    assert problem_for(ObjectNotFound("key", "key_notours")).detail == "No key with that id."
