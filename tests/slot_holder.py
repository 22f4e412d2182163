"""A fleet slot holder for tests/test_fleet_slots.py: one SlotStore over a real TCP connection to an IMAP
server (Dovecot's greeting read), driven by lines on stdin; says what happens on stdout.

argv: redis_url key limit imap_port ttl grace
stdin: "close" ends the connection and gives the slot back; "reconnect" reconnects (re-taking a lost slot).
stdout: "held" once connected under a slot, "lost" when the slot was lost and the connection cut, "closed".
"""

import socket
import sys
import threading

from mailmigrate.fleet.limits import Slots, SlotStore


class TcpStore:
    """The smallest store with a real server connection: open reads the IMAP greeting."""

    def __init__(self, port):
        self.port, self.sock = port, None

    def open(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port))
        self.sock.recv(1024)

    def abort(self):
        sock = self.sock
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
            print("lost", flush=True)

    def close(self):
        """Half-close, then wait for the server to close its side (Dovecot does on the client's EOF): the slot
        is given back only once the server has let the connection go, as after an IMAP LOGOUT."""
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_WR)
                self.sock.settimeout(5)
                while self.sock.recv(4096):
                    pass
            except OSError:
                pass
            self.sock.close()
            self.sock = None

    def clone(self):
        return None


def main():
    url, key, limit, port, ttl, grace = sys.argv[1:7]
    Slots.GRACE = float(grace)
    slots = Slots(url, ttl=float(ttl), wait=120)
    store = SlotStore(TcpStore(int(port)), slots, key, int(limit))
    store.open()
    print("held", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "reconnect":
            store.reconnect()
            print("held", flush=True)
        elif cmd == "close":
            store.close()
            print("closed", flush=True)
            break
    slots.close()


if __name__ == "__main__":
    threading.current_thread().name = "holder"
    main()
