"""The one rule for HTTP requests Keyplane makes to addresses its users choose
(webhook URLs): nothing internal is reached unless the operator allows it.

:func:`check_url` parses a URL (http or https, a host, no userinfo, no fragment, a
port from 1 to 65535, IPv4 only in its dotted-quad spelling). :func:`resolve`
looks the host up **once** and refuses it if **any** address it resolves to is
loopback, private, link-local (the cloud metadata address 169.254.169.254 among
them), multicast, reserved, unspecified, shared (100.64.0.0/10), or an IPv6 form
of one of those (IPv4-mapped, 6to4, NAT64 ``64:ff9b::/96``), unless it lies in a
network of ``KEYPLANE_OUTBOUND_ALLOW_NETWORKS``. :class:`OutboundClient` then
connects to **that** address, whatever the name resolves to a moment later (no
DNS rebinding): the name still goes in the ``Host`` header and, for https, in the
TLS server name, so the certificate is checked against it. Redirects are never
followed (a 3xx is a failure), proxies from the environment are never used,
and one request gets :data:`CONNECT_TIMEOUT` to connect and :data:`DEADLINE` in
all, however slowly the other side drips its answer; at most
:data:`MAX_RESPONSE_BYTES` of the answer are read and :data:`EXCERPT_BYTES` kept.

Plain http is allowed (a receiver on a private network behind a TLS-terminating
proxy is common); the payload is signed either way, but only https keeps it secret.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpcore
import httpx

from keyplane.core.errors import InvalidInput
from keyplane.core.network import IPAddress, IPNetwork

CONNECT_TIMEOUT: Final = 5.0
#: A lookup has no timeout of its own: it runs in a small pool and is given up
#: after this (a stuck resolver holds a pool thread, never a delivery or a request).
RESOLVE_TIMEOUT: Final = 5.0
_RESOLVER: Final = concurrent.futures.ThreadPoolExecutor(
    max_workers=4, thread_name_prefix="keyplane-resolve"
)
#: The whole request: connecting, sending, the answer's headers and body.
DEADLINE: Final = 10.0
MAX_RESPONSE_BYTES: Final = 64 * 1024
EXCERPT_BYTES: Final = 1024
MAX_URL_LENGTH: Final = 2000
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_NUMERIC_LABEL: Final = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)
_HOST_NAME: Final = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.?)+$", re.I)


class OutboundRefused(InvalidInput):
    """The URL is not one Keyplane may call (a 422 on ``field``, ``url`` by default)."""

    def __init__(self, message: str, *, field: str = "url") -> None:
        super().__init__(message, field=field)


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: its parts as they are sent."""

    url: str
    scheme: str
    host: str
    port: int

    @property
    def literal(self) -> IPAddress | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class OutboundResult:
    """What one request got: a status code, or the error that stopped it."""

    status_code: int | None
    latency_ms: int
    error: str | None
    excerpt: str | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


def check_url(url: object, *, field: str = "url") -> Target:
    """``url`` parsed and checked for shape (no lookup); :class:`OutboundRefused` if not."""
    if not isinstance(url, str) or not url.strip():
        raise OutboundRefused("give the URL as http(s)://host/path", field=field)
    url = url.strip()
    if len(url) > MAX_URL_LENGTH or any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise OutboundRefused(
            f"the URL must be at most {MAX_URL_LENGTH} characters, without spaces or "
            "control characters",
            field=field,
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise OutboundRefused(
            "the URL is not well formed (check the host and port)", field=field
        ) from None
    if parts.scheme not in ("http", "https"):
        raise OutboundRefused("the URL must start with https:// or http://", field=field)
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise OutboundRefused(
            "the URL must not carry a user name or password (user@host)", field=field
        )
    if parts.fragment or url.endswith("#"):
        raise OutboundRefused("the URL must not have a #fragment", field=field)
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise OutboundRefused("the URL has no host", field=field)
    if port is not None and not 1 <= port <= 65535:
        raise OutboundRefused("the port must be from 1 to 65535", field=field)
    literal: IPAddress | None
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is None:
        if all(_NUMERIC_LABEL.match(label) for label in host.split(".")):
            # 2130706433, 0x7f.1, 017700000001: spellings of an address that resolvers
            # read differently; only the dotted quad is accepted.
            raise OutboundRefused(
                "write an IPv4 address as four decimal numbers (203.0.113.7)", field=field
            )
        if not host.isascii():
            # IDNA would turn lookalikes (full-width digits, ideographic dots) into other
            # hosts than the one checked here: the ASCII form is the one accepted.
            raise OutboundRefused(
                "write the URL's host name in ASCII (an international name as xn--...)",
                field=field,
            )
        host = host.lower()
        if not _HOST_NAME.match(host):
            raise OutboundRefused("the URL's host name is not valid", field=field)
    return Target(
        url=url,
        scheme=parts.scheme,
        host=host,
        port=port or (443 if parts.scheme == "https" else 80),
    )


def refusal_reason(address: IPAddress) -> str | None:
    """Why ``address`` is internal (``"loopback"``...), or None when it is public."""
    for candidate in reversed(_embedded(address)):  # the embedded IPv4 one names it best
        if candidate.is_unspecified:
            return "unspecified"
        if candidate.is_loopback:
            return "loopback"
        if candidate.is_link_local:
            return "link-local (cloud metadata)"
        if candidate.is_multicast:
            return "multicast"
        if isinstance(candidate, ipaddress.IPv4Address) and candidate in _SHARED:
            return "shared (carrier-grade NAT)"
        if candidate.is_private:
            return "private"
        if candidate.is_reserved or not candidate.is_global:
            return "reserved"
    return None


_SHARED: Final = ipaddress.IPv4Network("100.64.0.0/10")


def _embedded(address: IPAddress) -> list[IPAddress]:
    """``address`` and the IPv4 addresses an IPv6 address carries (mapped, 6to4, NAT64)."""
    found: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if address.teredo is not None:
            found.extend(address.teredo)
        if address in _NAT64:
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d (deprecated compatible)
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def is_allowed(address: IPAddress, allow: Iterable[IPNetwork]) -> bool:
    networks = tuple(allow)
    return any(candidate in network for candidate in _embedded(address) for network in networks)


def resolve(target: Target, allow: Iterable[IPNetwork] = (), *, field: str = "url") -> IPAddress:
    """The one address to connect to: ``target``'s host looked up once. Refused
    (:class:`OutboundRefused`) if it does not resolve or if any address is internal
    and outside ``allow``."""
    networks = tuple(allow)
    literal = target.literal
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            infos = _RESOLVER.submit(
                socket.getaddrinfo,
                target.host,
                target.port,
                type=socket.SOCK_STREAM,
                proto=socket.IPPROTO_TCP,
            ).result(timeout=RESOLVE_TIMEOUT)
        except concurrent.futures.TimeoutError:
            raise OutboundRefused(
                f"the host name {target.host[:100]!r} did not resolve within "
                f"{RESOLVE_TIMEOUT:.0f} s",
                field=field,
            ) from None
        except (OSError, UnicodeError):
            raise OutboundRefused(
                f"the host name {target.host[:100]!r} does not resolve", field=field
            ) from None
        addresses = []
        for info in infos:
            text = str(info[4][0]).split("%", 1)[0]
            try:
                addresses.append(ipaddress.ip_address(text))
            except ValueError:
                continue
        if not addresses:
            raise OutboundRefused(
                f"the host name {target.host[:100]!r} does not resolve", field=field
            )
    for address in addresses:
        reason = refusal_reason(address)
        if reason is not None and not is_allowed(address, networks):
            raise OutboundRefused(
                f"the URL's host is {address}, a {reason} address; Keyplane sends only to "
                "public addresses unless KEYPLANE_OUTBOUND_ALLOW_NETWORKS includes it",
                field=field,
            )
    return addresses[0]


def check_and_resolve(
    url: object, allow: Iterable[IPNetwork] = (), *, field: str = "url"
) -> tuple[Target, IPAddress]:
    target = check_url(url, field=field)
    return target, resolve(target, allow, field=field)


# -- sending -----------------------------------------------------------------------


class _Expired(httpcore.ReadTimeout):
    pass


class _DeadlineStream(httpcore.NetworkStream):
    """A stream whose every read and write gets at most what is left of the deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def _left(self, timeout: float | None) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise _Expired("deadline")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._left(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._stream.start_tls(ssl_context, server_hostname, self._left(timeout))
        return _DeadlineStream(stream, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to the address :func:`resolve` chose, never to a fresh lookup."""

    def __init__(self, host: str, address: IPAddress, deadline: float) -> None:
        self._host = host
        self._address = address
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if host.strip("[]").lower() != self._host.lower():
            raise httpcore.ConnectError("refused: a connection to another host than the URL's")
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("deadline")
        stream = self._inner.connect_tcp(
            str(self._address),
            port,
            timeout=min(timeout or CONNECT_TIMEOUT, left),
            local_address=local_address,
            socket_options=socket_options,
        )
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("refused: no Unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class OutboundClient:
    """Sends one request under the rules above; never raises for the network's sake."""

    def __init__(
        self,
        allow: Iterable[IPNetwork] = (),
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        deadline: float = DEADLINE,
        user_agent: str = "Keyplane",
    ) -> None:
        self.allow = tuple(allow)
        self._connect_timeout = connect_timeout
        self._deadline = deadline
        self._user_agent = user_agent
        self._ssl = httpx.create_ssl_context()

    def check(self, url: object, *, field: str = "url") -> Target:
        """Check ``url`` and that it resolves to allowed addresses (for create and update)."""
        target, _ = check_and_resolve(url, self.allow, field=field)
        return target

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> OutboundResult:
        started = time.monotonic()
        try:
            target, address = check_and_resolve(url, self.allow)
        except OutboundRefused as refused:
            return OutboundResult(None, 0, f"refused: {refused}", None)
        deadline = started + self._deadline
        pool = httpcore.ConnectionPool(
            ssl_context=self._ssl,
            max_connections=1,
            retries=0,
            network_backend=_PinnedBackend(target.host, address, deadline),
        )
        sent = {
            "host": _host_header(target),
            "user-agent": self._user_agent,
            **{k.lower(): v for k, v in headers.items()},
            "content-length": str(len(body)),
        }
        timeouts = {
            "connect": self._connect_timeout,
            "read": self._deadline,
            "write": self._deadline,
            "pool": self._deadline,
        }
        status: int | None = None
        excerpt = b""
        error: str | None = None
        try:
            with pool.stream(
                "POST",
                target.url,
                headers=list(sent.items()),
                content=body,
                extensions={"timeout": timeouts},
            ) as response:
                status = response.status
                read = 0
                for chunk in response.iter_stream():
                    if len(excerpt) < EXCERPT_BYTES:
                        excerpt += chunk[: EXCERPT_BYTES - len(excerpt)]
                    read += len(chunk)
                    if read >= MAX_RESPONSE_BYTES:
                        break  # the rest is not read: closing the connection drops it
                if 300 <= status < 400:
                    location = _header(response.headers, b"location")
                    where = f" to {location[:200]}" if location else ""
                    error = (
                        f"answered {status} (a redirect{where}); "
                        "redirects are not followed and count as a failure"
                    )
        except _Expired:
            error = f"no complete answer within {self._deadline:g} s"
        except httpcore.ConnectTimeout:
            error = f"could not connect within {self._connect_timeout:g} s"
        except httpcore.TimeoutException:
            error = f"no complete answer within {self._deadline:g} s"
        except httpcore.ConnectError as failed:
            error = f"could not connect: {_short(failed)}"
        except (httpcore.ReadError, httpcore.WriteError) as failed:
            error = f"the connection broke: {_short(failed)}"
        except httpcore.RemoteProtocolError as failed:
            error = f"the answer was not valid HTTP: {_short(failed)}"
        except (httpcore.ProtocolError, httpcore.NetworkError, ssl.SSLError, OSError) as failed:
            error = f"the request failed: {_short(failed)}"
        finally:
            pool.close()
        if error is None and status is None:
            error = "no answer"
        latency = int((time.monotonic() - started) * 1000)
        text = excerpt.decode("utf-8", "replace") if excerpt else None
        return OutboundResult(status, latency, error, text)


def _host_header(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _short(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text[:200]
