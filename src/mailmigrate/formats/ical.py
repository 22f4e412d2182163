"""What the groupware engine must know of an iCalendar (RFC 5545) or vCard (RFC 6350) object without parsing
it: its UID, its kind, and the components it holds.

Items travel as the bytes the source served (a calendar client and an invitation depend on every property,
including ones no library knows), so nothing here rewrites a line: it unfolds content lines only to read
a few properties. Bytes in, values out; tolerant of LF or CRLF, of BOMs and of garbage (then: no UID).
"""

from __future__ import annotations

from dataclasses import dataclass

_COMPONENTS = (b"VEVENT", b"VTODO", b"VJOURNAL", b"VFREEBUSY")


@dataclass(frozen=True)
class ItemInfo:
    kind: str  # "calendar" | "addressbook" | "unknown"
    uid: str | None
    components: tuple[str, ...]  # for calendars: VEVENT, VTODO, … in order of first appearance

    @property
    def content_type(self) -> str:
        return {"calendar": "text/calendar; charset=utf-8", "addressbook": "text/vcard; charset=utf-8"}.get(
            self.kind, "application/octet-stream")

    @property
    def extension(self) -> str:
        return {"calendar": ".ics", "addressbook": ".vcf"}.get(self.kind, "")


def unfold(data: bytes) -> list[bytes]:
    """Content lines with folding undone (a line break followed by a space or tab continues the line)."""
    text = data.lstrip(b"\xef\xbb\xbf").replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    out: list[bytes] = []
    for line in text.split(b"\n"):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] += line[1:]
        else:
            out.append(line)
    return out


def _name_value(line: bytes) -> tuple[bytes, bytes] | None:
    """(upper-case property name without group or parameters, raw value) of one unfolded line."""
    colon = line.find(b":")
    if colon <= 0:
        return None
    head = line[:colon]
    # parameters may hold quoted colons: find the first colon outside quotes
    quoted = False
    for i, ch in enumerate(line):
        if ch == 0x22:
            quoted = not quoted
        elif ch == 0x3A and not quoted:
            head, colon = line[:i], i
            break
    name = head.split(b";", 1)[0]
    name = name.rsplit(b".", 1)[-1]  # vCard property groups: item1.EMAIL
    return name.strip().upper(), line[colon + 1:]


def item_info(data: bytes) -> ItemInfo:
    """The kind, UID and components of an item. The UID is the first one inside a calendar component (a
    VTIMEZONE has none; overrides of a recurring event share their master's) or the vCard's."""
    kind = "unknown"
    uid: str | None = None
    comps: list[str] = []
    depth_comp: bytes | None = None
    for line in unfold(data):
        nv = _name_value(line)
        if nv is None:
            continue
        name, value = nv
        if name == b"BEGIN":
            v = value.strip().upper()
            if v == b"VCALENDAR":
                kind = "calendar"
            elif v == b"VCARD":
                kind = "addressbook"
                depth_comp = b"VCARD"
            elif v in _COMPONENTS:
                depth_comp = v
                c = v.decode("ascii")
                if c not in comps:
                    comps.append(c)
        elif name == b"END":
            if value.strip().upper() == depth_comp:
                depth_comp = None
        elif name == b"UID" and uid is None and depth_comp is not None:
            uid = value.strip().decode("utf-8", "replace") or None
    return ItemInfo(kind, uid, tuple(comps))
