"""Content identity: the fingerprints and the multiset match that crash recovery stands on."""

import pytest
from hypothesis import given, settings, strategies as st

from mailmigrate.model import Body
from mailmigrate.sync import matching
from mailmigrate.sync.matching import Fingerprinter, fingerprints, match_multiset
import hashlib


def _norm(b: bytes) -> bytes:
    """What a rewriting server stores: CRLF line ends, NUL as 0x80 (what Dovecot serves), and (Cyrus's
    munge8bit) 8-bit header bytes as "X"."""
    import re

    b = b.replace(b"\0", b"\x80")
    b = b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    end = b.find(b"\r\n\r\n")
    end = len(b) if end < 0 else end
    return re.sub(rb"[\x80-\xff]", b"X", b[:end]) + b[end:]


def _fingerprint_in_pieces(data: bytes, cuts) -> tuple:
    """The fingerprints of ``data`` fed in pieces of the lengths ``cuts``, then the rest."""
    fp = Fingerprinter()
    pos = 0
    for c in cuts:
        fp.update(data[pos:pos + c])
        pos += c
    fp.update(data[pos:])
    return fp.result()


@given(st.binary(max_size=400), st.lists(st.integers(min_value=1, max_value=50), max_size=10))
def test_fingerprint_is_independent_of_chunking(data, cuts):
    """However the bytes arrive (a 1-byte chunk, a split CR/LF), the fingerprints are the same."""
    exact, norm = _fingerprint_in_pieces(data, cuts)
    assert exact == hashlib.sha256(data).hexdigest()
    if _norm(data) == data:
        assert norm is None
    else:
        assert norm == hashlib.sha256(_norm(data)).hexdigest()


@pytest.mark.parametrize("finder", ["counts", "scan"])
@given(pieces=st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"\r\r\n", b"a", b"\0", b"\xe9"]), max_size=60),
       cuts=st.lists(st.integers(min_value=1, max_value=20), max_size=10))
def test_line_endings_are_told_apart_however_they_are_mixed_and_cut(finder, pieces, cuts):
    """Bytes made mostly of line-ending material (bare CRs before bare LFs, CR CR LF, a chunk ending in CR):
    a bare LF anywhere gives the normalised fingerprint, CRLF alone never does. Both ways of finding a bare LF:
    the compiled helper's counts (mailmigrate[speed], which the test extra installs) and the regex scan used
    without it."""
    chosen = matching._bare_lf
    if finder == "scan":
        matching._bare_lf = matching._bare_lf_by_scan
    else:
        assert matching._bare_lf is not matching._bare_lf_by_scan, "stringzilla is not installed"
    try:
        data = b"".join(pieces)
        exact, norm = _fingerprint_in_pieces(data, cuts)
    finally:
        matching._bare_lf = chosen
    assert exact == hashlib.sha256(data).hexdigest()
    assert norm == (None if _norm(data) == data else hashlib.sha256(_norm(data)).hexdigest())


@pytest.mark.parametrize("finder", ["counts", "scan"])
@given(head=st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"\0", b"\xe9", b": "]), max_size=30),
       blank=st.booleans(),
       body=st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"\0", b"\xe9"]), max_size=30))
def test_a_whole_body_in_memory_has_the_fingerprints_of_its_stream(finder, head, blank, body):
    """A body in memory is fingerprinted in one piece, with a shortcut for mail that needs no normalising; its
    fingerprints are those of the same bytes read as a stream, whatever line endings, NULs and 8-bit bytes are
    in the header or after it, with or without an empty line between them."""
    chosen = matching._bare_lf
    if finder == "scan":
        matching._bare_lf = matching._bare_lf_by_scan
    try:
        data = b"".join(head) + (b"\r\n\r\n" if blank else b"") + b"".join(body)
        whole = fingerprints(Body.from_bytes(data))
    finally:
        matching._bare_lf = chosen
    assert whole == _fingerprint_in_pieces(data, [1, 2, 3])
    assert whole[0] == hashlib.sha256(data).hexdigest()
    assert whole[1] == (None if _norm(data) == data else hashlib.sha256(_norm(data)).hexdigest())


def test_crlf_rewriting_server_still_matches():
    """A server that turns bare LF into CRLF stores other bytes; the normalised fingerprint finds it."""
    original = b"Subject: x\n\nbody\n"
    stored = _norm(original)
    fp, nfp = fingerprints(Body.from_bytes(original))
    sfp, snfp = fingerprints(Body.from_bytes(stored))
    assert fp != sfp and nfp == sfp and snfp is None
    assert match_multiset([("src1", fp, nfp)], [("77", sfp, snfp)]) == {"src1": "77"}


def test_twins_claim_distinct_copies():
    """Two identical source messages need two target copies: one copy never satisfies both."""
    got = match_multiset([("a", "F", None), ("b", "F", None)], [("10", "F", None)])
    assert len(got) == 1
    got = match_multiset([("a", "F", None), ("b", "F", None)], [("10", "F", None), ("11", "F", None)])
    assert sorted(got.values()) == ["10", "11"]


def test_lowest_candidate_is_claimed_first():
    got = match_multiset([("a", "F", None)], [("5", "F", None), ("9", "F", None)])
    assert got == {"a": "5"}


def test_exact_match_preferred_over_normalised():
    """An exact copy is claimed by the row it belongs to before a CRLF variant can steal it."""
    bare = b"a\nb\n"
    crlf = b"a\r\nb\r\n"
    fb, nb = fingerprints(Body.from_bytes(bare))
    fc, nc = fingerprints(Body.from_bytes(crlf))
    got = match_multiset([("bare", fb, nb), ("crlf", fc, nc)], [("1", fc, nc), ("2", fb, nb)])
    assert got == {"bare": "2", "crlf": "1"}


def test_rewrite_proof_fingerprint_finds_what_cyrus_munge8bit_stores():
    """Cyrus rewrites each raw 8-bit header byte to "X" (munge8bit): the normalised fingerprint of the
    original is the exact fingerprint of what Cyrus stores, in whatever chunks the bytes arrive; the body's
    8-bit bytes are not touched."""
    import re
    from hypothesis import given, settings, strategies as st

    from mailmigrate.sync.matching import Fingerprinter

    def fp(data: bytes, cuts) -> tuple:
        f = Fingerprinter()
        last = 0
        for c in sorted(set(cuts)):
            f.update(data[last:c])
            last = c
        f.update(data[last:])
        return f.result()

    def munged(data: bytes) -> bytes:
        data = data.replace(b"\0", b"\x80")  # and Dovecot serves a NUL as 0x80 (Cyrus refuses NUL)
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        end = data.find(b"\r\n\r\n")
        end = len(data) if end < 0 else end
        return re.sub(rb"[\x80-\xff]", b"X", data[:end]) + data[end:]

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=60), st.binary(max_size=60), st.lists(st.integers(0, 130), max_size=6))
    def check(head, body, cuts):
        data = head.replace(b"\r\n\r\n", b"") + b"\r\n\r\n" + body
        exact, norm = fp(data, cuts)
        assert (exact, norm) == fp(data, [])
        target_exact, _ = fp(munged(data), [])
        assert (norm or exact) == target_exact

    check()
    plain = b"Subject: ascii\r\n\r\nbody \xff\r\n"
    assert fp(plain, [])[1] is None  # 8-bit bytes only in the body: nothing to normalise


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=2000, max_size=12000), st.integers(min_value=1, max_value=6000))
def test_large_messages_hash_as_a_whole(data, cut):
    """Bodies beyond hashlib's lock let-go size are fed in pieces; the fingerprint is still the whole's."""
    exact, norm = _fingerprint_in_pieces(data, [cut])
    assert exact == hashlib.sha256(data).hexdigest()
    assert norm == (None if _norm(data) == data else hashlib.sha256(_norm(data)).hexdigest())
