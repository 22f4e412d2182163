"""Diagnostic switches that turn single IMAP protocol features off.

They exist so that what each feature is worth can be measured on its own (``bench/run.py --features``,
docs/benchmarks.md) and so that a server which mishandles one feature can be tried without it. They are
not user options: the environment variable is read by every connection, so a benchmark can set it for a
whole ``mailmigrate`` process without a command-line flag that users would take for a tuning knob.

``MAILMIGRATE_IMAP_DISABLE`` is a comma-separated list of:

* ``pipelining``  – never more than one command in flight per connection;
* ``fetch-batch`` – one message per ``UID FETCH`` (instead of batches of up to 500 / 8 MiB);
* ``multiappend`` – behave as if the server did not offer MULTIAPPEND (one APPEND per message);
* ``literal+``    – behave as if the server did not offer LITERAL+ (a round trip per literal);
* ``compress``    – never send COMPRESS DEFLATE, whatever the URL says;
* ``incremental`` – list every message of a changed folder on a rerun (no CHANGEDSINCE/QRESYNC report);
* ``qresync``     – behave as if the server did not offer QRESYNC (expunges then found by count and UIDs);
* ``condstore``   – behave as if the server offered neither CONDSTORE nor QRESYNC (no HIGHESTMODSEQ at all).
"""

from __future__ import annotations

import os

from ..errors import ConfigError

ENV = "MAILMIGRATE_IMAP_DISABLE"
FEATURES = ("pipelining", "fetch-batch", "multiappend", "literal+", "compress", "incremental", "qresync", "condstore")

#: the server capabilities each switch hides from the rest of the client
HIDDEN_CAPABILITIES = {"multiappend": {"MULTIAPPEND"}, "literal+": {"LITERAL+"}, "compress": {"COMPRESS=DEFLATE"},
                       "qresync": {"QRESYNC"}, "condstore": {"CONDSTORE", "QRESYNC"}}


def disabled(environ=None) -> frozenset[str]:
    """The features switched off for connections made now; a misspelt name is an error rather than a
    measurement of nothing."""
    raw = (os.environ if environ is None else environ).get(ENV, "")
    names = frozenset(n.strip().lower() for n in raw.split(",") if n.strip())
    unknown = names - set(FEATURES)
    if unknown:
        raise ConfigError(f"{ENV}: unknown feature(s) {', '.join(sorted(unknown))}; known: {', '.join(FEATURES)}")
    return names


def hidden_capabilities(off: frozenset[str]) -> set[str]:
    out: set[str] = set()
    for name in off:
        out |= HIDDEN_CAPABILITIES.get(name, set())
    return out
