"""A fake IMAP server on loopback that plays one hostile or broken behaviour at a time (issue 19).

Just enough IMAP4rev1 (RFC 3501) for mailmigrate's source side: greeting with capabilities, LOGIN and
AUTHENTICATE PLAIN, LIST, STATUS, SELECT/EXAMINE, UID FETCH, UNSELECT, NOOP, LOGOUT.  Everything a real
server would answer correctly it answers correctly, so each test shows the effect of its one misbehaviour:

* ``Folder.uidvalidity`` / a message's ``date`` / ``uid`` as raw bytes: numbers out of range, dates that are
  not dates;
* a folder named ``~archive`` sent as the atom RFC 3501 allows;
* ``echo_secret``: a login refused with the password or the base64 SASL token in the NO text;
* ``flood``: ``"select"`` sends untagged lines without end after EXAMINE; ``"listing"`` sends FETCH
  responses without end to the listing's UID FETCH;
* ``trickle``: the EXAMINE answer one byte every ``trickle`` seconds;
* names with control characters (CR, ESC) sent as literals, as a server may.
"""

from __future__ import annotations

import base64
import re
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Message:
    uid: bytes
    body: bytes
    flags: bytes = b"\\Seen"
    date: bytes = b'"01-Mar-2023 09:30:00 +0000"'


@dataclass
class Folder:
    messages: list[Message] = field(default_factory=list)
    uidvalidity: bytes = b"1700000000"


@dataclass
class Script:
    user: str = "alice"
    password: str = "s3cret-pass"
    folders: dict[bytes, Folder] = field(default_factory=dict)
    echo_secret: bool = False
    flood: str | None = None
    trickle: float | None = None
    connections: int = 0


def _wire_name(name: bytes) -> bytes:
    if any(c in (0, 10, 13) or c > 0x7E for c in name):
        return b"{%d}\r\n%s" % (len(name), name)
    if re.fullmatch(rb"[A-Za-z0-9~._-]+", name):
        return name  # an atom, "~archive" included
    return b'"' + name.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class _Handler(socketserver.StreamRequestHandler):
    script: Script

    def send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def handle(self) -> None:
        sc = self.server.script
        sc.connections += 1
        self.selected: bytes | None = None
        self.send(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN LITERAL+ UIDPLUS] hostile test server ready\r\n")
        try:
            while True:
                line = self.rfile.readline(1 << 16)
                if not line:
                    return
                if not self.dispatch(line.rstrip(b"\r\n")):
                    return
        except (ConnectionError, BrokenPipeError, socket.timeout, OSError):
            return

    def dispatch(self, line: bytes) -> bool:
        sc = self.server.script
        tag, _, rest = line.partition(b" ")
        cmd, _, args = rest.partition(b" ")
        cmd = cmd.upper()
        if cmd == b"UID":
            sub, _, args = args.partition(b" ")
            cmd = b"UID " + sub.upper()
        if cmd == b"CAPABILITY":
            self.send(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN LITERAL+ UIDPLUS\r\n" + tag + b" OK done\r\n")
        elif cmd == b"LOGIN":
            m = re.fullmatch(rb'"?([^" ]*)"? "?([^"]*)"?', args)
            ok = m and m.group(1).decode() == sc.user and m.group(2).decode() == sc.password
            self.login_answer(tag, ok, args)
        elif cmd == b"AUTHENTICATE":
            mech, _, token = args.partition(b" ")
            if not token:
                self.send(b"+ \r\n")
                token = self.rfile.readline().strip()
            try:
                _, user, pw = base64.b64decode(token).split(b"\0")
                ok = user.decode() == sc.user and pw.decode() == sc.password
            except Exception:
                ok = False
            self.login_answer(tag, ok, token)
        elif cmd == b"LIST" or cmd == b"LSUB":
            out = b""
            for name in sc.folders:
                out += b'* %s () "/" %s\r\n' % (cmd, _wire_name(name))
            self.send(out + tag + b" OK done\r\n")
        elif cmd == b"STATUS":
            name = self.read_name(args)
            f = sc.folders.get(name)
            if f is None:
                self.send(tag + b" NO no such folder\r\n")
            else:
                uidnext = b"%d" % (max([int(m.uid) for m in f.messages if m.uid.isdigit()] or [0]) + 1)
                self.send(b"* STATUS %s (MESSAGES %d UIDVALIDITY %s UIDNEXT %s)\r\n%s OK done\r\n"
                          % (_wire_name(name), len(f.messages), f.uidvalidity, uidnext, tag))
        elif cmd in (b"SELECT", b"EXAMINE"):
            name = self.read_name(args)
            f = sc.folders.get(name)
            if f is None:
                self.send(tag + b" NO no such folder\r\n")
                return True
            self.selected = name
            answer = (b"* %d EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY %s] ok\r\n"
                      b"* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft)\r\n"
                      b"* OK [PERMANENTFLAGS ()] ok\r\n%s OK [READ-ONLY] done\r\n"
                      % (len(f.messages), f.uidvalidity, tag))
            if sc.flood == "select":
                junk = b"* OK " + b"x" * 8000 + b"\r\n"
                while True:  # until the client gives up and closes
                    self.send(junk * 64)
            if sc.trickle:
                for i in range(len(answer)):
                    self.send(answer[i:i + 1])
                    time.sleep(sc.trickle)
                return True
            self.send(answer)
        elif cmd == b"UID FETCH":
            f = sc.folders.get(self.selected)
            if f is None:
                self.send(tag + b" BAD nothing selected\r\n")
                return True
            body_wanted = b"BODY.PEEK[]" in args.upper()
            if sc.flood == "listing" and not body_wanted:
                n = 1
                while True:
                    self.send(b"".join(b"* %d FETCH (UID %d FLAGS ())\r\n" % (n + i, n + i) for i in range(500)))
                    n += 500
            wanted = self.uid_set(args.split(b" ", 1)[0])
            out = b""
            for seq, m in enumerate(f.messages, 1):
                if m.uid.isdigit() and not wanted(int(m.uid)):
                    continue
                items = b"UID %s FLAGS (%s) INTERNALDATE %s" % (m.uid, m.flags, m.date)
                if body_wanted:
                    items += b" BODY[] {%d}\r\n%s" % (len(m.body), m.body)
                else:
                    items += b" RFC822.SIZE %d" % len(m.body)
                out += b"* %d FETCH (%s)\r\n" % (seq, items)
            self.send(out + tag + b" OK done\r\n")
        elif cmd in (b"UNSELECT", b"CLOSE"):
            self.selected = None
            self.send(tag + b" OK done\r\n")
        elif cmd == b"LOGOUT":
            self.send(b"* BYE bye\r\n" + tag + b" OK done\r\n")
            return False
        elif cmd in (b"NOOP", b"ENABLE", b"ID", b"NAMESPACE"):
            self.send(tag + b" OK done\r\n")
        else:
            self.send(tag + b" BAD unknown command\r\n")
        return True

    def login_answer(self, tag: bytes, ok: bool, echoed: bytes) -> None:
        sc = self.server.script
        if ok:
            self.send(tag + b" OK [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS] logged in\r\n")
        elif sc.echo_secret:
            self.send(tag + b" NO [AUTHENTICATIONFAILED] Authentication failed for " + echoed + b"\r\n")
        else:
            self.send(tag + b" NO [AUTHENTICATIONFAILED] Authentication failed\r\n")

    def read_name(self, args: bytes) -> bytes:
        m = re.match(rb"\{(\d+)(\+?)\}$", args)
        if m:
            if not m.group(2):
                self.send(b"+ go on\r\n")
            name = self.rfile.read(int(m.group(1)))
            self.rfile.readline()  # the rest of the command line after the literal
            return name
        if args.startswith(b'"'):
            end = args.index(b'"', 1)
            while args[end - 1:end] == b"\\":
                end = args.index(b'"', end + 1)
            return args[1:end].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
        return args.split(b" ", 1)[0]

    @staticmethod
    def uid_set(text: bytes):
        ranges = []
        for part in text.split(b","):
            lo, _, hi = part.partition(b":")
            lo_n = 1 if lo == b"*" else int(lo)
            hi_n = 10**30 if hi == b"*" else int(hi) if hi else lo_n
            ranges.append((min(lo_n, hi_n), max(lo_n, hi_n)))
        return lambda uid: any(a <= uid <= b for a, b in ranges)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class HostileServer:
    """``with HostileServer(script) as srv:`` — ``srv.url`` is a source URL for ``mailmigrate sync``."""

    def __init__(self, script: Script):
        self.script = script
        self._srv = _Server(("127.0.0.1", 0), _Handler)
        self._srv.script = script
        self.port = self._srv.server_address[1]
        self.url = f"imap://{script.user}@127.0.0.1:{self.port}?tls=none"

    def __enter__(self) -> "HostileServer":
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._srv.shutdown()
        self._srv.server_close()
