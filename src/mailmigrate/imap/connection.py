"""One IMAP connection: TLS, literals streamed to disk, pipelined commands, authentication.

Why not imaplib: it cannot pipeline (one round trip per command is what makes migrations slow), it holds
every literal in memory (a 50 MB attachment would be 50 MB of RAM, twice), and it knows no LITERAL+,
MULTIAPPEND or master-user logins.

TLS: certificates and host names are verified with the system's trust store (or ``cafile``) unless the
user said ``insecure``; ``starttls`` is a requirement, never a wish: a server that does not offer it is
refused before any password is sent.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import re
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator

from ..errors import (AuthenticationFailed, CommandTimedOut, ConfigError, ConnectionLost, FormatError,
                      HostNotFound, MessageRejected, ProtocolError, QuotaExceeded, ResponseTooLarge, ServerRefused,
                      TemporaryFailure, TLSMismatch)
from ..model import SPOOL_THRESHOLD, Body, Secret, printable, spool_file
from . import diag
from .sasl import OAUTH_ERROR_ACK, oauth_initial_response
from .parser import (BODY_FETCH_HEAD, BODY_FETCH_HEAD_FLAGS_FIRST, LISTING_FETCH, LISTING_FETCH_FLAGS_FIRST,
                     Response, _Literal, literal_size, parse_number, parse_response)

TYPE_CHECKING = False  # typing's constant, without importing typing: see model.py
if TYPE_CHECKING:
    import ssl

log = logging.getLogger("mailmigrate.imap")
wire = logging.getLogger("mailmigrate.imap.wire")

_ATOM_SPECIALS = set(b'(){ %*"\\]') | set(range(0, 0x21)) | {0x7F}


def quote(value: str | bytes) -> bytes:
    """An astring argument: an atom when safe, else a quoted string; None of CR, LF, NUL, 8-bit allowed
    (those go as literals, see :meth:`Connection.command`)."""
    b = value.encode("utf-8") if isinstance(value, str) else value
    if any(c in (0, 10, 13) for c in b):
        # Sent inside quotes, a CR LF would end the command and start another of the sender's choosing
        # (a folder name from a hostile source server could delete mail on the target).
        raise FormatError(f"{printable(b.decode('utf-8', 'replace'))!r} cannot be sent to an IMAP server: it "
                          "holds CR, LF or NUL")
    if b and not any(c in _ATOM_SPECIALS or c > 0x7E for c in b):
        return b
    return b'"' + b.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def needs_literal(value: bytes) -> bool:
    return any(c in (0, 10, 13) or c > 0x7E for c in value)


_SEND_GATHER = 1 << 18  # bytes of a command gathered before a send
_IOV_MAX = 512  # pieces one sendmsg is given (Linux takes at most 1,024)


class Lit:
    """An argument to be sent as a literal (bytes or a Body, streamed)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | Body):
        self.data = data

    @property
    def size(self) -> int:
        d = self.data
        return len(d) if type(d) is bytes or isinstance(d, bytearray) else d.size


def _env_number(name: str, default: float) -> float:
    try:
        v = float(os.environ.get(name, ""))
        return v if v > 0 else default
    except ValueError:
        return default


#: What a hostile or broken server may make one command cost (issue 19).  Memory: the responses a command
#: collects besides the FETCH data it streams (a listing, untagged floods) stop at this many bytes.  Time:
#: each read has the connection's timeout, and the whole exchange since the last command was sent or
#: completed has a deadline of a floor plus one second per MIN_RATE bytes moved, so a server that trickles
#: a byte every ten seconds cannot hold a worker forever, while a big but flowing transfer never trips it.
MAX_HELD = int(_env_number("MAILMIGRATE_IMAP_MAX_RESPONSE", 128 << 20))
DEADLINE_FLOOR = _env_number("MAILMIGRATE_IMAP_COMMAND_FLOOR", 600.0)
MIN_RATE = _env_number("MAILMIGRATE_IMAP_MIN_RATE", 2048.0)


class _DeadlineIO(io.RawIOBase):
    """The socket as a raw stream whose every read checks the connection's deadline: ``readline`` on a
    plain socket file would wait forever for a line that arrives one byte per read timeout."""

    def __init__(self, conn: "Connection", sock):
        super().__init__()
        self._conn = conn
        self._sock = sock
        self._recv_into = sock.recv_into
        # A plain TCP socket waits in the kernel (SO_RCVTIMEO, a blocking socket): Python's own timeout polls
        # before every recv, two system calls and two hand-overs of the interpreter lock per read where one
        # does. A TLS socket keeps Python's timeout: a blocking SSLSocket would retry a read timed out in
        # the kernel for ever.
        self._kernel = (_KERNEL_TIMEOUTS and type(sock) is socket.socket
                        and sock.family in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX))
        self._want: float | None = None
        if self._kernel:
            try:
                sock.settimeout(None)
                _kernel_timeouts(sock, conn.timeout or None)
                self._want = conn.timeout or None
            except OSError:
                self._kernel = False
                sock.settimeout(conn.timeout or None)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        c = self._conn
        left = c._time_left()
        if left <= 0:
            raise c._timed_out()
        want = min(c.timeout, left) if c.timeout else left
        if self._kernel:
            if want != self._want:
                # Far from the deadline the wanted value is the connection's timeout, read after read: a system
                # call only when the deadline comes nearer than that.
                _kernel_timeouts(self._sock, want, send=False)
                self._want = want
        elif self._sock.gettimeout() != want:
            # settimeout is a system call (ioctl FIONBIO) on every read otherwise; far from the deadline the
            # wanted value is the connection's timeout, the same read after read.
            self._sock.settimeout(want)
        try:
            n = self._recv_into(b)
        except (socket.timeout, BlockingIOError):
            if c._time_left() <= 0:
                raise c._timed_out() from None
            raise socket.timeout("timed out") from None
        c._moved += n
        return n


_KERNEL_TIMEOUTS = sys.platform.startswith("linux")  # SO_RCVTIMEO as a struct timeval of two longs


def _kernel_timeouts(sock: socket.socket, seconds: float | None, send: bool = True) -> None:
    """SO_RCVTIMEO (and SO_SNDTIMEO) of a blocking socket; None waits for ever, as settimeout(None)."""
    if seconds is None:
        tv = struct.pack("ll", 0, 0)
    else:
        seconds = max(seconds, 0.001)  # a zero timeval means no timeout at all
        tv = struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    if send:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


def _backoff_hint(low: bytes) -> float | None:
    """Seconds a server asks the client to wait, from its text (milliseconds, seconds or minutes)."""
    m = re.search(rb"(\d+)\s*(milliseconds?|msecs?|ms\b|seconds?|secs?|s\b|minutes?|mins?)", low)
    if not m:
        return None
    n, unit = float(m.group(1)), m.group(2)
    if unit.startswith(b"m") and not unit.startswith(b"min"):
        return n / 1000
    return n * 60 if unit.startswith(b"min") else n


class Connection:
    def __init__(self, host: str, port: int, *, tls: str = "starttls", insecure: bool = False,
                 cafile: str | None = None, timeout: float = 60.0):
        if tls not in ("implicit", "starttls", "none"):
            raise ConfigError(f"tls must be implicit, starttls or none, not {tls!r}")
        self.host, self.port, self.tls, self.timeout = host, port, tls, timeout
        self.insecure, self.cafile = insecure, cafile
        self.sock: socket.socket | None = None
        self.rfile = None
        self.capabilities: set[str] = set()
        self._tagn = 0
        self.untagged: list[Response] = []  # collected while waiting for a tagged response
        self._done: dict[bytes, Response] = {}  # completions of pipelined commands read early
        self.disabled = diag.disabled()  # protocol features switched off for measurements (imap/diag.py)
        self.deflater = self.inflater = None  # set by imap.compress.start once COMPRESS=DEFLATE is active
        self._mark = time.monotonic()  # when the current exchange began (a command sent or completed)
        self._moved = 0  # bytes read and sent since then
        self._held = 0  # bytes of responses collected in self.untagged since the command began
        self._last_size = 0
        self._sendmsg = None  # the plain socket's sendmsg (_send_pieces); None: join, then sendall
        self._spool_buf: memoryview | None = None  # what a literal bound for disk is read through
        self._blocking = False  # the socket waits in the kernel (_DeadlineIO._kernel): sendfile may be used
        self._secrets: list[str] = []  # what a server must not make us print: the password, its SASL token

    # --- connecting -------------------------------------------------------------------------------
    def _context(self) -> ssl.SSLContext:
        import ssl  # see _wrap

        ctx = ssl.create_default_context(cafile=self.cafile)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def connect(self) -> None:
        try:
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except socket.gaierror as e:
            raise HostNotFound(f"cannot find the host {self.host} ({e.strerror or e}): check the name in the "
                               "URL") from None
        except OSError as e:
            raise ConnectionLost(f"cannot connect to {self.host}:{self.port}: {e.strerror or e}") from None
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if self.tls == "implicit":
                raw = self._wrap(raw)
            self._attach(raw)
            greeting = self.read_response()
        except ConnectionLost:
            raw.close()
            raise
        if greeting.status == b"BYE":
            self.close()
            raise TemporaryFailure(f"{self.host} refused the connection: {greeting.text_str()}")
        if greeting.status not in (b"OK", b"PREAUTH"):
            self.close()
            raise ProtocolError(f"{self.host} did not greet with OK")
        self._caps_from(greeting)
        if not self.capabilities:
            self.capability()
        if self.tls == "starttls":
            if "STARTTLS" not in self.capabilities:
                self.close()
                raise ConfigError(
                    f"{self.host}:{self.port} does not offer STARTTLS; refusing to log in without encryption "
                    "(use imaps://, or ?tls=none on a trusted network)")
            self.check(self.command(b"STARTTLS"), "STARTTLS")
            self._attach(self._wrap(self.sock))
            self.capabilities = set()
            self.capability()

    def _wrap(self, raw: socket.socket) -> ssl.SSLSocket:
        # ssl loads here, with the first TLS connection: a ?tls=none run (a cutover loop between servers on one
        # host or a trusted network) does not pay its import, some 4 ms of every start-up
        import ssl

        try:
            raw.settimeout(self.timeout)  # a plain socket read in blocking mode (_DeadlineIO): TLS needs Python's
            return self._context().wrap_socket(raw, server_hostname=self.host)
        except ssl.SSLCertVerificationError as e:
            raw.close()
            raise ConfigError(
                f"TLS certificate of {self.host}:{self.port} not trusted ({e.verify_message}); fix the "
                "certificate, give its CA with ?cafile=PATH in the URL, or use --insecure if you accept the "
                "risk") from None
        except ssl.SSLError as e:
            raw.close()
            if any(x in str(e).upper() for x in ("WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE",
                                                  "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST")):
                hint = ("use imap://HOST (STARTTLS) for a port like 143" if self.tls == "implicit"
                        else "use imaps://HOST for a port like 993")
                raise TLSMismatch(f"{self.host}:{self.port} does not speak TLS where it was expected ({e.reason or e}): "
                                  f"{hint}") from None
            raise ConnectionLost(f"TLS handshake with {self.host}:{self.port} failed: {e}") from None
        except OSError as e:
            raw.close()
            raise ConnectionLost(f"TLS handshake with {self.host}:{self.port} failed: {e}") from None

    def _attach(self, sock) -> None:
        self.sock = sock
        self._sendmsg = sock.sendmsg if type(sock) is socket.socket and hasattr(sock, "sendmsg") else None
        raw = _DeadlineIO(self, sock)
        self._blocking = raw._kernel  # a blocking socket: sendfile may write to it (no Python poll needed)
        self.rfile = io.BufferedReader(raw, 1 << 16)

    def _restart_clock(self) -> None:
        self._mark = time.monotonic()
        self._moved = 0

    def _time_left(self) -> float:
        return self._mark + DEADLINE_FLOOR + self._moved / MIN_RATE - time.monotonic()

    def _abandon(self) -> None:
        """Drop a connection whose server misbehaves: no LOGOUT, whose answer would have to be read past
        the rest of the flood or trickle."""
        self.close()

    def _timed_out(self) -> CommandTimedOut:
        spent = time.monotonic() - self._mark
        return CommandTimedOut(f"{self.host} took {spent:.0f} s for {self._moved} bytes of one command's exchange "
                               f"(allowed: {DEADLINE_FLOOR:.0f} s plus 1 s per {MIN_RATE:.0f} bytes); giving up on "
                               "this connection")

    def _hold(self, r: Response) -> None:
        """Keep an untagged response for the caller, within the memory a command may collect (its bytes plus
        what a parsed response costs in Python, about a KiB)."""
        self._held += self._last_size + 1024
        if self._held > MAX_HELD:
            self.untagged = []
            self._abandon()
            raise ResponseTooLarge(f"{self.host} sent more than {MAX_HELD >> 20} MiB of responses to one command "
                                   f"(last: {r.name.decode('ascii', 'replace') if r.name else r.kind}); giving up "
                                   "on this connection")
        self.untagged.append(r)

    def close(self) -> None:
        if self.deflater is not None and self.inflater is not None:
            log.debug("%s: compressed in %d -> %d bytes, out %d -> %d bytes", self.host, self.inflater.plain,
                      self.inflater.wire, self.deflater.plain, self.deflater.wire)
        for c in (self.rfile, self.sock):
            try:
                if c is not None:
                    c.close()
            except OSError:
                pass
        self.sock = self.rfile = None

    def abort(self) -> None:
        """End the TCP connection now, callable from another thread: a read blocked on it returns
        end-of-file (a lost connection) and the server sees the connection close.  Used when the fleet
        slot this connection was opened under is lost."""
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def logout(self) -> None:
        if self.sock is None:
            return
        try:
            self.command(b"LOGOUT")
        except Exception:
            pass
        self.close()

    # --- reading ----------------------------------------------------------------------------------
    def _readline(self) -> bytes:
        try:
            line = self.rfile.readline(1 << 20)
        except CommandTimedOut:
            self._abandon()
            raise
        except (OSError, ValueError, AttributeError) as e:
            raise ConnectionLost(f"connection to {self.host} lost: {e}") from None
        if not line:
            raise ConnectionLost(f"{self.host} closed the connection")
        if not line.endswith(b"\n"):
            # Lines longer than 1 MiB are not IMAP a server sends us (literals carry the big data).
            raise ProtocolError(f"{self.host} sent a line over 1 MiB")
        return line

    def _read_literal(self, n: int):
        try:
            if n <= SPOOL_THRESHOLD:
                data = self.rfile.read(n)
                if len(data) != n:
                    raise ConnectionLost(f"{self.host} closed the connection inside a literal")
                return data
            # Bound for disk (BodyWriter would spill it too): straight to the file, through one buffer of this
            # connection, with no bytes object made and freed (and its pages faulted in) per piece.
            if self._spool_buf is None:
                self._spool_buf = memoryview(bytearray(1 << 18))
            mv = self._spool_buf
            f = spool_file()
            try:
                left = n
                while left:
                    k = self.rfile.readinto(mv[:left] if left < len(mv) else mv)
                    if not k:
                        raise ConnectionLost(f"{self.host} closed the connection inside a literal")
                    f.write(mv[:k])
                    left -= k
                f.flush()
            except BaseException:
                f.close()
                raise
            return Body(file=f, size=n)
        except CommandTimedOut:
            self._abandon()
            raise
        except (OSError, ValueError) as e:
            raise ConnectionLost(f"connection to {self.host} lost: {e}") from None

    def read_response(self) -> Response:
        return self._read_rest([], 0, self._readline())

    def _read_rest(self, parts: list, held: int, line: bytes) -> Response:
        """The response whose next line, already read, is ``line``, after ``parts`` (``held`` bytes of them
        in memory)."""
        while True:
            size = literal_size(line)
            parts.append(line)
            held += len(line)
            if size is None:
                break
            if wire.isEnabledFor(logging.DEBUG):
                wire.debug("S: %r {literal %d}", line[:200], size)
            lit = self._read_literal(size)
            if isinstance(lit, (bytes, bytearray)):
                held += size  # in memory; a spooled literal waits on disk
            parts.append(_Literal(lit))
            line = self._readline()
        if wire.isEnabledFor(logging.DEBUG) and len(parts) == 1:
            wire.debug("S: %r", parts[0][:300])
        self._last_size = held
        r = parse_response(parts)
        if r.kind == "tagged":
            self._restart_clock()
        return r

    def _read_body_fetch(self):
        """The next response of a body FETCH: ``(match, literal)`` when it has the shape of BODY_FETCH_HEAD (or
        its FLAGS-first twin) and ends with the literal, as Dovecot's, Courier's and Cyrus's do (no Response
        built: a copy reads one per message); any other response as read_response reads it."""
        line = self._readline()
        m = BODY_FETCH_HEAD.match(line) or BODY_FETCH_HEAD_FLAGS_FIRST.match(line)
        if m is None:
            return self._read_rest([], 0, line)
        size = int(m["size"])
        if wire.isEnabledFor(logging.DEBUG):
            wire.debug("S: %r {literal %d}", line[:200], size)
        lit = self._read_literal(size)
        rest = self._readline()
        if rest == b")\r\n":
            if len(m["n"]) > 9:  # nine digits or fewer (the pattern's) are within range; else as the parser checks
                parse_number(m["n"], "a message number")
            return m, lit
        held = len(line) + (size if isinstance(lit, (bytes, bytearray)) else 0)
        return self._read_rest([line, _Literal(lit)], held, rest)

    def _read_listing_line(self):
        """The next response of a listing: the match of LISTING_FETCH (or its FLAGS-first twin) (no Response built:
        a listing is one per message), any other response as read_response reads it."""
        line = self._readline()
        m = LISTING_FETCH.match(line) or LISTING_FETCH_FLAGS_FIRST.match(line)
        if m is None:
            return self._read_rest([], 0, line)
        if wire.isEnabledFor(logging.DEBUG):
            wire.debug("S: %r", line[:300])
        if len(m["n"]) > 9:  # nine digits or fewer (the pattern's) are within range; else as the parser checks
            parse_number(m["n"], "a message number")
        return m

    # --- writing ----------------------------------------------------------------------------------
    def _send(self, data: bytes, more: bool = False) -> None:
        """``more``: the command goes on without waiting for the server, so a compressed connection need
        not flush yet."""
        if self.deflater is not None:
            data = self.deflater.compress(data)
            if not more:
                data += self.deflater.flush()
        self._moved += len(data)
        try:
            self.sock.sendall(data)
        except (OSError, AttributeError) as e:
            raise ConnectionLost(f"connection to {self.host} lost while sending: {e}") from None

    def next_tag(self) -> bytes:
        self._tagn += 1
        return b"M%d" % self._tagn

    @property
    def commands_sent(self) -> int:
        """How many commands this connection has sent: an answer remembered at one count is known to be
        the connection's latest while the count stays."""
        return self._tagn

    def send_command(self, *args, secret: bool = False) -> bytes:
        """Send one command; literals go non-synchronising when LITERAL+ is offered, else wait for "+".

        Returns the tag; the caller collects the completion with :meth:`wait`.
        """
        tag = self.next_tag()
        self._restart_clock()
        plus = b"+" if "LITERAL+" in self.capabilities else b""
        text = [tag]  # the command's text since the last literal (what the wire log shows)
        # What goes to the socket next, as pieces: the text and the literals' own bytes objects (no copy of a
        # body to gather it), sent together once _SEND_GATHER bytes are waiting, so that a MULTIAPPEND of a
        # hundred small messages is a few sends, not three per message.
        out: list = []
        held = 0
        logged = wire.isEnabledFor(logging.DEBUG)
        for a in args:
            if type(a) is bytes:
                text.append(b" " + a)
            elif type(a) is Lit or isinstance(a, Lit):
                text.append(b" {%d%s}\r\n" % (a.size, plus))
                line = b"".join(text)
                if logged:
                    self._log_sent(line, secret)
                out.append(line)
                held += len(line)
                text = []
                if not plus:
                    self._send_pieces(out)
                    out, held = [], 0
                    self._await_continuation(tag)
                data = a.data
                if isinstance(data, Body) and data.in_memory:
                    data = data.read()
                if type(data) is bytes or isinstance(data, bytearray):
                    out.append(data)
                    held += len(data)
                elif self._blocking and self.deflater is None and data.file is not None:
                    # Spooled, to a plain socket: from the page cache by sendfile, never read into Python.
                    self._send_pieces(out, more=True)
                    out, held = [], 0
                    self._send_file(data.file, data.size)
                else:  # spooled to disk: read piece by piece, never whole
                    for chunk in data.chunks(_SEND_GATHER):
                        out.append(chunk)
                        held += len(chunk)
                        if held >= _SEND_GATHER:
                            self._send_pieces(out, more=True)
                            out, held = [], 0
                if held >= _SEND_GATHER:
                    self._send_pieces(out, more=True)
                    out, held = [], 0
            else:
                text.append(b" " + (a if isinstance(a, bytes) else str(a).encode()))
        text.append(b"\r\n")
        line = b"".join(text)
        self._log_sent(line, secret)
        out.append(line)
        self._send_pieces(out)
        return tag

    def _send_file(self, f, size: int) -> None:
        self._moved += size
        offset = 0
        try:
            out, fd = self.sock.fileno(), f.fileno()
            while offset < size:
                sent = os.sendfile(out, fd, offset, size - offset)
                if not sent:
                    raise ConnectionLost(f"a spooled message shrank while it was sent to {self.host}")
                offset += sent
        except OSError as e:
            raise ConnectionLost(f"connection to {self.host} lost while sending: {e}") from None

    def _send_pieces(self, pieces: list, more: bool = False) -> None:
        """Send byte strings as one: a plain socket takes the list as it is (sendmsg gathers it in the kernel,
        where a join would copy every message once more); TLS and compression need them joined."""
        if not pieces:
            return
        sendmsg = self._sendmsg
        if sendmsg is None or self.deflater is not None:
            self._send(pieces[0] if len(pieces) == 1 else b"".join(pieces), more)
            return
        lengths = list(map(len, pieces))
        self._moved += sum(lengths)
        i, n = 0, len(pieces)
        try:
            while i < n:
                batch = pieces[i:i + _IOV_MAX]
                sent = sendmsg(batch)
                if sent == sum(lengths[i:i + _IOV_MAX]):  # all of it, as a blocking socket sends
                    i += len(batch)
                    continue
                for p in batch:  # past what went: a blocking socket sends all but when cut short (a signal)
                    if sent < len(p):
                        pieces[i] = memoryview(p)[sent:]
                        lengths[i] = len(p) - sent
                        break
                    sent -= len(p)
                    i += 1
        except (OSError, AttributeError) as e:
            raise ConnectionLost(f"connection to {self.host} lost while sending: {e}") from None

    def _log_sent(self, buf, secret):
        if wire.isEnabledFor(logging.DEBUG):
            wire.debug("C: %s", "<login data>" if secret else bytes(buf[:200]))

    def _await_continuation(self, tag: bytes) -> Response:
        while True:
            r = self.read_response()
            if r.kind == "continuation":
                return r
            if r.kind == "tagged" and r.tag == tag:
                raise self.error_for(r, "command")
            self._hold(r)
            if r.status == b"BYE":
                raise ConnectionLost(f"{self.host} said BYE: {self.server_text(r)}")

    def wait(self, tag: bytes) -> Response:
        """Read until the tagged completion of ``tag``; untagged responses collect in ``self.untagged``."""
        while True:
            r = self.read_response()
            if r.kind == "tagged":
                if r.tag == tag:
                    return r
                # The completion of an earlier pipelined command nobody waited for: keep it.
                self._done[r.tag] = r
                continue
            if r.kind == "continuation":
                raise ProtocolError(f"{self.host} sent an unexpected continuation")
            if r.status == b"BYE":
                raise ConnectionLost(f"{self.host} said BYE: {self.server_text(r)}")
            self._hold(r)

    def command(self, *args, secret: bool = False) -> Response:
        self.untagged = []
        self._held = 0
        self._done = {}
        return self.wait(self.send_command(*args, secret=secret))

    def pipeline(self, commands: list[tuple]) -> list[tuple[Response, list[Response]]]:
        """Send every command, then collect every completion; untagged responses are handed back in one
        list with the last command (callers of pipelines match them by content, e.g. STATUS names)."""
        return self.pipeline_started(commands)()

    def pipeline_started(self, commands: list[tuple]) -> Callable[[], list[tuple[Response, list[Response]]]]:
        """Send every command now and return the function that collects their completions, as
        :meth:`pipeline` returns them.  Why: a copy reads the next batch from the source while the target
        stores this one (sync/copying.py).  Until that function is called, this connection carries nothing
        else.  The command's deadline runs from the call, not from the send: the time in between was the
        caller's own."""
        self.untagged = []
        self._held = 0
        self._done = {}
        if "pipelining" in self.disabled:
            out = []
            for c in commands:
                out.append(self.wait(self.send_command(*c)))
            results = [(r, self.untagged) for r in out]
            return lambda: results
        tags = [self.send_command(*c) for c in commands]

        def collect() -> list[tuple[Response, list[Response]]]:
            self._restart_clock()
            out = []
            for t in tags:
                r = self._done.pop(t, None) or self.wait(t)
                out.append(r)
            return [(r, self.untagged) for r in out]

        return collect

    # --- helpers ----------------------------------------------------------------------------------
    def _caps_from(self, r: Response) -> None:
        if r.code == b"CAPABILITY":
            self.capabilities = {c.decode("ascii", "replace").upper() for c in r.code_args if isinstance(c, bytes)}
        self.capabilities -= diag.hidden_capabilities(self.disabled)

    def capability(self) -> set[str]:
        r = self.command(b"CAPABILITY")
        self.check(r, "CAPABILITY")
        self._caps_from_answer(r)
        return self.capabilities

    def _caps_from_answer(self, r: Response) -> None:
        """The capabilities a command's answer carried: an untagged CAPABILITY that came with it (held in
        ``self.untagged``), then its completion's CAPABILITY code."""
        for u in self.untagged:
            if u.name == b"CAPABILITY":
                self.capabilities = {c.decode("ascii", "replace").upper() for c in u.data if isinstance(c, bytes)}
        self._caps_from(r)

    def server_text(self, r: Response) -> str:
        """The server's text, printable and without any secret of this connection's login: a server that
        echoes the password or the SASL token in a NO must not put it on screen, in --json or in a report."""
        text = r.text_str()
        for secret in self._secrets:
            if secret and secret in text:
                text = text.replace(secret, "<redacted>")
        return text

    def error_for(self, r: Response, what: str) -> Exception:
        code = r.code.decode("ascii", "replace") if r.code else None
        msg = f"{self.host}: {what} failed: {r.status.decode()} {('[' + code + '] ') if code else ''}{self.server_text(r)}"
        if code in ("OVERQUOTA",):
            return QuotaExceeded(msg)
        if code in ("TOOBIG", "LIMIT"):
            return MessageRejected(msg, code=code)
        low = r.text.lower()
        if code in ("UNAVAILABLE", "INUSE", "SERVERBUG", "THROTTLED") or b"try again" in low or b"throttl" in low:
            # "… try again in 30 seconds", Microsoft 365's "BAD Request is throttled. Suggested Backoff Time:
            # 201317 milliseconds": honour the server's own back-off when it gives one.
            return TemporaryFailure(msg, retry_after=_backoff_hint(low))
        return ServerRefused(msg, code=code, command=what)

    def check(self, r: Response, what: str) -> Response:
        if r.status != b"OK":
            raise self.error_for(r, what)
        return r

    # --- authentication ---------------------------------------------------------------------------
    def login(self, user: str, password: Secret, *, master: str | None = None, mode: str = "plain") -> None:
        """``password`` is a Secret, or an OAuth token source (``stores.oauth.TokenSource``: anything with
        ``token(fresh=)`` and ``mechanism``), which logs in with XOAUTH2 or OAUTHBEARER instead."""
        who = f"{user} (via master user {master})" if master else user
        if not isinstance(password, Secret) and hasattr(password, "token"):
            if master:
                raise ConfigError(f"{self.host}: an OAuth login is the user's own; it takes no master user")
            self._caps_after_login(self._oauth(user, password, who))
            return
        pw = password.reveal()
        self._remember_secret(pw)
        if master is None:
            if "AUTH=PLAIN" in self.capabilities and "LOGINDISABLED" not in self.capabilities:
                r = self._sasl_plain("", user, pw, who)
            else:
                r = self._login(user, pw, who)
        elif mode == "plain":
            r = self._sasl_plain(user, master, pw, who)
        elif mode == "star":
            r = self._login(f"{user}*{master}", pw, who)
        elif mode == "kerio":
            r = self._kerio(user, master, pw, who)
        else:
            raise ConfigError(f"unknown master login mode {mode!r}")
        self._caps_after_login(r)

    def _caps_after_login(self, r: Response) -> None:
        """The capabilities as a login changed them.  A server should send them with the login's completion
        (RFC 9051 7.1, RFC 3501 6.2.2: as its CAPABILITY code or an untagged CAPABILITY), and Dovecot and Cyrus
        do: taken from there, they cost no round trip of their own, a round trip less for every connection
        (a WAN's latency, each time a worker logs in).  Only a server that sent neither (Courier) is asked."""
        if r.code != b"CAPABILITY" and not any(u.name == b"CAPABILITY" for u in self.untagged):
            self.capabilities = set()
            self.capability()
            return
        self._caps_from_answer(r)

    def _remember_secret(self, secret: str) -> None:
        """Every spelling of a secret a server might echo: as sent, and the forms its text would show it in
        (a password that needed quoting arrives escaped, a base64 token whole or split)."""
        for s in (secret, secret.replace("\\", "\\\\").replace('"', '\\"')):
            if s and s not in self._secrets:
                self._secrets.append(s)
        self._secrets.sort(key=len, reverse=True)  # the longest first, so a part never hides the whole

    def _auth_failed(self, r: Response, who: str) -> Exception:
        if r.code in (b"UNAVAILABLE",):
            return TemporaryFailure(f"{self.host}: login as {who} temporarily impossible: {self.server_text(r)}")
        return AuthenticationFailed(f"{self.host}: login as {who} refused: {self.server_text(r)}")

    def _login(self, user: str, pw: str, who: str) -> Response:
        args = []
        for v in (user, pw):
            b = v.encode("utf-8")
            args.append(Lit(b) if needs_literal(b) else quote(b))
        r = self.command(b"LOGIN", *args, secret=True)
        if r.status != b"OK":
            raise self._auth_failed(r, who)
        return r

    def _sasl_plain(self, authzid: str, authcid: str, pw: str, who: str) -> Response:
        token = base64.b64encode(f"{authzid}\0{authcid}\0{pw}".encode("utf-8"))
        self._remember_secret(token.decode("ascii"))
        if "SASL-IR" in self.capabilities:
            r = self.command(b"AUTHENTICATE", b"PLAIN", token, secret=True)
        else:
            self.untagged = []
            self._done = {}
            tag = self.send_command(b"AUTHENTICATE", b"PLAIN")
            self._await_continuation(tag)
            self._send(token + b"\r\n")
            r = self.wait(tag)
        if r.status != b"OK":
            raise self._auth_failed(r, who)
        return r

    def _oauth(self, user: str, source, who: str) -> Response:
        """SASL XOAUTH2 or OAUTHBEARER with a bearer token.  A refusal is answered as the mechanisms want (the
        server's error challenge gets the client's acknowledgement, then the NO), and a token that should have
        been valid is tried once more after a fresh fetch: the provider may have revoked it early."""
        offered = [m for m in ("oauthbearer", "xoauth2") if f"AUTH={m.upper()}" in self.capabilities]
        mech = source.mechanism or (offered[0] if offered else None)
        if mech is None or mech not in offered:
            raise AuthenticationFailed(
                f"{self.host}: login as {who}: the server offers "
                f"{'no OAuth mechanism' if not offered else 'only ' + ', '.join(m.upper() for m in offered)}"
                f"{'' if mech is None else ', not ' + mech.upper()} (its capabilities: "
                f"{' '.join(sorted(c for c in self.capabilities if c.startswith('AUTH=')) or ['no AUTH='])})")
        for attempt in range(2 if getattr(source, "renewable", False) else 1):
            token = source.token(fresh=attempt > 0).reveal()
            payload = base64.b64encode(oauth_initial_response(mech, user, token, self.host, self.port))
            self._remember_secret(token)
            self._remember_secret(payload.decode("ascii"))
            self.untagged = []
            self._done = {}
            if "SASL-IR" in self.capabilities:
                tag = self.send_command(b"AUTHENTICATE", mech.upper().encode(), payload, secret=True)
            else:
                tag = self.send_command(b"AUTHENTICATE", mech.upper().encode())
                self._await_continuation(tag)
                self._send(payload + b"\r\n")
            while True:
                r = self.read_response()
                if r.kind == "continuation":  # the error challenge (JSON with the status); acknowledge it
                    self._send(base64.b64encode(OAUTH_ERROR_ACK[mech]) + b"\r\n")
                    continue
                if r.kind == "tagged" and r.tag == tag:
                    break
                if r.kind == "untagged" and r.status == b"BYE":
                    raise ConnectionLost(f"{self.host} said BYE: {self.server_text(r)}")
                self._hold(r)
            if r.status == b"OK":
                return r
            if r.code in (b"UNAVAILABLE",):
                break
            log.info("%s: OAuth login as %s refused%s", self.host, who,
                     "; trying a fresh token" if attempt == 0 and getattr(source, "renewable", False) else "")
        raise self._auth_failed(r, who)

    def _kerio(self, user: str, master: str, pw: str, who: str) -> Response:
        """Kerio Connect: X-MASTERAUTH (MD5 of challenge + master password), then X-SETUSER."""
        self.untagged = []
        self._done = {}
        tag = self.send_command(b"X-MASTERAUTH")
        cont = self._await_continuation(tag)
        challenge = cont.text.strip()
        import hashlib  # Kerio's master login only: see model.fingerprint_bytes

        self._send(hashlib.md5(challenge + pw.encode("utf-8")).hexdigest().encode() + b"\r\n")
        r = self.wait(tag)
        if r.status != b"OK":
            raise self._auth_failed(r, f"master ({master}) for {user}")
        r = self.command(b"X-SETUSER", quote(user))
        if r.status != b"OK":
            raise self._auth_failed(r, who)
        return r

    # --- streaming FETCH --------------------------------------------------------------------------
    def fetch_stream(self, commands: list[tuple], window: int = 3, *, max_items: int | None = None,
                     shape: str | None = None) -> Iterator:
        """Send FETCH commands with up to ``window`` outstanding and yield each untagged FETCH as it
        arrives; other untagged responses are kept in ``self.untagged``.  ``max_items``: more FETCH
        responses than this (a listing that never ends) fail the command instead of growing the caller's
        list without limit.

        ``shape``: what the commands fetch, so that a response of the commonest shape is yielded without a
        Response: ``"body"`` (UID FLAGS INTERNALDATE BODY.PEEK[]) as ``(match of BODY_FETCH_HEAD, literal)``,
        ``"listing"`` (UID FLAGS INTERNALDATE RFC822.SIZE) as the match of LISTING_FETCH."""
        self.untagged = []
        self._held = 0
        self._done = {}
        items = 0
        if "pipelining" in self.disabled:
            window = 1
        pending: list[bytes] = []
        it = iter(commands)
        for c in it:
            pending.append(self.send_command(*c))
            if len(pending) >= window:
                break
        read = {"body": self._read_body_fetch, "listing": self._read_listing_line}.get(shape, self.read_response)
        while pending:
            r = read()
            if type(r) is not Response or (r.kind == "untagged" and r.name == b"FETCH"):
                items += 1
                if max_items is not None and items > max_items:
                    self._abandon()
                    raise ResponseTooLarge(f"{self.host} sent more than {max_items} FETCH responses where the "
                                           "mailbox announced fewer messages; giving up on this connection")
                yield r
                continue
            if r.kind == "tagged":
                if r.tag not in pending:
                    self._done[r.tag] = r
                    continue
                pending.remove(r.tag)
                if r.status != b"OK":
                    raise self.error_for(r, "FETCH")
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(self.send_command(*nxt))
                continue
            if r.status == b"BYE":
                raise ConnectionLost(f"{self.host} said BYE: {self.server_text(r)}")
            self._hold(r)
