"""Content identity: the fingerprints and the multiset match that crash recovery stands on."""

from hypothesis import given, strategies as st

from mailmigrate.model import Body
from mailmigrate.sync.matching import Fingerprinter, fingerprints, match_multiset
import hashlib


def _norm(b: bytes) -> bytes:
    return b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@given(st.binary(max_size=400), st.lists(st.integers(min_value=1, max_value=50), max_size=10))
def test_fingerprint_is_independent_of_chunking(data, cuts):
    """However the bytes arrive (a 1-byte chunk, a split CR/LF), the fingerprints are the same."""
    fp = Fingerprinter()
    pos = 0
    for c in cuts:
        fp.update(data[pos:pos + c])
        pos += c
    fp.update(data[pos:])
    exact, norm = fp.result()
    assert exact == hashlib.sha256(data).hexdigest()
    if _norm(data) == data:
        assert norm is None
    else:
        assert norm == hashlib.sha256(_norm(data)).hexdigest()


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
