"""Recognising copies by content.

Used in three places, always for the same reason — the key a store handed out can no longer be trusted,
but the bytes can:
  * after a crash between APPEND and the state update (PENDING rows);
  * on a target without UIDPLUS, where APPEND does not say which UID it made;
  * after a UIDVALIDITY change on either side.

Matching is a multiset match: two identical messages are two rows and need two distinct copies, so each
candidate is claimed at most once.

Some servers rewrite what they are given: bare LF line endings become CRLF (most), raw 8-bit bytes in the
header block become "X" (Cyrus's ``munge8bit``, on by default), and NUL bytes are served as 0x80 (Dovecot, without
BINARY; tests/contract).  Rows whose bytes contain a bare LF, a NUL or an 8-bit header byte also
carry a *normalised* fingerprint (every line ending as CRLF, every NUL as 0x80, every 8-bit header byte as
"X"): what such a server stores hashes to it, so recovery and adoption find the rewritten copy when the exact
fingerprint finds nothing.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator

from ..model import Body, fingerprint_bytes


_HIGH = bytes(range(0x80, 0x100))
_MUNGE = bytes.maketrans(_HIGH, b"X" * len(_HIGH))

# A line feed with no carriage return before it. Found by the regex engine's scan for its first byte (a
# literal) with the look-behind tried only at each "\n": 2.4x faster than comparing the counts of "\n" and
# "\r\n" with bytes.count, which had been the biggest single item of the copy's CPU (two passes over every byte).
_BARE_LF = re.compile(rb"\n(?<!\r\n)")


def _bare_lf_by_scan(data: bytes) -> bool:
    return _BARE_LF.search(data) is not None


try:
    # The optional compiled helper (``mailmigrate[speed]``, StringZilla) counts "\n" and "\r\n" with SIMD
    # instructions, which brought the corpus's fingerprints from about 80 to 65 ms (bench/paths.py). A "\r\n"
    # cannot overlap another and holds one "\n": the counts differ exactly where a "\n" has no "\r" before it.
    from stringzilla import count as _count
except ImportError:  # pragma: no cover - the test extra installs it; the scan is tested on its own
    _bare_lf = _bare_lf_by_scan
else:
    def _bare_lf(data: bytes) -> bool:
        return _count(data, b"\n") != _count(data, b"\r\n")


# Each chunk is hashed in one call, and hashlib lets go of the interpreter lock while it hashes (2,048 bytes or
# more), so another folder's thread runs meanwhile. Fed in pieces under that size instead, to spare the threads
# the hand-over, a copy of the bench corpus with three folders at once had taken 6 % less CPU on one machine; on
# another (an EPYC whose system calls cost more), two A/Bs gave the opposite, 4 and 7.5 % more, with the 30,000
# calls the pieces make per corpus instead of 3,900 (docs/benchmarks.md, fifth pass).


class Fingerprinter:
    """SHA-256 of the exact bytes, plus of the normalised bytes (CRLF line ends, 8-bit header bytes as "X")
    when they differ, in one pass.

    Most mail needs no normalising, and then the normalised stream is the exact one: it is not hashed a
    second time (SHA-256 was a fifth of the client's CPU in a copy). The second hash starts, as a copy of
    the first, at the first chunk whose normalised bytes differ."""

    __slots__ = ("_exact", "_norm", "_carry_cr", "_in_header", "_tail", "_out")

    def __init__(self):
        import hashlib  # here, with the first message hashed: see model.fingerprint_bytes (~0.1 us a message)

        self._exact = hashlib.sha256()
        self._norm = None  # a hash of its own once the normalised stream has departed from the exact one
        self._carry_cr = False  # the previous chunk ended in "\r"
        self._in_header = True  # the normalised stream has not reached its first empty line yet
        self._tail = b""  # the normalised stream's last three bytes, to see "\r\n\r\n" across chunks
        self._out: list[bytes] = []  # this chunk's normalised bytes

    def _norm_update(self, data: bytes) -> bool:
        """Queue ``data``'s normalised bytes; True if the header munging changed them."""
        changed = False
        if self._in_header and data:
            seen = self._tail + data
            end = seen.find(b"\r\n\r\n")
            cut = len(data) if end < 0 else max(0, end + 4 - len(self._tail))
            head = data[:cut]
            if not head.isascii():  # an 8-bit header byte: munged (most headers are ASCII, and no copy is made)
                changed = True
                data = head.translate(_MUNGE) + data[cut:]
            if end >= 0:
                self._in_header = False
            self._tail = seen[-3:]
        self._out.append(data)
        return changed

    def update(self, chunk: bytes) -> None:
        if not chunk:
            return
        differs = False
        self._out = out = []
        data = chunk
        if self._carry_cr:
            if data[:1] == b"\n":
                data = data[1:]
                self._norm_update(b"\n")
            # a lone "\r" stays a lone "\r": it is not a line ending
        self._carry_cr = data.endswith(b"\r")
        body = data[:-1] if self._carry_cr else data
        if b"\0" in body:  # Dovecot serves each NUL as 0x80 (same size): normalised that way
            differs = True
            body = body.replace(b"\0", b"\x80")
        if _bare_lf(body):
            differs = True
            body = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        differs = self._norm_update(body) or differs
        if self._carry_cr:
            self._norm_update(b"\r")
        if self._norm is None:
            if not differs:
                self._exact.update(chunk)  # identical so far: the exact hash stands for both
                return
            self._norm = self._exact.copy()
        self._exact.update(chunk)
        for piece in out:
            self._norm.update(piece)

    def result(self) -> tuple[str, str | None]:
        exact = self._exact.hexdigest()
        return exact, (self._norm.hexdigest() if self._norm is not None else None)


def _needs_no_normalising(data: bytes) -> bool:
    """True when the normalised bytes of a whole message are the bytes themselves: no NUL, no bare LF, and an
    ASCII header block (up to and with the first empty line; all of it when there is none)."""
    if b"\0" in data or _bare_lf(data):
        return False
    if data.isascii():
        return True
    end = data.find(b"\r\n\r\n")
    return end >= 0 and data[:end].isascii()


def fingerprints(body: Body) -> tuple[str, str | None]:
    """A body's exact and normalised fingerprints (see :class:`Fingerprinter`).

    A body held in memory is one piece, and most mail needs no normalising: then one SHA-256 and three
    C-level scans decide it, without the chunk-by-chunk bookkeeping a stream needs (some 5–10 % of the
    fingerprints' CPU over the bench corpus). Any other body goes through :class:`Fingerprinter`."""
    if body.in_memory:
        data = body.read()
        if _needs_no_normalising(data):
            return fingerprint_bytes(data), None
    fp = Fingerprinter()
    for chunk in body.chunks():
        fp.update(chunk)
    return fp.result()


def match_multiset(
    wanted: Iterable[tuple[str, str, str | None]],
    candidates: Iterable[tuple[str, str, str | None]],
) -> dict[str, str]:
    """Pair each wanted (id, fp, norm_fp) with a distinct candidate (key, fp, norm_fp) of equal content.

    Exact fingerprints are matched first; normalised ones only for what is left.  Candidates are taken in
    the order given (lowest UID first), so the oldest copy is claimed first and results are repeatable.
    """
    by_exact: dict[str, list[str]] = defaultdict(list)
    by_norm: dict[str, list[str]] = defaultdict(list)
    cand_norm: dict[str, str] = {}
    for key, fp, nfp in candidates:
        by_exact[fp].append(key)
        n = nfp or fp
        by_norm[n].append(key)
        cand_norm[key] = n
    taken: set[str] = set()
    result: dict[str, str] = {}
    left = []
    for wid, fp, nfp in wanted:
        key = _take(by_exact.get(fp), taken)
        if key is None:
            left.append((wid, fp, nfp))
        else:
            result[wid] = key
    for wid, fp, nfp in left:
        key = _take(by_norm.get(nfp or fp), taken)
        if key is not None:
            result[wid] = key
    return result


def _take(keys: list[str] | None, taken: set[str]) -> str | None:
    if not keys:
        return None
    while keys:
        k = keys.pop(0)
        if k not in taken:
            taken.add(k)
            return k
    return None


def hash_messages(stream: Iterator) -> Iterator[tuple[str, str, str | None]]:
    """(key, fp, norm_fp) for each (meta, body) a store's fetch yields; bodies are closed after hashing."""
    for meta, body in stream:
        try:
            fp, nfp = fingerprints(body)
        finally:
            body.close()
        yield meta.key, fp, nfp


def match_rows(store, path, cands, rows) -> dict[str, str]:
    """Source key -> key in ``store`` for each state row whose content is among ``cands`` (metas).

    Recovery and both re-matchings must pair rows with messages the same way: candidates hashed in the
    order the store listed them (lowest UID first, so the oldest copy is claimed), rows in source-key
    order, so that a rerun on the same folder makes the same pairs.
    """
    hashed = list(hash_messages(store.fetch(path, [m.key for m in cands])))
    order = {m.key: i for i, m in enumerate(cands)}
    hashed.sort(key=lambda t: order.get(t[0], 0))
    return match_multiset(
        ((r.source_key, r.fingerprint, r.norm_fingerprint) for r in sorted(rows, key=lambda r: r.source_key)),
        hashed,
    )
