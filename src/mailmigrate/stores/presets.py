"""Provider presets: what mailmigrate assumes about Gmail and Microsoft 365 when a URL says ``?preset=``.

Why a table of data and not code spread over the engine: every figure here comes from the provider's public
documentation (docs/PROVIDERS.md names the page for each), providers change them, and an administrator must
be able to see and override each one.  So a preset is only *defaults*: anything the URL or the command line
says explicitly wins (:func:`merge_url`, :func:`run_defaults`).

What uses a preset:
  * the URL parser fills in host, port and TLS when the URL leaves them out (``imap://ann@?preset=gmail``);
  * the store factory prefers the provider's OAuth mechanism when a token is given and ``--*-sasl`` is not;
  * the runner caps connections per account and, unless ``--max-bandwidth`` is given, paces the copy so that
    one account stays under the provider's daily IMAP transfer limit;
  * the engine leaves out messages larger than the target provider's message size limit (reported as skipped
    "too large", never failed and retried), and handles Gmail's ``[Gmail]/All Mail`` and virtual folders.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

MB = 1000 * 1000
MIB = 1024 * 1024
DAY = 24 * 60 * 60


@dataclass(frozen=True)
class Preset:
    """One provider's documented defaults and limits (docs/PROVIDERS.md gives the source of each)."""

    name: str
    host: str
    port: int
    tls: str  # "implicit": both providers serve IMAP over TLS from the first byte on 993
    #: the SASL mechanism for OAuth 2.0 logins ("xoauth2"): both document XOAUTH2 for IMAP
    sasl: str | None
    #: simultaneous IMAP connections one account may hold; more are refused by the provider
    connections_per_account: int | None
    #: the largest message the provider takes from a client; larger ones are left out when it is the target
    max_message_size: int | None
    #: bytes per day one account may download / upload over IMAP before the provider locks IMAP for it
    download_per_day: int | None
    upload_per_day: int | None
    #: the source's folders mailmigrate does not copy by default (virtual views of other folders), by role
    virtual_roles: tuple[str, ...] = ()


PRESETS: dict[str, Preset] = {
    # docs/PROVIDERS.md, "Gmail" has the sources of each figure.
    "gmail": Preset("gmail", "imap.gmail.com", 993, "implicit", "xoauth2", connections_per_account=15,
                    max_message_size=25 * MB, download_per_day=2500 * MB, upload_per_day=500 * MB,
                    virtual_roles=("\\Important", "\\Flagged")),
    # docs/PROVIDERS.md, "Microsoft 365".  Throttling answers ("Suggested Backoff Time") are honoured by the
    # IMAP layer for every server (imap/connection.py), so nothing here needs to switch that on.
    "m365": Preset("m365", "outlook.office365.com", 993, "implicit", "xoauth2", connections_per_account=20,
                   max_message_size=35 * MIB, download_per_day=None, upload_per_day=None),
}


def get(name: str | None) -> Preset | None:
    if not name:
        return None
    p = PRESETS.get(name.lower())
    if p is None:
        raise ConfigError(f"preset {name!r} is not known (known: {', '.join(sorted(PRESETS))})")
    return p


def merge_url(preset: Preset, scheme: str, host: str, port: int | None,
              params: dict) -> tuple[str, int | None, str | None]:
    """Host, port and TLS mode for a URL with ``?preset=``: what the URL says wins, the preset fills gaps.

    TLS comes from the preset only when the URL names neither a port nor ``?tls=``: ``imap://…:143?preset=…``
    is the user asking for STARTTLS on 143, not for implicit TLS on a port that does not speak it.
    Returns (host, port, tls) with tls None when the scheme's own rule applies."""
    host = host or preset.host
    tls = None
    if scheme == "imap" and port is None and "tls" not in params:
        tls = preset.tls
        port = preset.port
    return host, port, tls


def max_message_size(params: dict) -> int | None:
    """The target's message size limit: ``?max_message_size=BYTES`` (0: none), else the preset's."""
    text = params.get("max_message_size")
    if text is not None:
        try:
            n = int(text)
        except ValueError:
            raise ConfigError(f"max_message_size={text!r}: give a number of bytes (0: no limit)") from None
        if n < 0:
            raise ConfigError("max_message_size must not be negative")
        return n or None
    p = get(params.get("preset"))
    return p.max_message_size if p else None


@dataclass(frozen=True)
class RunDefaults:
    """What a run takes from the presets of its two sides when the user did not say."""

    connections_per_account: int | None  # cap on ``--connections``
    bytes_per_second: float | None  # default ``--max-bandwidth``, for all accounts of the run together


def run_defaults(source_params: dict, target_params: dict, jobs: int) -> RunDefaults:
    """The stricter of the two sides.  A daily transfer limit becomes a steady rate (limit / 86400 s) per
    account, times the accounts synced at once: the run's bandwidth limiter is shared by all of them.

    Why pace instead of running at full speed: a provider that sees the daily limit exceeded locks IMAP for
    that account for up to a day — the user's own mail clients too — and the copy would not finish sooner."""
    src, tgt = get(source_params.get("preset")), get(target_params.get("preset"))
    caps = [p.connections_per_account for p in (src, tgt) if p and p.connections_per_account]
    daily = [d for d in ((src and src.download_per_day), (tgt and tgt.upload_per_day)) if d]
    bps = min(daily) / DAY * max(1, jobs) if daily else None
    return RunDefaults(min(caps) if caps else None, bps)
