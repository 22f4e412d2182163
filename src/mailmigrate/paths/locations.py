"""File paths inside the URLs a project file names, made relative to the project file.

A project is run from wherever its operator (or the dashboard) happens to be; every path plug-in that reads a
URL from its section anchors it here as the workflow does for [source] and [target].
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote_plus

from ..stores.registry import FILE_KINDS

#: URL kinds, store or directory, whose body up to ``?`` is a file path
_FILE_URLS = ("maildir", "mbox", "communigate", "passwd-file", "esmith")
#: query keys that name a file: ``cafile`` (imap://, imaps://, kerio://), ``shadow`` (esmith:)
_FILE_KEYS = re.compile(r"(?<=[?&])(cafile|shadow)=([^&#]*)")


def beside_project(url: str, rel, *, store: bool = False) -> str:
    """``url`` (a store URL if ``store``, else a directory URL) with each relative file path in it made
    relative to the project file (``rel``).

    A project is run from wherever its operator (or the dashboard) happens to be, so a certificate or a
    Maildir kept beside the project file must not be looked for in the current directory.  The URL text is
    rewritten, not only the parsed spec, because that text is what fleet workers are sent.  An absolute path
    stays as written, and so does a store's path from ``~``, which the store expands where it runs; directory
    readers and TLS do not expand ``~``, so their paths from ``~`` are expanded here."""
    kind, colon, rest = url.partition(":")
    if colon and kind.lower() in _FILE_URLS:
        body = rest
        if store and kind.lower() in FILE_KINDS and rest.startswith("//"):
            body = rest[2:]  # parse_spec reads maildir://PATH as maildir:PATH; a directory URL does not
        path, q, query = body.partition("?")
        if path and not path.startswith("/") and not (store and path.startswith("~")):
            url = f"{kind}:{rel(path)}{q}{query}"

    def anchored(m: re.Match) -> str:
        value = unquote_plus(m.group(2))  # as parse_qs will read it
        if not value or value.startswith("/"):
            return m.group(0)
        return f"{m.group(1)}={quote(str(rel(value)), safe='/')}"

    return _FILE_KEYS.sub(anchored, url)
