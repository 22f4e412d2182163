"""A hostile calendar/contact item set for the groupware tests, each shape from the RFCs (5545 iCalendar,
6350/2426 vCard): recurring events with overrides, all-day and floating times, time-zone variants, inline
attachments, a 1 MB contact photo, non-ASCII, folded lines, and one UID in two calendars."""

from __future__ import annotations

import base64
import hashlib

CRLF = "\r\n"


def cal(*lines: str) -> bytes:
    return (CRLF.join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//mailmigrate tests//EN", *lines,
                       "END:VCALENDAR"]) + CRLF).encode("utf-8")


def fold(line: str) -> str:
    """RFC 5545 3.1: lines longer than 75 octets are folded with CRLF + space."""
    out, b = [], line.encode("utf-8")
    while len(b) > 75:
        cut = 75
        while (b[cut] & 0xC0) == 0x80:  # never inside a UTF-8 sequence
            cut -= 1
        out.append(b[:cut].decode())
        b = b" " + b[cut:]
    out.append(b.decode())
    return CRLF.join(out)


VTZ_BERLIN = ["BEGIN:VTIMEZONE", "TZID:Europe/Berlin", "BEGIN:DAYLIGHT", "TZOFFSETFROM:+0100", "TZOFFSETTO:+0200",
              "TZNAME:CEST", "DTSTART:19700329T020000", "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU", "END:DAYLIGHT",
              "BEGIN:STANDARD", "TZOFFSETFROM:+0200", "TZOFFSETTO:+0100", "TZNAME:CET", "DTSTART:19701025T030000",
              "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU", "END:STANDARD", "END:VTIMEZONE"]
# a custom TZID as Outlook writes them, with a single STANDARD rule
VTZ_CUSTOM = ["BEGIN:VTIMEZONE", "TZID:W. Europe Standard Time", "BEGIN:STANDARD", "DTSTART:16010101T030000",
              "TZOFFSETFROM:+0200", "TZOFFSETTO:+0100", "END:STANDARD", "END:VTIMEZONE"]


def calendar_items() -> dict[str, dict[str, bytes]]:
    """collection name -> {item name: bytes}"""
    att = base64.b64encode(hashlib.sha256(b"x").digest() * 40).decode()
    work = {
        "weekly.ics": cal(*VTZ_BERLIN,
                          "BEGIN:VEVENT", "UID:weekly-1@example.org", "DTSTAMP:20240101T090000Z",
                          "DTSTART;TZID=Europe/Berlin:20240108T100000", "DTEND;TZID=Europe/Berlin:20240108T110000",
                          "RRULE:FREQ=WEEKLY;COUNT=10", "SUMMARY:Weekly sync", "END:VEVENT",
                          "BEGIN:VEVENT", "UID:weekly-1@example.org", "DTSTAMP:20240101T090000Z",
                          "RECURRENCE-ID;TZID=Europe/Berlin:20240115T100000",
                          "DTSTART;TZID=Europe/Berlin:20240115T140000", "DTEND;TZID=Europe/Berlin:20240115T150000",
                          "SUMMARY:Weekly sync (moved)", "END:VEVENT"),
        "allday.ics": cal("BEGIN:VEVENT", "UID:allday@example.org", "DTSTAMP:20240101T090000Z",
                          "DTSTART;VALUE=DATE:20240501", "DTEND;VALUE=DATE:20240502", "SUMMARY:Tag der Arbeit",
                          "END:VEVENT"),
        "floating.ics": cal("BEGIN:VEVENT", "UID:floating@example.org", "DTSTAMP:20240101T090000Z",
                            "DTSTART:20240601T080000", "DURATION:PT30M", "SUMMARY:Floating breakfast", "END:VEVENT"),
        "outlook-tz.ics": cal(*VTZ_CUSTOM, "BEGIN:VEVENT", "UID:040000008200E00074C5B7101A82E008@example.org",
                              "DTSTAMP:20240101T090000Z", "DTSTART;TZID=W. Europe Standard Time:20240301T090000",
                              "DTEND;TZID=W. Europe Standard Time:20240301T100000", "SUMMARY:Outlook time zone",
                              "END:VEVENT"),
        "attachment.ics": cal("BEGIN:VEVENT", "UID:attach@example.org", "DTSTAMP:20240101T090000Z",
                              "DTSTART:20240701T120000Z", "SUMMARY:With an inline attachment",
                              fold(f"ATTACH;FMTTYPE=application/octet-stream;ENCODING=BASE64;VALUE=BINARY:{att}"),
                              "END:VEVENT"),
        "unicode.ics": cal("BEGIN:VEVENT", "UID:ümlaut-日本@example.org", "DTSTAMP:20240101T090000Z",
                           "DTSTART:20240801T120000Z",
                           fold("SUMMARY:Réunion — 会議 with a summary long enough to be folded over two lines ✓"),
                           "DESCRIPTION:Zeile eins\\nZeile zwei\\, mit Komma", "END:VEVENT"),
        "shared-uid.ics": cal("BEGIN:VEVENT", "UID:same-uid@example.org", "DTSTAMP:20240101T090000Z",
                              "DTSTART:20240901T120000Z", "SUMMARY:In work", "END:VEVENT"),
    }
    private = {
        "shared-uid.ics": cal("BEGIN:VEVENT", "UID:same-uid@example.org", "DTSTAMP:20240101T090000Z",
                              "DTSTART:20240901T120000Z", "SUMMARY:In private, same UID", "END:VEVENT"),
    }
    tasks = {
        "task.ics": cal("BEGIN:VTODO", "UID:todo-1@example.org", "DTSTAMP:20240101T090000Z", "DUE:20240110T170000Z",
                        "SUMMARY:File the report", "STATUS:NEEDS-ACTION", "END:VTODO"),
    }
    return {"work": work, "private": private, "tasks": tasks}


def vcard(uid: str, fn: str, *extra: str) -> bytes:
    return (CRLF.join(["BEGIN:VCARD", "VERSION:3.0", f"UID:{uid}", f"FN:{fn}", f"N:{fn};;;;", *extra, "END:VCARD"])
            + CRLF).encode("utf-8")


def contact_items() -> dict[str, dict[str, bytes]]:
    photo = base64.b64encode((hashlib.sha256(b"photo").digest() * 32768)[: 1 << 20]).decode()  # 1 MiB of JPEG-ish
    return {"contacts": {
        "ann.vcf": vcard("ann-uid", "Ann Archer", "EMAIL;TYPE=work:ann@example.org", "item1.TEL:+49 30 1234",
                         "item1.X-ABLabel:Büro"),
        "chloe.vcf": vcard("chloé-uid", "Chloé Dupont", "ORG:Société Générale;Équipe", "NOTE:Ünïcödé ✓"),
        "photo.vcf": vcard("photo-uid", "Big Photo", fold(f"PHOTO;ENCODING=b;TYPE=JPEG:{photo}")),
    }}
