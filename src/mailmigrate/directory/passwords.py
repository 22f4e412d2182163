"""Password schemes: which stored hash one directory can hand to another unchanged, and hashing clear text.

Readers name schemes in Dovecot's vocabulary, the richest of the systems involved, so that one name means
one format everywhere: ``SSHA``, ``SHA``, ``SSHA256``, ``SSHA512``, ``LDAP-MD5`` (base64 MD5, which LDAP
calls ``{MD5}``), ``MD5-CRYPT`` (which Dovecot calls ``{MD5}``), ``SHA512-CRYPT``, ``SHA256-CRYPT``,
``BLF-CRYPT``, ``DES-CRYPT`` and the generic ``CRYPT``.

All ``*-CRYPT`` schemes and ``CRYPT`` are the same thing on disk: a crypt(3) string whose own prefix
(``$6$``, ``$2y$``...) says the algorithm.  So a hash from /etc/shadow or a ``{SHA512-CRYPT}`` passwd-file
line can go into LDAP as ``{CRYPT}`` and back without anyone knowing the password.  This is the only
translation made by name; nothing here guesses.

Schemes are matched by format, not by the name in the braces: OpenLDAP's pw-pbkdf2 ``{PBKDF2}`` is
``ROUNDS$salt$dk`` in an adapted base64, Dovecot's ``{PBKDF2}`` is ``$1$salt$ROUNDS$hexdk``; both are
PBKDF2-HMAC-SHA1, so one converts into the other where the salt can be written in the other's form
(:func:`adapt`), and otherwise the hash is reported as unreadable by the target (:func:`refusal`).  OpenLDAP
names are read as ``LDAP-PBKDF2-SHA1``/``-SHA256``/``-SHA512`` so that no writer mistakes them for
Dovecot's.  OpenLDAP's ``{ARGON2}`` holds the same PHC string (``$argon2id$...``) as Dovecot's
``{ARGON2ID}``/``{ARGON2I}`` and is named after its variant.
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
LDAP_NAMES = {"MD5": "LDAP-MD5", "SMD5": "SMD5", "PBKDF2": "LDAP-PBKDF2-SHA1", "PBKDF2-SHA1": "LDAP-PBKDF2-SHA1",
              "PBKDF2-SHA256": "LDAP-PBKDF2-SHA256", "PBKDF2-SHA512": "LDAP-PBKDF2-SHA512"}
#: The OpenLDAP pw-pbkdf2 schemes (our names) and the digest each uses.
LDAP_PBKDF2 = {"LDAP-PBKDF2-SHA1": "sha1", "LDAP-PBKDF2-SHA256": "sha256", "LDAP-PBKDF2-SHA512": "sha512"}
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
    if h.scheme == "ARGON2":
        variant = h.value.reveal().split("$")[1:2]
        return PasswordHash(variant[0].upper() if variant else "ARGON2", h.value)
    return PasswordHash(LDAP_NAMES.get(h.scheme, h.scheme), h.value)


_LDAP_SPELLING = {"LDAP-MD5": "MD5", "LDAP-PBKDF2-SHA1": "PBKDF2-SHA1", "LDAP-PBKDF2-SHA256": "PBKDF2-SHA256",
                  "LDAP-PBKDF2-SHA512": "PBKDF2-SHA512", "ARGON2I": "ARGON2", "ARGON2ID": "ARGON2"}


def to_ldap(h: PasswordHash) -> str:
    if h.scheme in CRYPT_SCHEMES:
        return "{CRYPT}" + h.value.reveal()
    if h.scheme in _LDAP_SPELLING:
        return "{" + _LDAP_SPELLING[h.scheme] + "}" + h.value.reveal()
    return h.tagged()


def split_lock(h: PasswordHash) -> tuple[PasswordHash | None, bool]:
    """A crypt hash locked the /etc/shadow way (``!`` in front: ``{CRYPT}!$6$...``) -> (the hash without
    the lock, True); ``*`` or ``!`` alone is no usable hash.  Other hashes are returned as they are: no
    other scheme has a lock spelling, so ``!`` in front of them is part of the hash."""
    if h.scheme not in CRYPT_SCHEMES:
        return h, False
    value = h.value.reveal()
    locked = value.startswith("!")
    value = value.lstrip("!")
    if value in ("", "*") or value.startswith("*"):
        return None, locked
    return (PasswordHash(h.scheme, Secret(value)) if locked else h), locked


def lock(h: PasswordHash) -> PasswordHash:
    """The crypt hash with the ``!`` lock in front: crypt(3) never yields ``!``, so no password matches it,
    and removing the ``!`` gives the original back (what ``usermod -L`` does)."""
    return PasswordHash(h.scheme, Secret("!" + h.value.reveal()))


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
    """The same hash under a scheme name in ``accepted`` (rewritten into that scheme's format where the
    algorithm is the same), or None when the target cannot take it."""
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
    if s == "LDAP-PBKDF2-SHA1" and "PBKDF2" in accepted:
        return ldap_pbkdf2_to_dovecot(password)
    return None


def refusal(password: PasswordHash, accepted: frozenset[str] | set[str]) -> str:
    """Why :func:`adapt` gave None, for the report."""
    s = password.scheme.upper()
    if s == "LDAP-PBKDF2-SHA1" and "PBKDF2" in accepted:
        return ("the OpenLDAP {PBKDF2} hash has a salt that Dovecot's {PBKDF2} format cannot hold "
                "(a NUL, '$', ':' or line break in it): unreadable by the target")
    if s in LDAP_PBKDF2:
        return (f"OpenLDAP's pw-pbkdf2 {{{s[5:]}}} format (ROUNDS$salt$key) is not one the target reads"
                + ("; Dovecot's {PBKDF2} is PBKDF2-SHA1 only" if "PBKDF2" in accepted else ""))
    return f"the target does not accept {{{s}}} hashes"


def _ab64_decode(text: str) -> bytes:
    """OpenLDAP's adapted base64 (``.`` for ``+``, no padding), as pw-pbkdf2 writes salt and key."""
    t = text.replace(".", "+")
    return base64.b64decode(t + "=" * (-len(t) % 4), validate=True)


def parse_ldap_pbkdf2(h: PasswordHash) -> tuple[str, int, bytes, bytes] | None:
    """(digest name, rounds, salt, derived key) of an OpenLDAP pw-pbkdf2 hash, None when malformed."""
    digest = LDAP_PBKDF2.get(h.scheme)
    parts = h.value.reveal().split("$")
    if digest is None or len(parts) != 3 or not parts[0].isdigit():
        return None
    try:
        salt, dk = _ab64_decode(parts[1]), _ab64_decode(parts[2])
    except ValueError:
        return None
    if len(dk) != hashlib.new(digest).digest_size:
        return None
    return digest, int(parts[0]), salt, dk


_DOVECOT_SALT_FORBIDDEN = frozenset(b"\0$:\r\n")


def ldap_pbkdf2_to_dovecot(h: PasswordHash) -> PasswordHash | None:
    """OpenLDAP ``{PBKDF2}ROUNDS$ab64salt$ab64dk`` -> Dovecot ``{PBKDF2}$1$salt$ROUNDS$hexdk``.

    Dovecot takes the salt as the raw bytes between ``$`` signs up to a NUL, and a passwd-file line ends
    at ``:``/line breaks: a salt holding any of those has no Dovecot spelling (None)."""
    parsed = parse_ldap_pbkdf2(h)
    if parsed is None or parsed[0] != "sha1":
        return None
    _, rounds, salt, dk = parsed
    if not salt or _DOVECOT_SALT_FORBIDDEN & set(salt):
        return None
    text = "$1$" + salt.decode("latin-1") + f"${rounds}$" + dk.hex()
    return PasswordHash("PBKDF2", Secret(text.encode("latin-1").decode("utf-8", "surrogateescape")))


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
