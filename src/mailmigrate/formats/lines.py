"""Line iteration shared by the colon-separated account files (shadow, Dovecot passwd-file).

Both are read the same way: UTF-8 with undecodable bytes kept (surrogateescape, so a hash survives a round
trip whatever its bytes), a CRLF line end taken as LF, blank lines and "#" comments skipped, and every line
numbered so that an error can name it.
"""

from __future__ import annotations

from typing import Iterator


def content_lines(data: bytes) -> Iterator[tuple[int, str]]:
    """(line number, line) for every line that holds an entry."""
    for lineno, line in enumerate(data.decode("utf-8", "surrogateescape").split("\n"), 1):
        if line.endswith("\r"):
            line = line[:-1]
        if not line.strip() or line.startswith("#"):
            continue
        yield lineno, line
