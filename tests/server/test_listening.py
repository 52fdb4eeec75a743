"""Several listening sockets on one port: each accepts, and a port taken is named."""

from __future__ import annotations

import asyncio
import socket

import pytest

from bidder.errors import ConfigurationError
from bidder.server.listening import listening_sockets
from tests.conftest import free_port, held_port


def test_connections_are_spread_over_the_sockets_and_each_accepts() -> None:
    port = free_port()
    sockets = listening_sockets("127.0.0.1", port, 4, backlog=64)
    try:
        assert {sock.getsockname() for sock in sockets} == {("127.0.0.1", port)}
        assert all(sock.get_inheritable() for sock in sockets)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
        accepted = asyncio.run(_accept_all(sockets, len(clients)))
        for client in clients:
            client.close()
        assert sum(accepted) == len(clients)
        assert sum(1 for count in accepted if count) >= 2, "the kernel spreads connections"
    finally:
        for sock in sockets:
            sock.close()


async def _accept_all(sockets: list[socket.socket], expected: int) -> list[int]:
    accepted = [0] * len(sockets)
    for sock in sockets:
        sock.setblocking(False)
    async with asyncio.timeout(10):
        while sum(accepted) < expected:
            for index, sock in enumerate(sockets):
                try:
                    connection, _ = sock.accept()
                except BlockingIOError:
                    continue
                connection.close()
                accepted[index] += 1
            await asyncio.sleep(0.001)
    return accepted


def test_a_port_another_bidder_listens_on_is_refused_too() -> None:
    # Its sockets have SO_REUSEPORT, which alone would let a second set join them.
    port = free_port()
    first = listening_sockets("127.0.0.1", port, 2, backlog=8)
    try:
        with pytest.raises(ConfigurationError, match=f"cannot listen on 127.0.0.1:{port}"):
            listening_sockets("127.0.0.1", port, 2, backlog=8)
    finally:
        for sock in first:
            sock.close()


def test_a_port_another_socket_holds_is_refused_by_name() -> None:
    with (
        held_port() as port,
        pytest.raises(ConfigurationError, match=f"cannot listen on 127.0.0.1:{port}"),
    ):
        listening_sockets("127.0.0.1", port, 2, backlog=8)
