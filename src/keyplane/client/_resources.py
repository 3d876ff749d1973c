"""The SDK's resources (``client.projects``, ``client.keys``, ``client.audit``), once for
both clients.

Each method is one line: :class:`call` binds an operation of
:mod:`keyplane.client.operations` (which holds the arguments, their checks,
the body and the docstring) to the client that runs it, and :class:`pages` does
the same for a list read page by page. The same class serves
:class:`~keyplane.client.Client` (``Keys[Client]``: a call answers the model)
and :class:`~keyplane.client.AsyncClient` (``Keys[AsyncClient]``: a call
answers an awaitable of it); the overloads of ``__get__`` tell a type checker
which, with the operation's own parameters. :class:`ClientBase` holds the rest
both clients share (the server, the key, the retry policy); only the sending
differs between them.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Self, TypeVar, overload

from keyplane.client import operations
from keyplane.client._http import Operation, RetryPolicy
from keyplane.client.operations import Pages
from keyplane.client.resolution import ResolvedKey, resolve_key, resolve_url
from keyplane.core.keys import SecretKey

if TYPE_CHECKING:
    from keyplane.client._async import AsyncClient
    from keyplane.client._sync import Client

P = ParamSpec("P")
T = TypeVar("T")
C = TypeVar("C", "Client", "AsyncClient")


class Resource(Generic[C]):
    """A group of calls of one client."""

    def __init__(self, client: C) -> None:
        self._client: C = client


class _Bound(Generic[P, T]):
    """A method built from ``build`` once per instance, with its signature and docstring."""

    def __init__(self, build: Callable[P, Any]) -> None:
        self.build = build
        self.__doc__ = build.__doc__
        self.name = self.qualname = build.__name__

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name, self.qualname = name, f"{owner.__qualname__}.{name}"

    def _bind(self, instance: Any) -> Any:
        if instance is None:
            return self
        client = instance._client if isinstance(instance, Resource) else instance
        method = functools.update_wrapper(self.method(client), self.build)
        del method.__wrapped__  # the signature below, not the builder's
        method.__name__, method.__qualname__ = self.name, self.qualname
        method.__signature__ = inspect.signature(self.build).replace(  # type: ignore[attr-defined]
            return_annotation=inspect.Signature.empty
        )
        instance.__dict__[self.name] = method  # the next look-up finds it there
        return method

    def method(self, client: Any) -> Callable[..., Any]:
        raise NotImplementedError


class call(_Bound[P, T]):
    """A method that runs the operation ``build`` makes."""

    def __init__(self, build: Callable[P, Operation[T]]) -> None:
        super().__init__(build)

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, instance: Resource[Client] | Client, owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(
        self, instance: Resource[AsyncClient] | AsyncClient, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, instance: Any, owner: type[Any]) -> Any:
        return self._bind(instance)

    def method(self, client: Any) -> Callable[..., Any]:
        build = self.build

        def run(*args: Any, **kwargs: Any) -> Any:
            return client.run(build(*args, **kwargs))

        return run


class pages(_Bound[P, T]):
    """A method that iterates over every item of the list ``build`` describes."""

    def __init__(self, build: Callable[P, Pages[T]]) -> None:
        super().__init__(build)

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(
        self, instance: Resource[Client] | Client, owner: type[Any]
    ) -> Callable[P, Iterator[T]]: ...
    @overload
    def __get__(
        self, instance: Resource[AsyncClient] | AsyncClient, owner: type[Any]
    ) -> Callable[P, AsyncIterator[T]]: ...
    def __get__(self, instance: Any, owner: type[Any]) -> Any:
        return self._bind(instance)

    def method(self, client: Any) -> Callable[..., Any]:
        build = self.build

        def iterate(*args: Any, **kwargs: Any) -> Any:
            return client._iterate(build(*args, **kwargs))

        return iterate


class Projects(Resource[C]):
    list = call(operations.list_projects)
    iter = pages(operations.iter_projects)
    get = call(operations.get_project)
    create = call(operations.create_project)


class Keys(Resource[C]):
    list = call(operations.list_keys)
    iter = pages(operations.iter_keys)
    get = call(operations.get_key)
    create = call(operations.create_key)
    update = call(operations.update_key)
    revoke = call(operations.revoke_key)
    roll = call(operations.roll_key)
    usage = call(operations.key_usage)
    callers = call(operations.key_callers)


class Audit(Resource[C]):
    list = call(operations.list_audit_events)
    iter = pages(operations.iter_audit_events)


class Events(Resource[C]):
    list = call(operations.list_events)
    iter = pages(operations.iter_events)
    types = call(operations.list_event_types)


class Policies(Resource[C]):
    get = call(operations.get_key_policies)
    update = call(operations.update_key_policies)
    dry_run = call(operations.dry_run_key_policies)


class Webhooks(Resource[C]):
    list = call(operations.list_webhooks)
    get = call(operations.get_webhook)
    create = call(operations.create_webhook)
    update = call(operations.update_webhook)
    delete = call(operations.delete_webhook)
    rotate_secret = call(operations.rotate_webhook_secret)
    test = call(operations.test_webhook)
    deliveries = call(operations.list_webhook_deliveries)
    delivery = call(operations.get_webhook_delivery)
    replay = call(operations.replay_webhook_delivery)


class ClientBase:
    """What :class:`~keyplane.client.Client` and :class:`~keyplane.client.AsyncClient`
    share beside the sending: the server, the key, the retry policy."""

    def __init__(
        self, api_key: str | SecretKey | None, base_url: str | None, retry: RetryPolicy
    ) -> None:
        self.base_url = resolve_url(base_url)
        self._key: ResolvedKey = resolve_key(api_key, self.base_url)
        self.retry = retry

    @property
    def key_hint(self) -> str:
        """The hint of the key this client sends (``kp_...abcd``)."""
        return self._key.secret.hint

    @property
    def key_source(self) -> str:
        """Where the key came from, in words (``the environment variable KEYPLANE_API_KEY``)."""
        return self._key.source

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, key={self.key_hint!r})"
