"""A TCP proxy a test can cut and restore: to the client, the server behind it goes away
(connections reset, new ones refused) and comes back on the same address. Or it can hold
the server's replies while the client's requests still get through: a link that loses
packets one way, which TCP retransmits once it heals, so every reply arrives late."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from master.up import free_port


class TcpProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._replies_flow = threading.Event()
        self._replies_flow.set()
        self._hold_after: bytes | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
            listener, self._listener = self._listener, None
        for sock in [*sockets, *([listener] if listener else [])]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def hold_replies(self, after: bytes | None = None) -> None:
        """Keep every reply from the server (on open and new connections) until release():
        from now on, or from the client's next request that holds `after`, which then
        reaches the server with its reply held."""
        if after is None:
            self._replies_flow.clear()
        else:
            self._hold_after = after

    def release(self) -> None:
        """Deliver the held replies, and let new ones through."""
        self._replies_flow.set()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # cut
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            for pump in (self._requests, self._replies):
                threading.Thread(target=pump, args=(client, server), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket) -> None:
        def forward(data: bytes) -> None:
            if self._hold_after is not None and self._hold_after in data:
                self._hold_after = None
                self._replies_flow.clear()
            server.sendall(data)

        _pump(client, server, forward)

    def _replies(self, client: socket.socket, server: socket.socket) -> None:
        def forward(data: bytes) -> None:
            self._replies_flow.wait()
            client.sendall(data)

        _pump(server, client, forward)


def _pump(source: socket.socket, target: socket.socket, forward: Callable[[bytes], None]) -> None:
    try:
        while data := source.recv(65536):
            forward(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
