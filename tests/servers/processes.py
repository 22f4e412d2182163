"""Test servers run as processes of their own (slapd, samba): whether one serves LDAP yet, and stopping it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess


def stop_group(p: subprocess.Popen | None, grace: float = 10) -> None:
    """SIGTERM to the group ``p`` leads (started with ``start_new_session=True``), SIGKILL after ``grace``
    seconds; the children (samba's prefork workers) go with it."""
    if p is None or p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(5)


def ldap_answers(address: str, port: int) -> bool:
    """Whether an LDAP server answers there: an anonymous LDAPv3 bind, and any BindResponse means it serves."""
    try:
        with socket.create_connection((address, port), timeout=0.5) as s:
            s.sendall(bytes.fromhex("300c020101600702010304008000"))
            s.settimeout(2)
            return s.recv(2)[:1] == b"\x30"
    except OSError:
        return False
