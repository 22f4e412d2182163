"""IMAP modified UTF-7 (RFC 3501 §5.1.3), the encoding of mailbox names on the wire and in Dovecot's
Maildir++ directory names.

Printable ASCII except "&" stands for itself, "&" is "&-", everything else is UTF-16BE in modified base64
(",", no padding) between "&" and "-".  Decoding is strict: a name that is not valid modified UTF-7 raises
FormatError so that a folder is never silently renamed.
"""

from __future__ import annotations

import base64

from ..errors import FormatError


def encode(name: str) -> str:
    """The wire form of a decoded name; FormatError for a lone surrogate (not a character)."""
    out = []
    buf: list[str] = []

    def flush():
        if buf:
            try:
                data = "".join(buf).encode("utf-16-be")
            except UnicodeEncodeError:
                raise FormatError(f"mailbox name {name!r} holds a lone surrogate, which UTF-16 cannot carry") from None
            out.append("&" + base64.b64encode(data).decode("ascii").rstrip("=").replace("/", ",") + "-")
            buf.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            buf.append(ch)
    flush()
    return "".join(out)


def decode(name: str) -> str:
    """Strict: only the canonical form decodes, so decode(encode(x)) == x and nothing renames silently."""
    out = []
    i = 0
    n = len(name)
    while i < n:
        ch = name[i]
        if ord(ch) < 0x20 or ord(ch) > 0x7E:
            raise FormatError(f"mailbox name {name!r}: character {ch!r} is not allowed in modified UTF-7")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = name.find("-", i + 1)
        if end < 0:
            raise FormatError(f"mailbox name {name!r}: '&' without closing '-'")
        chunk = name[i + 1:end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            if any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/" for c in b64):
                raise FormatError(f"mailbox name {name!r}: invalid base64 in {chunk!r}")
            try:
                raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
                text = raw.decode("utf-16-be")
            except (ValueError, UnicodeDecodeError):
                raise FormatError(f"mailbox name {name!r}: {chunk!r} is not UTF-16") from None
            if len(raw) % 2 or encode(text) != "&" + chunk + "-":
                raise FormatError(f"mailbox name {name!r}: {chunk!r} is not in canonical form")
            out.append(text)
        i = end + 1
    return "".join(out)
