"""The gRPC port before gRPC is served: a listening socket that accepts and closes connections."""

from __future__ import annotations

import socket
import threading
from typing import Any

from .errors import invalid


class GrpcPlaceholder:
    """A listening socket on the gRPC port (accepts and closes connections); no gRPC is implemented."""

    def __init__(self, port: int, socket_path: str, bind_address: str):
        self.sockets: list[socket.socket] = []
        if port:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._bind(s, (bind_address, port))
        if socket_path:
            self._bind(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), socket_path)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, args=(s,), daemon=True) for s in self.sockets]
        for t in self._threads:
            t.start()

    def _bind(self, s: socket.socket, address: Any) -> None:
        try:
            s.bind(address)
            s.listen(64)
            s.settimeout(0.2)
        except OSError:
            s.close()
            self.close()
            raise invalid("Failed to BuildAndStart gRPC server") from None
        self.sockets.append(s)

    def _accept(self, s: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = s.accept()
                conn.close()
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        if hasattr(self, "_stop"):
            self._stop.set()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the accept() call at once
            except OSError:
                pass
            s.close()
