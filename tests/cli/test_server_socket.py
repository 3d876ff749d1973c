"""``keyplane serve``'s listening socket: accepted connections must get TCP_NODELAY."""

from __future__ import annotations

import socket

from keyplane.cli.server import NoDelayConfig


def test_the_listening_socket_says_tcp_so_asyncio_disables_nagle() -> None:
    config = NoDelayConfig("keyplane.app:create_app", factory=True, host="127.0.0.1", port=0)
    listening = config.bind_socket()
    try:
        assert listening.proto == socket.IPPROTO_TCP
        listening.listen()
        client = socket.create_connection(listening.getsockname())
        accepted, _ = listening.accept()
        try:
            # What asyncio checks before it sets TCP_NODELAY on a new connection.
            assert accepted.proto == socket.IPPROTO_TCP
            assert accepted.family == socket.AF_INET
        finally:
            accepted.close()
            client.close()
    finally:
        listening.close()
