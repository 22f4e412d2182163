"""COMPRESS=DEFLATE (RFC 4978): a raw deflate stream in each direction of an IMAP connection.

Why: a migration that pulls mail from a server across the internet is bound by the link, and mail
deflates well (text a lot; attachments, base64 of mostly compressed files, still lose the base64 overhead):
on the benchmark corpus half of the bytes go, and a copy over 20 Mbit/s takes about half the time
(docs/benchmarks.md). On a LAN or loopback the link is faster than deflate, so compression would only burn CPU on
both ends; hence ``auto`` (the default) compresses only towards a peer outside loopback, private and
link-local addresses, and ``yes``/``no`` let the user decide (``?compress=`` on the IMAP URL).

How it fits the connection: the server compresses everything after the CRLF of its tagged OK; we
compress everything we send after seeing it. Our side uses ``Z_SYNC_FLUSH`` whenever the connection is
about to wait for the server (end of a command, before a synchronising literal), so a pipelined or
non-synchronising command is still sent whole and the server never waits for bytes stuck in our
compressor, while the chunks of one large literal go through the compressor without a flush each.
Incoming data is inflated below the connection's buffered reader, so literals are still read (and
spooled to disk) piece by piece: a large message is never held whole in memory.

Compression starts after login, so no password is ever inside a compressed stream (compressed lengths under
TLS let someone who can mix chosen text into a stream guess secrets that travel in the same stream).

Level 1 for what we send: on the benchmark corpus it compresses 52 MiB/s against level 6's 30 MiB/s for
0.52 against 0.49 of the size (docs/benchmarks.md); the servers pick their own level for what they send.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import zlib

from ..errors import ConfigError, ConnectionLost

log = logging.getLogger("mailmigrate.imap")

MODES = ("auto", "yes", "no")
LEVEL = 1
CAPABILITY = "COMPRESS=DEFLATE"


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"compress must be auto, yes or no, not {mode!r}")
    return mode


def link_is_local(address: str) -> bool:
    """Loopback, private (RFC 1918, ULA) and link-local peers are taken to sit on a fast network."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_private or ip.is_link_local


class Deflater:
    """Our direction: bytes in, compressed bytes out; a sync flush marks where the server may act."""

    def __init__(self, level: int = LEVEL):
        self._z = zlib.compressobj(level, zlib.DEFLATED, -15)
        self.plain = 0
        self.wire = 0

    def compress(self, data: bytes) -> bytes:
        self.plain += len(data)
        out = self._z.compress(data)
        self.wire += len(out)
        return out

    def flush(self) -> bytes:
        out = self._z.flush(zlib.Z_SYNC_FLUSH)
        self.wire += len(out)
        return out


class InflatingReader(io.RawIOBase):
    """The server's direction as a raw stream for ``io.BufferedReader``: reads the connection's previous
    reader, inflates into the caller's buffer, never more than that buffer holds (the rest waits in zlib's
    unconsumed tail).

    Reading through the previous reader rather than the socket is what makes the switch safe without a
    round trip: whatever it had already buffered beyond the OK line is compressed data and comes first."""

    def __init__(self, source, host: str):
        super().__init__()
        self._src = source
        self._z = zlib.decompressobj(-15)
        self._host = host
        self.plain = 0
        self.wire = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        room = len(b)
        if room == 0:
            return 0
        while True:
            if self._z.unconsumed_tail:
                data = self._inflate(self._z.unconsumed_tail, room)
            else:
                if self._z.eof:
                    return 0
                chunk = self._src.read1(1 << 16)
                if not chunk:
                    return 0
                self.wire += len(chunk)
                data = self._inflate(chunk, room)
            if data:
                n = len(data)
                b[:n] = data
                self.plain += n
                return n

    def close(self) -> None:
        if not self.closed:
            self._src.close()  # releases its hold on the socket; the connection closes the socket itself
        super().close()

    def _inflate(self, data: bytes, room: int) -> bytes:
        try:
            return self._z.decompress(data, room)
        except zlib.error as e:
            raise ConnectionLost(f"{self._host} sent a damaged compressed stream ({e})") from None


def wanted(mode: str, peer: str, capabilities: set[str]) -> bool:
    if mode == "no" or CAPABILITY not in capabilities:
        return False
    return mode == "yes" or not link_is_local(peer)


def start(conn, mode: str = "auto") -> bool:
    """Negotiate compression on a logged-in connection when ``mode`` and the server allow it; says
    whether the connection is now compressed. A server that refuses is used uncompressed."""
    if conn.sock is None:
        return False
    try:
        peer = conn.sock.getpeername()[0]
    except OSError:
        peer = ""
    if not wanted(mode, peer, conn.capabilities):
        if mode == "yes" and CAPABILITY not in conn.capabilities:
            log.info("%s does not offer COMPRESS=DEFLATE; going on uncompressed", conn.host)
        return False
    r = conn.command(b"COMPRESS", b"DEFLATE")
    if r.status != b"OK":
        log.info("%s refused COMPRESS DEFLATE (%s); going on uncompressed", conn.host, r.text_str())
        return False
    # Both directions are compressed from the byte after the OK line on.
    conn.deflater = Deflater()
    conn.inflater = InflatingReader(conn.rfile, conn.host)
    conn.rfile = io.BufferedReader(conn.inflater, 1 << 16)
    log.debug("%s: COMPRESS=DEFLATE active", conn.host)
    return True

