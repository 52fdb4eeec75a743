"""The bid server's listening sockets: several on one port, so that an overloaded event
loop still accepts new connections quickly.

libuv, under uvloop, accepts one connection per listening socket per turn of the event
loop (for fairness between processes sharing a socket). A loop shedding an overload turns
about every 10 ms, so a single socket accepted about 100 connections a second, and an
exchange's pool growing by a thousand connections in a surge waited seconds in the
kernel's accept queue (`docs/BENCHMARKS.md`, overload). `listen_sockets` sockets bound to
the same address with `SO_REUSEPORT` are as many libuv servers: the kernel spreads new
connections over them, and each turn of the loop accepts one from each.
"""

from __future__ import annotations

import socket

from bidder.errors import ConfigurationError


def listening_sockets(host: str, port: int, count: int, backlog: int) -> list[socket.socket]:
    """`count` sockets listening on `host`:`port`, inheritable by worker processes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        # `SO_REUSEPORT` would also let these sockets join another process's on the port (a
        # second bidder started by mistake would share its traffic): a plain bind first
        # fails on any port something already listens on.
        with socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(backlog)
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sockets
