"""SHA-256-crypt and SHA-512-crypt (``$5$`` / ``$6$``), the crypt(3) strings of glibc, shadow and Dovecot.

Python's ``crypt`` module, the only standard way to make such a string, was removed in Python 3.13
(PEP 594), and the e-smith writer must still hash a clear password the way SME Server's shadow file holds
it.  The algorithm is public (Ulrich Drepper, "Unix crypt using SHA-256 and SHA-512", 2007) and small, so
it lives here rather than in a dependency; the tests compare it with the C library's crypt where Python
still has the module.  Bytes in, a string out: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ROUNDS_DEFAULT = 5000
ROUNDS_MIN = 1000
ROUNDS_MAX = 999_999_999
SALT_MAX = 16

# Which digest bytes make each group of four output characters (the spec's byte permutation), and the
# short last group: its bytes (None for a zero byte) and how many characters it gives.
_ORDER = {
    "5": ([(0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14), (15, 25, 5), (6, 16, 26),
           (27, 7, 17), (18, 28, 8), (9, 19, 29)], (None, 31, 30, 3), "sha256"),
    "6": ([(0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48),
           (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13),
           (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19), (62, 20, 41)],
          (None, None, 63, 2), "sha512"),
}


def _repeat(block: bytes, length: int) -> bytes:
    return (block * (length // len(block) + 1))[:length]


def _encode(digest: bytes, variant: str) -> str:
    groups, tail, _ = _ORDER[variant]
    out = []
    for *picks, n in [(*g, 4) for g in groups] + [tail]:
        w = 0
        for i in picks:
            w = (w << 8) | (digest[i] if i is not None else 0)
        for _ in range(n):
            out.append(_ALPHABET[w & 0x3F])
            w >>= 6
    return "".join(out)


def _digest(key: bytes, salt: bytes, rounds: int, variant: str) -> bytes:
    h = getattr(hashlib, _ORDER[variant][2])
    size = h().digest_size
    b = h(key + salt + key).digest()
    a = h(key + salt + _repeat(b, len(key)))
    n = len(key)
    while n:
        a.update(b if n & 1 else key)
        n >>= 1
    c = a.digest()
    p = _repeat(h(key * len(key)).digest(), len(key))
    s = _repeat(h(salt * (16 + c[0])).digest(), len(salt))
    for i in range(rounds):
        ctx = h(p if i & 1 else c)
        if i % 3:
            ctx.update(s)
        if i % 7:
            ctx.update(p)
        ctx.update(c if i & 1 else p)
        c = ctx.digest()
    assert len(c) == size
    return c


def _parse_setting(setting: str) -> tuple[str, str, int, bool]:
    """(variant, salt, rounds, rounds_given) from ``$6$[rounds=N$]salt[$...]``."""
    if len(setting) < 3 or setting[0] != "$" or setting[1] not in _ORDER or setting[2] != "$":
        raise ValueError("not a $5$ or $6$ crypt setting")
    variant, rest = setting[1], setting[3:]
    rounds, given = ROUNDS_DEFAULT, False
    if rest.startswith("rounds="):
        num, sep, rest = rest[len("rounds="):].partition("$")
        if not sep or not num.isdigit():
            raise ValueError("bad rounds= in crypt setting")
        rounds, given = min(max(int(num), ROUNDS_MIN), ROUNDS_MAX), True
    salt = rest.split("$", 1)[0][:SALT_MAX]
    return variant, salt, rounds, given


def crypt(password: str | bytes, setting: str) -> str:
    """The crypt(3) string of ``password`` for a ``$5$``/``$6$`` setting (a salt, or a whole hash)."""
    variant, salt, rounds, given = _parse_setting(setting)
    try:
        # surrogateescape: a password read as bytes and decoded the way the OS decodes names goes back to
        # those bytes; a lone surrogate of any other kind has no bytes at all
        key = password.encode("utf-8", "surrogateescape") if isinstance(password, str) else password
    except UnicodeEncodeError:
        raise ValueError("a crypt(3) password must be text that has bytes (it holds a lone surrogate)") from None
    if b"\0" in key:
        raise ValueError("a crypt(3) password cannot hold a NUL byte")
    digest = _digest(key, salt.encode("ascii"), rounds, variant)
    head = f"${variant}$" + (f"rounds={rounds}$" if given else "")
    return f"{head}{salt}${_encode(digest, variant)}"


def make(password: str | bytes, variant: str = "6", rounds: int | None = None) -> str:
    """A new hash with a random 16-character salt (what glibc's ``crypt.mksalt`` gives)."""
    salt = "".join(secrets.choice(_ALPHABET) for _ in range(SALT_MAX))
    head = f"${variant}$" + (f"rounds={rounds}$" if rounds is not None else "")
    return crypt(password, head + salt)


def verify(password: str | bytes, hashed: str) -> bool:
    try:
        return hmac.compare_digest(crypt(password, hashed), hashed)
    except ValueError:
        return False
