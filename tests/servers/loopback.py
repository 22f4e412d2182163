"""The listening half of the loopback TCP proxies: faultproxy.py for the tests, bench/slowlink.py for the
benchmarks.

Both must only ever listen on 127.0.0.1, on a port the system picks (tests run side by side), and both must
stop taking connections on ``close()`` while the connections already relayed run on: what a proxy does to
the bytes is its own business (``_accepted``), taking the connections is the same for both.
"""

from __future__ import annotations

import socket
import threading


class LoopbackListener:
    def __init__(self, backlog: int):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _start_accepting(self, name: str) -> None:
        """Called last by a subclass's ``__init__``: a client may connect as soon as the port is known, and
        ``_accepted`` must then find every attribute it reads."""
        self._thread = threading.Thread(target=self._accept, daemon=True, name=name)
        self._thread.start()

    def close(self) -> None:
        """Once this returns, no connection reaches ``_accepted`` any more.

        Closing the socket alone does not do it: an accept() already waiting in the other thread keeps the
        socket listening and takes the next connection.  shutdown() on a listening socket (Linux) stops the
        listening, refuses later connections, resets those waiting in the backlog and wakes that accept();
        joining the thread then makes sure it is past its last ``_accepted``."""
        self._stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if self._stop.is_set():  # came in while close() was under way: not to be relayed
                client.close()
                return
            self._accepted(client)

    def _accepted(self, client: socket.socket) -> None:
        """Take one accepted connection; runs in the accepting thread, so it must not block."""
        raise NotImplementedError
