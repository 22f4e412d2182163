"""The OAuth 2.0 SASL mechanisms' client messages (the token itself comes from ``stores.oauth``)."""

from __future__ import annotations


def _saslname(user: str) -> str:
    """RFC 5801's saslname: ``,`` and ``=`` escaped."""
    return user.replace("=", "=3D").replace(",", "=2C")


def oauth_initial_response(mechanism: str, user: str, token: str, host: str, port: int) -> bytes:
    """The client's first message (before base64): XOAUTH2 as Google and Microsoft document it, OAUTHBEARER as
    RFC 7628 section 3.1 has it (a GS2 header naming the user, then host, port and the bearer token)."""
    if mechanism == "xoauth2":
        return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
    return f"n,a={_saslname(user)},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01".encode()


#: what the client answers to the server's error challenge so that the server ends the exchange with NO:
#: an empty response for XOAUTH2, a lone %x01 for OAUTHBEARER (RFC 7628 section 3.2.3)
OAUTH_ERROR_ACK = {"xoauth2": b"", "oauthbearer": b"\x01"}
