"""Password schemes: which stored hash one directory can hand to another unchanged, and hashing clear text.

Readers name schemes in Dovecot's vocabulary, the richest of the systems involved, so that one name means
one format everywhere: ``SSHA``, ``SHA``, ``SSHA256``, ``SSHA512``, ``LDAP-MD5`` (base64 MD5, which LDAP
calls ``{MD5}``), ``MD5-CRYPT`` (which Dovecot calls ``{MD5}``), ``SHA512-CRYPT``, ``SHA256-CRYPT``,
``BLF-CRYPT``, ``DES-CRYPT`` and the generic ``CRYPT``.

All ``*-CRYPT`` schemes and ``CRYPT`` are the same thing on disk: a crypt(3) string whose own prefix
(``$6$``, ``$2y$``...) says the algorithm.  So a hash from /etc/shadow or a ``{SHA512-CRYPT}`` passwd-file
line can go into LDAP as ``{CRYPT}`` and back without anyone knowing the password.  This is the only
translation made; nothing here guesses.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import string

from ..model import Secret
from .base import Password, PasswordHash

CRYPT_SCHEMES = frozenset({"CRYPT", "DES-CRYPT", "MD5-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT", "BLF-CRYPT"})

#: Names other systems use for a scheme, mapped to ours (per source vocabulary).
LDAP_NAMES = {"MD5": "LDAP-MD5", "SMD5": "SMD5"}
DOVECOT_NAMES = {"MD5": "MD5-CRYPT", "PLAIN-MD5": "PLAIN-MD5", "LDAP-MD5": "LDAP-MD5"}


def crypt_variant(value: str) -> str:
    """The specific ``*-CRYPT`` name of a crypt(3) string, from its prefix."""
    if value.startswith("$6$"):
        return "SHA512-CRYPT"
    if value.startswith("$5$"):
        return "SHA256-CRYPT"
    if value.startswith("$1$"):
        return "MD5-CRYPT"
    if value[:4] in ("$2a$", "$2b$", "$2y$"):
        return "BLF-CRYPT"
    if value.startswith("$"):
        return "CRYPT"  # yescrypt ($y$), gost-yescrypt...: only the generic name fits
    return "DES-CRYPT"


def from_ldap(text: str) -> Password:
    """A userPassword value: ``{SCHEME}hash`` in LDAP's naming, or clear text (slapd stores it if given)."""
    h = PasswordHash.parse(text)
    if h is None:
        return Secret(text) if text else None
    return PasswordHash(LDAP_NAMES.get(h.scheme, h.scheme), h.value)


def to_ldap(h: PasswordHash) -> str:
    if h.scheme in CRYPT_SCHEMES:
        return "{CRYPT}" + h.value.reveal()
    if h.scheme == "LDAP-MD5":
        return "{MD5}" + h.value.reveal()
    return h.tagged()


def from_dovecot(text: str) -> Password:
    """A passwd-file password field: ``{SCHEME}hash`` in Dovecot's naming; bare text is Dovecot's default, CRYPT."""
    if not text:
        return None
    h = PasswordHash.parse(text)
    if h is None:
        if text.endswith("[13]"):
            text = text[:-4]
        elif text.endswith("[34]"):
            return PasswordHash("MD5-CRYPT", Secret(text[:-4]))
        return PasswordHash("CRYPT", Secret(text))
    if h.scheme in ("PLAIN", "CLEARTEXT", "CLEAR"):
        return h.value
    return PasswordHash(DOVECOT_NAMES.get(h.scheme, h.scheme), h.value)


def from_crypt(value: str) -> Password:
    """A crypt(3) string from /etc/shadow (lock markers already removed)."""
    return PasswordHash("CRYPT", Secret(value)) if value else None


def adapt(password: Password, accepted: frozenset[str] | set[str]) -> PasswordHash | None:
    """The same hash under a scheme name in ``accepted``, or None when the target cannot take it as is."""
    if not isinstance(password, PasswordHash):
        return None
    s = password.scheme.upper()
    if s in accepted:
        return password
    if s in CRYPT_SCHEMES:
        specific = crypt_variant(password.value.reveal())
        for name in (specific, "CRYPT"):
            if name in accepted:
                return PasswordHash(name, password.value)
    return None


# -- hashing clear text (so a target never stores a clear password we give it) -------------------------


def ssha(clear: Secret) -> PasswordHash:
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(clear.reveal().encode() + salt).digest()
    return PasswordHash("SSHA", Secret(base64.b64encode(digest + salt).decode()))


def ssha512(clear: Secret) -> PasswordHash:
    salt = secrets.token_bytes(16)
    digest = hashlib.sha512(clear.reveal().encode() + salt).digest()
    return PasswordHash("SSHA512", Secret(base64.b64encode(digest + salt).decode()))


def verify(clear: Secret, stored: Password) -> bool | None:
    """Whether ``clear`` is the password behind ``stored``; None when this scheme cannot be checked here."""
    if isinstance(stored, Secret):
        return stored == clear
    if not isinstance(stored, PasswordHash):
        return None
    pw = clear.reveal().encode()
    algo = {"SSHA": hashlib.sha1, "SSHA256": hashlib.sha256, "SSHA512": hashlib.sha512}.get(stored.scheme)
    if algo is not None:
        try:
            raw = base64.b64decode(stored.value.reveal(), validate=True)
        except ValueError:
            return False
        n = algo().digest_size
        return secrets.compare_digest(algo(pw + raw[n:]).digest(), raw[:n])
    return None


def generate() -> Secret:
    """A strong password a person can still type: 20 characters from letters and digits (~119 bits)."""
    alphabet = string.ascii_letters + string.digits
    while True:
        pw = "".join(secrets.choice(alphabet) for _ in range(20))
        if any(c.isdigit() for c in pw) and any(c.islower() for c in pw) and any(c.isupper() for c in pw):
            return Secret(pw)
