"""SHA-crypt without Python's crypt module (removed in 3.13): the e-smith writer hashes SME shadow passwords
with it, and the strings must be the ones the C library (and so Dovecot, shadow, SME) computes."""

import random
import warnings

import pytest
from hypothesis import given, settings, strategies as st

from mailmigrate.formats import shacrypt

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import crypt as libc_crypt
    except ImportError:  # Python 3.13+: only the published vectors below
        libc_crypt = None


def test_published_vectors():
    # "Unix crypt using SHA-256 and SHA-512" (Drepper), test vectors section; the $5$ one as libxcrypt prints it
    assert shacrypt.crypt("Hello world!", "$6$saltstring") == (
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1")
    assert shacrypt.crypt("Hello world!", "$6$rounds=10000$saltstringsaltstring") == (
        "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9"
        "qs/y3RnOaw5v.")


@pytest.mark.skipif(libc_crypt is None, reason="this Python has no crypt module to compare with")
@settings(max_examples=60, deadline=None)
# C strings end at NUL, and a lone surrogate has no UTF-8 bytes to give the C library (test_lone_surrogate)
@given(password=st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=80),
        salt=st.text(alphabet=shacrypt._ALPHABET, max_size=20),
       variant=st.sampled_from("56"), rounds=st.one_of(st.none(), st.integers(1000, 1400)))
def test_equals_the_c_library(password, salt, variant, rounds):
    setting = f"${variant}$" + (f"rounds={rounds}$" if rounds else "") + salt
    assert shacrypt.crypt(password, setting) == libc_crypt.crypt(password, setting)


def test_make_and_verify():
    h = shacrypt.make("correct horse")
    assert h.startswith("$6$") and len(h.split("$")[2]) == 16
    assert shacrypt.verify("correct horse", h)
    assert not shacrypt.verify("wrong horse", h)
    assert not shacrypt.verify("x", "{SSHA}abc")
    assert shacrypt.make("a") != shacrypt.make("a")  # a fresh salt each time


def test_refuses_other_settings():
    for bad in ("", "$1$abc", "$6", "$6$rounds=x$s", "$7$s"):
        with pytest.raises(ValueError):
            shacrypt.crypt("pw", bad)


def test_lone_surrogate():
    """Found by Hypothesis: a lone surrogate was an uncaught UnicodeEncodeError; now a ValueError saying why,
    while bytes decoded with surrogateescape (os.fsdecode) hash as those bytes."""
    with pytest.raises(ValueError, match="lone surrogate"):
        shacrypt.crypt("\ud800", "$6$salt")
    assert shacrypt.crypt(b"\xff".decode("utf-8", "surrogateescape"), "$6$salt") == shacrypt.crypt(b"\xff", "$6$salt")
