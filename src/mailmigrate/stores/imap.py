"""Any IMAP server as a source or a target.

Folder names: a FolderPath component is the decoded name of one level.  On the wire, components are
joined with the server's hierarchy separator and encoded in modified UTF-7; a component that itself holds
the separator is escaped (``escape_component``) so that "a/b" on a server with "." stays one folder on a
server with "/" instead of growing a level.  A personal namespace prefix (Courier's and Cyrus's "INBOX.")
is added and removed here, so the engine sees the same paths everywhere.

Speed: listings are one ``UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)``; bodies come in pipelined
batches of ``BODY.PEEK[]`` (never setting \\Seen on the source); appends go in MULTIAPPEND batches with
non-synchronising literals (LITERAL+), so a batch of 100 messages costs one round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime

from ..errors import ConnectionLost, FolderFailed, MessageRejected, ProtocolError, ServerRefused
from ..formats import mutf7
from ..formats.specialuse import guess_special_use
from ..imap import compress
from ..imap.connection import Connection, Lit, quote
from ..imap.parser import (MODSEQ_MAX, NUMBER_MAX, Response, atom_list, fetch_items, internaldate_arg,
                           parse_internaldate, parse_number, parse_uid_set)
from ..model import (SPECIAL_USES, AppendItem, Body, FolderInfo, FolderPath, FolderStatus, MessageMeta,
                     PermanentFlags, Secret, intern_flags, remembered)
from .base import FolderChanges, Store
from .imap_changes import changes_since as _changes_since
from .imap_refusals import scopes_refusals

log = logging.getLogger("mailmigrate.stores.imap")
LISTING_SLACK = 10_000  # FETCH answers beyond those asked for (new mail, flag updates) a command may bring

ESCAPES = {"/": "\u2215", ".": "\u2024"}
#: characters some servers refuse in folder names (Cyrus: '"', and "/" where it is not the separator), with the
#: look-alikes that stand for them there;
#: used only on a server that refused one (learnt from the refusal, or from a listed name holding a stand-in)
REFUSED_STANDINS = {'"': "\uff02", "/": "\u2215"}


def _status_values(untagged: list) -> dict[str, dict]:
    """The STATUS answers among ``untagged``, by mailbox name as sent: {name: {item: number}}, or {b"!": why}
    for an answer that does not parse."""
    by_name = {}
    for u in untagged:
        if u.name == b"STATUS" and len(u.data) >= 2:
            name = u.data[0].read() if isinstance(u.data[0], Body) else u.data[0]
            vals = u.data[1]
            try:
                kv = {vals[i].upper(): parse_number(vals[i + 1], vals[i].decode("ascii", "replace"),
                                                    MODSEQ_MAX if vals[i].upper() == b"HIGHESTMODSEQ" else NUMBER_MAX)
                      for i in range(0, len(vals) - 1, 2)}
            except ProtocolError as e:
                kv = {b"!": str(e)}
            by_name[name.decode("ascii", "replace")] = kv
    return by_name


def _by_wire(by_name: dict, wire: str):
    """A folder's STATUS values by its wire name, also where the server spelt it in another case (INBOX)."""
    return by_name.get(wire) or next((v for k, v in by_name.items() if k.upper() == wire.upper()), None)


def _now_exists(r: Response) -> bool:
    """A CREATE's answer that leaves the folder there: created, or there already."""
    return r.status == b"OK" or r.code == b"ALREADYEXISTS" or b"exist" in r.text.lower()


def escape_component(name: str, sep: str | None) -> str:
    """A folder name's own separator characters, made harmless for a server whose separator is ``sep``:
    "/" becomes "∕" (U+2215), "." becomes "․" (U+2024), any other separator character "_"."""
    if not sep or sep not in name:
        return name
    return name.replace(sep, ESCAPES.get(sep, "_"))


def unescape_component(name: str, sep: str | None) -> str:
    if sep in ESCAPES:
        return name.replace(ESCAPES[sep], sep)
    return name


@scopes_refusals
class ImapStore(Store):
    kind = "imap"
    writable = True
    ordered_keys = True
    searches = True

    def __init__(self, host: str, port: int, *, user: str, password: Secret, tls: str = "starttls",
                 insecure: bool = False, cafile: str | None = None, master_user: str | None = None,
                 master_mode: str = "plain", timeout: float = 60.0, compress: str = "auto"):
        self.host, self.port, self.user = host, port, user
        self.compress = compress  # COMPRESS=DEFLATE: auto | yes | no (imap/compress.py)
        #: characters this server refused in a folder name, written as their look-alikes (REFUSED_STANDINS)
        self._standins: set[str] = set()
        self._password = password
        self.tls, self.insecure, self.cafile = tls, insecure, cafile
        self.master_user, self.master_mode, self.timeout = master_user, master_mode, timeout
        self.conn: Connection | None = None
        self.sep: str | None = "/"
        self.prefix = ""  # personal namespace prefix, e.g. "INBOX."
        #: (prefix, separator) once learnt from this server: a reconnect or a clone does not ask again
        self._namespace_known: tuple[str, str | None] | None = None
        self.selected: tuple[str, bool] | None = None
        self._select_info: dict = {}
        #: (connection, its command count, STATUS values by wire name) from the last LIST with LIST-STATUS
        self._listed_statuses: tuple | None = None
        self._sizes: dict[FolderPath, dict[int, int]] = {}
        self._bad_dates: dict[FolderPath, dict[int, str]] = {}
        self._problems: list[tuple[str, str]] = []
        self.qresync = False  # the server confirmed ENABLE QRESYNC on this connection
        self.listed = 0  # messages whose metadata came over the wire (listings and change reports)

    def describe(self) -> str:
        return f"imap://{self.user}@{self.host}:{self.port}"

    # --- life cycle -------------------------------------------------------------------------------
    def open(self) -> None:
        if self.conn is not None:
            return
        c = Connection(self.host, self.port, tls=self.tls, insecure=self.insecure, cafile=self.cafile,
                       timeout=self.timeout)
        c.connect()
        try:
            c.login(self.user, self._password, master=self.master_user, mode=self.master_mode)
            compress.start(c, self.compress)
            enable = [x for x in ("CONDSTORE", "QRESYNC") if x in c.capabilities]
            if "ENABLE" not in c.capabilities:
                enable = []
            # ENABLE and NAMESPACE go together, one round trip; NAMESPACE only where this store (or the one it
            # was cloned from: a worker's connection) has not learnt the namespace from this server yet
            ask = self._namespace_known is None and "NAMESPACE" in c.capabilities
            commands: list[tuple] = []
            if enable:
                commands.append((b"ENABLE", *[e.encode() for e in enable]))
            if ask:
                commands.append((b"NAMESPACE",))
            if commands:
                c.pipeline(commands)
            self.qresync = bool(enable) and any(
                u.name == b"ENABLED" and b"QRESYNC" in [d.upper() for d in u.data] for u in c.untagged)
            self.conn = c
            if self._namespace_known is None:
                self._namespace(c.untagged if ask else None)
            else:
                self.prefix, self.sep = self._namespace_known
        except BaseException:
            c.close()
            self.conn = None
            raise
        self.selected = None

    def abort(self) -> None:
        """Cut the connection from another thread (its fleet slot was lost); close() still follows."""
        conn = self.conn
        if conn is not None:
            conn.abort()

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.logout()
            finally:
                self.conn = None
        self.selected = None

    def clone(self) -> "ImapStore":
        twin = ImapStore(self.host, self.port, user=self.user, password=self._password, tls=self.tls,
                         insecure=self.insecure, cafile=self.cafile, master_user=self.master_user,
                         master_mode=self.master_mode, timeout=self.timeout, compress=self.compress)
        twin._standins = self._standins  # one set: what one connection learnt about names, all use
        twin._namespace_known = self._namespace_known
        return twin

    def supports_uidplus(self) -> bool:
        return "UIDPLUS" in self._c.capabilities

    @property
    def _c(self) -> Connection:
        if self.conn is None:
            raise ConnectionLost(f"{self.describe()}: not connected")
        return self.conn

    def _namespace(self, answer: list | None) -> None:
        """The personal namespace's prefix and separator, from the NAMESPACE answer ``answer`` (the untagged
        responses that came with it; None: not asked), else from ``LIST "" ""``; remembered for reconnects
        and clones."""
        c = self._c
        for u in answer or ():
            if u.name == b"NAMESPACE" and u.data and isinstance(u.data[0], list) and u.data[0]:
                first = u.data[0][0]
                if isinstance(first, list) and len(first) >= 2:
                    self.prefix = (first[0] or b"").decode("utf-8", "replace")
                    self.sep = first[1].decode() if first[1] else None
                    self._namespace_known = (self.prefix, self.sep)
                    return
        c.command(b"LIST", b'""', b'""')
        for u in c.untagged:
            if u.name == b"LIST" and len(u.data) >= 2:
                self.sep = u.data[1].decode() if u.data[1] else None
        self._namespace_known = (self.prefix, self.sep)

    # --- names ------------------------------------------------------------------------------------
    def _wire_name(self, path: FolderPath) -> str:
        if path and path[0].upper() == "INBOX" and len(path) == 1:
            return "INBOX"
        comps = [escape_component(c, self.sep) for c in path]
        for ch in self._standins:
            comps = [c.replace(ch, REFUSED_STANDINS[ch]) for c in comps]
        if path[0].upper() == "INBOX":
            comps[0] = "INBOX"
            return mutf7.encode((self.sep or "/").join(comps))
        return mutf7.encode(self.prefix + (self.sep or "/").join(comps))

    def folder_identity(self, path: FolderPath) -> object:
        """The name on the wire: with a personal namespace prefix ("INBOX.") a top-level folder and INBOX's
        child of the same name are one mailbox on the server.  Valid once the store is open (the prefix and
        separator come from the server)."""
        if path and path[0].upper() == "INBOX" and len(path) == 1:
            return "INBOX"
        wire = self._wire_name(path)
        if self.sep and wire.upper().startswith("INBOX" + self.sep):
            wire = "INBOX" + wire[5:]
        return wire

    def _path(self, wire: bytes) -> FolderPath | None:
        try:
            name = mutf7.decode(wire.decode("ascii"))
        except (UnicodeDecodeError, Exception):  # a server sending 8-bit names: take them as UTF-8
            name = wire.decode("utf-8", "replace")
        if name.upper() == "INBOX":
            return ("INBOX",)
        if self.prefix and name.startswith(self.prefix):
            name = name[len(self.prefix):]
        elif self.prefix and self.sep and name.upper().startswith("INBOX" + self.sep):
            pass
        comps = name.split(self.sep) if self.sep else [name]
        if comps[0].upper() == "INBOX":
            comps[0] = "INBOX"
        if any(c == "" for c in comps):
            return None
        for ch, standin in REFUSED_STANDINS.items():
            if any(standin in c for c in comps):
                self._standins.add(ch)  # this server refused ch before
                comps = [c.replace(standin, ch) for c in comps]
        return tuple(unescape_component(c, self.sep) for c in comps)

    @staticmethod
    def _q(name: str) -> bytes:
        return quote(name.encode("ascii"))

    # --- folders ----------------------------------------------------------------------------------
    def list_folders(self) -> list[FolderInfo]:
        c = self._c
        self._listed_statuses = None
        # RFC 5819: every folder's STATUS with the listing, so that the folder_statuses that follows (an account's
        # every run) costs no round trip of its own; not with a folder selected, whose STATUS is not reliable
        # everywhere (folder_statuses deselects and asks)
        with_status = {"LIST-EXTENDED", "LIST-STATUS"} <= c.capabilities and self.selected is None
        if "LIST-EXTENDED" in c.capabilities:
            returns = b"SUBSCRIBED SPECIAL-USE"
            if with_status:
                returns += b" STATUS (" + b" ".join(self._status_items()) + b")"
            r = c.command(b"LIST", b'""', b"*", b"RETURN", b"(" + returns + b")")
        else:
            r = c.command(b"LIST", b'""', b"*")
        c.check(r, "LIST")
        if with_status:
            self._listed_statuses = (c, c.commands_sent, _status_values(c.untagged))
        listed = [u for u in c.untagged if u.name == b"LIST"]
        subscribed: set[bytes] = set()
        if "LIST-EXTENDED" not in c.capabilities:
            c.check(c.command(b"LSUB", b'""', b"*"), "LSUB")
            subscribed = {u.data[2] for u in c.untagged if u.name == b"LSUB" and len(u.data) >= 3}
        out = []
        seen = set()
        for u in listed:
            if len(u.data) < 3 or not isinstance(u.data[0], list):
                continue
            attrs = {a.decode("ascii", "replace").lower() for a in u.data[0] if isinstance(a, bytes)}
            wire = u.data[2]
            if isinstance(wire, Body):
                wire = wire.read()
            if wire is None:
                continue
            if u.data[1]:
                self.sep = u.data[1].decode()
            path = self._path(wire)
            if path is None or path in seen:
                continue
            seen.add(path)
            use = next((s for s in SPECIAL_USES if s.lower() in attrs), None)
            if use is None and (len(path) == 1 or (len(path) == 2 and path[0] == "INBOX")) and path != ("INBOX",):
                use = guess_special_use(path[-1])
            sub = "\\subscribed" in attrs or wire in subscribed
            selectable = not ({"\\noselect", "\\nonexistent"} & attrs)
            out.append(FolderInfo(path, use, sub, selectable))
        if ("INBOX",) not in seen:
            out.insert(0, FolderInfo(("INBOX",), None, False, True))
        return out

    def folder_status(self, path: FolderPath) -> FolderStatus:
        return self.folder_statuses([path])[path]

    def _status_items(self) -> list[bytes]:
        items = [b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY"]
        if "CONDSTORE" in self._c.capabilities:
            items.append(b"HIGHESTMODSEQ")
        return items

    def folder_statuses(self, paths: Sequence[FolderPath]) -> dict[FolderPath, FolderStatus]:
        c = self._c
        # What LIST-STATUS said, taken only when the LIST was this connection's last command: an answer from
        # before any later command (an APPEND, a SELECT) would be older than the caller expects.
        listed, self._listed_statuses = self._listed_statuses, None
        if listed is not None and (listed[0] is not c or listed[1] != c.commands_sent):
            listed = None
        if self.selected is not None:
            # STATUS on the selected mailbox is allowed but not reliable everywhere: deselect first.
            self._unselect()
        wires = {self._wire_name(p): p for p in paths}
        known = listed[2] if listed is not None else {}
        ask = [w for w in wires if _by_wire(known, w) is None]
        items = b"(" + b" ".join(self._status_items()) + b")"
        results = c.pipeline([(b"STATUS", self._q(w), items) for w in ask])
        by_name = {**known, **_status_values(results[-1][1] if results else [])}
        answers = dict(zip(ask, (r for r, _ in results)))
        out: dict[FolderPath, FolderStatus] = {}
        for wire, path in wires.items():
            r = answers.get(wire)
            if r is not None and r.status != b"OK":
                err = c.error_for(r, f"STATUS {'/'.join(path)}")
                if isinstance(err, ServerRefused):
                    raise FolderFailed(str(err))
                raise err
            kv = _by_wire(by_name, wire) or {}
            if b"!" in kv:
                raise FolderFailed(f"{self.host}: STATUS of {'/'.join(path)}: {kv[b'!']}")
            if b"UIDVALIDITY" not in kv:
                raise ProtocolError(f"{self.host}: STATUS of {'/'.join(path)} without UIDVALIDITY")
            out[path] = FolderStatus(kv[b"UIDVALIDITY"], kv.get(b"UIDNEXT"), kv.get(b"HIGHESTMODSEQ"),
                                     kv.get(b"MESSAGES"))
        return out

    def _unselect(self) -> None:
        """Leave the selected mailbox without expunging anything.  Without UNSELECT (Courier) only CLOSE
        deselects, and CLOSE on a mailbox selected read-write expunges its \\Deleted messages (RFC 3501
        6.4.2) — a user's, or copies that carry the flag from the source: switch to read-only first."""
        c = self._c
        if "UNSELECT" in c.capabilities:
            c.command(b"UNSELECT")
        elif self.selected:
            if not self.selected[1]:
                c.command(b"EXAMINE", self._q(self.selected[0]))
            c.command(b"CLOSE")
        self.selected = None

    def _select(self, path: FolderPath, readonly: bool, qresync: tuple[int, int] | None = None) -> dict:
        """``qresync``: (UIDVALIDITY, MODSEQ) known from an earlier run; the server then reports what changed
        since (RFC 7162 §3.2.5) in "vanished" (UID set texts) and "fetched" (FETCH attribute lists)."""
        wire = self._wire_name(path)
        if self.selected == (wire, readonly) and qresync is None:
            return self._select_info
        c = self._c
        extra = [b"(QRESYNC (%d %d))" % qresync] if qresync else []
        r = c.command(b"EXAMINE" if readonly else b"SELECT", self._q(wire), *extra)
        if r.status != b"OK":
            self.selected = None
            err = c.error_for(r, f"{'EXAMINE' if readonly else 'SELECT'} {'/'.join(path)}")
            raise FolderFailed(str(err)) if isinstance(err, ServerRefused) else err
        info = {"exists": 0, "permanentflags": None, "vanished": [], "fetched": []}
        try:
            self._select_untagged(c.untagged, info)
        except ProtocolError as e:
            self.selected = None
            raise FolderFailed(f"{'EXAMINE' if readonly else 'SELECT'} {'/'.join(path)}: {e}") from None
        self.selected = (wire, readonly)
        self._select_info = info
        return info

    @staticmethod
    def _select_untagged(untagged, info: dict) -> None:
        for u in untagged:
            if u.name == b"VANISHED" and u.data:
                info["vanished"].append(u.data[-1])
            elif u.name == b"FETCH":
                info["fetched"].append(u.data)
            elif u.name == b"EXISTS":
                info["exists"] = u.number
            elif u.code == b"UIDVALIDITY":
                info["uidvalidity"] = parse_number(u.code_args[0] if u.code_args else None, "UIDVALIDITY")
            elif u.code == b"UIDNEXT":
                info["uidnext"] = parse_number(u.code_args[0] if u.code_args else None, "UIDNEXT")
            elif u.code == b"HIGHESTMODSEQ":
                info["highestmodseq"] = parse_number(u.code_args[0] if u.code_args else None, "HIGHESTMODSEQ",
                                                     MODSEQ_MAX)
            elif u.code == b"PERMANENTFLAGS":
                flags = u.code_args[0] if u.code_args and isinstance(u.code_args[0], list) else []
                info["permanentflags"] = [f.decode("utf-8", "replace") for f in flags if isinstance(f, bytes)]

    # --- reading ----------------------------------------------------------------------------------
    def search_uids(self, path: FolderPath, keys: str) -> set[str]:
        """The message keys (UIDs) in ``path`` that the server's UID SEARCH with the user's keys answers
        (``sync --search``).  The keys go to the server as written: it is the server that understands them,
        and one it refuses fails the folder with its own words."""
        self.selected = None
        self._select(path, readonly=True)
        raw = keys.encode("utf-8")
        args = (b"UID", b"SEARCH") + ((b"CHARSET", b"UTF-8") if not raw.isascii() else ()) + (raw,)
        r = self._c.command(*args)
        self._c.check(r, f"UID SEARCH in {'/'.join(path)}")
        out: set[str] = set()
        for u in self._c.untagged:
            if u.name == b"SEARCH":
                for n in u.data:
                    v = n.decode() if isinstance(n, bytes) else str(n)
                    if v.isdigit():
                        out.add(str(int(v)))
        return out

    def list_messages(self, path: FolderPath, *, min_uid: int | None = None) -> tuple[FolderStatus, list[MessageMeta]]:
        # Always a fresh EXAMINE: a mailbox selected earlier in this session may not show mail that arrived
        # since, and the listing must be complete for the engine to decide what is new.
        self.selected = None
        info = self._select(path, readonly=True)
        if "uidvalidity" not in info:
            raise ProtocolError(f"{self.host}: {'/'.join(path)} has no UIDVALIDITY")
        status = FolderStatus(info["uidvalidity"], info.get("uidnext"), info.get("highestmodseq"), info["exists"])
        metas: list[MessageMeta] = []
        sizes: dict[int, int] = {}
        broken: list[str] = []  # lines the server got wrong: read to the end first, then the folder fails
        bad_dates = self._bad_dates.setdefault(path, {})
        bad_dates.clear()
        if info["exists"]:
            lo = max(1, min_uid or 1)
            cmd = (b"UID", b"FETCH", b"%d:*" % lo, b"(UID FLAGS INTERNALDATE RFC822.SIZE)")
            # At most EXISTS answers, and some slack for mail arriving while it runs: a server that goes on
            # forever fails the listing instead of filling memory (issue 19).
            for r in self._c.fetch_stream([cmd], window=1, max_items=info["exists"] + LISTING_SLACK,
                                          shape="listing"):
                if type(r) is not Response:  # a common shape, read without a Response (_read_listing_line)
                    uid, size, date = r["uid"], r["size"], r["date"]
                    flags = _listing_flags(r["flags"])
                    checked = len(uid) < 10 and len(size) < 10  # the pattern's digits, and within range
                else:
                    it = fetch_items(r.data)
                    uid = it.get(b"UID")
                    if uid is None:
                        continue
                    size, flag_atoms, date = it.get(b"RFC822.SIZE"), it.get(b"FLAGS"), it.get(b"INTERNALDATE")
                    flags = _meta_flags(flag_atoms)
                    checked = False
                if checked:
                    uid, size = int(uid), int(size)
                else:
                    try:
                        uid = parse_number(uid, "UID")
                        size = parse_number(size, f"RFC822.SIZE of UID {uid}") if size is not None else None
                    except ProtocolError as e:
                        broken.append(str(e))
                        continue
                if uid < lo:
                    continue  # "N:*" includes the last message even when its UID is below N
                when = None
                if date:
                    try:
                        when = parse_internaldate(date)
                    except ProtocolError as e:
                        bad_dates[uid] = str(e)  # that message's problem, reported when it would be copied
                sizes[uid] = size or 0
                metas.append(MessageMeta(str(uid), flags, when, size, uid))
        if broken:
            raise FolderFailed(f"{'/'.join(path)}: {broken[0]}"
                               f"{f' (and {len(broken) - 1} more such lines)' if len(broken) > 1 else ''}")
        metas.sort(key=lambda m: m.uid)
        self._sizes[path] = sizes
        self.listed += len(metas)
        return status, metas

    def changes_since(self, path: FolderPath, before: FolderStatus) -> FolderChanges | None:
        return _changes_since(self, path, before)

    def fetch(self, path: FolderPath, keys: Sequence[str]) -> Iterator[tuple[MessageMeta, Body]]:
        self._select(path, readonly=True)
        sizes = self._sizes.get(path, {})
        batches: list[list[int]] = []
        cur: list[int] = []
        cur_bytes = 0
        per_batch = 1 if "fetch-batch" in self._c.disabled else 500
        bad_dates = self._bad_dates.get(path, {})
        for k in keys:
            uid = int(k)
            if uid in bad_dates:
                self._problems.append((k, f"not copied: {bad_dates[uid]} (the message's arrival date would be "
                                          f"lost; fix the message on the server or copy it by hand)"))
                continue
            cur.append(uid)
            cur_bytes += sizes.get(uid, 50_000)
            if len(cur) >= per_batch or cur_bytes >= (8 << 20):
                batches.append(cur)
                cur, cur_bytes = [], 0
        if cur:
            batches.append(cur)
        cmds = [(b"UID", b"FETCH", _uid_set(b), b"(UID FLAGS INTERNALDATE BODY.PEEK[])") for b in batches]
        for r in self._c.fetch_stream(cmds, max_items=len(keys) + LISTING_SLACK, shape="body"):
            if type(r) is not Response:  # a common shape, read without a Response (Connection._read_body_fetch)
                m, raw = r
                uid, flags, date = m["uid"], _text_flag_set(m["flags"]), m["date"]
                checked = len(uid) < 10  # the pattern's digits, and within range
            else:
                it = fetch_items(r.data)
                if b"BODY[]" not in it or it.get(b"UID") is None:
                    continue  # an unsolicited flag update from another session
                uid, raw, flags, date = it[b"UID"], it[b"BODY[]"], _flag_set(it.get(b"FLAGS")), it.get(b"INTERNALDATE")
                checked = False
            if checked:
                uid = int(uid)
            else:
                try:
                    uid = parse_number(uid, "UID")
                except ProtocolError:
                    continue  # not one of ours: each asked-for UID that does not come back is noticed by the engine
            if raw is None:
                self._problems.append((str(uid), "the server returned no content (NIL)"))
                continue
            body = Body(raw) if type(raw) is bytes else raw if isinstance(raw, Body) else Body(data=bytes(raw))
            try:
                when = parse_internaldate(date) if date else None
            except ProtocolError as e:
                self._problems.append((str(uid), f"not copied: {e}"))
                body.close()
                continue
            yield (MessageMeta(str(uid), flags, when, body.size, uid), body)

    def fetch_problems(self) -> list[tuple[str, str]]:
        p, self._problems = self._problems, []
        return p

    # --- writing ----------------------------------------------------------------------------------
    def create_folder(self, path: FolderPath, special_use: str | None = None) -> None:
        """Create the folder itself; its parents only if the server wants them made first. A parent the
        source has only as a level of the hierarchy (\\Noselect) stays one on servers that allow it (Cyrus,
        Dovecot), instead of becoming an empty folder of its own."""
        r = self._create(path, special_use)
        if r is None:
            return
        if len(path) > 1 and not (path[0].upper() == "INBOX" and len(path) == 2):
            for i in range(1, len(path)):
                if path[:i] != ("INBOX",):
                    self._create(path[:i], None)  # a refusal here shows again at the leaf
            r = self._create(path, special_use)
            if r is None:
                return
        refused = [ch for ch in REFUSED_STANDINS if any(ch in comp for comp in path) and ch not in self._standins]
        if refused and r.status == b"NO":
            # A character the server will not hold in a name (Cyrus: '"'): from now on it is written as its
            # look-alike on this server, and read back as the character.
            self._standins.update(refused)
            log.info("%s refuses %s in folder names; using %s instead", self.host, refused,
                     [REFUSED_STANDINS[ch] for ch in refused])
            return self.create_folder(path, special_use)
        raise FolderFailed(str(self._c.error_for(r, f"CREATE {'/'.join(path)}")))

    def create_folders(self, folders: Sequence[tuple[FolderPath, str | None]]) -> list:
        """All the CREATEs sent before the first answer is read; a folder they did not create goes through
        :meth:`create_folder` on its own (its parents, a plain CREATE after a refused USE, a stand-in for a
        refused character), so the outcome is the one-at-a-time outcome."""
        if not folders:
            return []
        c = self._c
        answers = c.pipeline([self._create_args(path, use) for path, use in folders])
        out: list = []
        for (path, use), (r, _) in zip(folders, answers):
            if _now_exists(r):
                out.append(None)
                continue
            out.extend(super().create_folders([(path, use)]))
        return out

    def subscribe_folders(self, paths: Sequence[FolderPath]) -> list:
        if not paths:
            return []
        c = self._c
        answers = c.pipeline([(b"SUBSCRIBE", self._q(self._wire_name(p))) for p in paths])
        out: list = []
        for p, (r, _) in zip(paths, answers):
            if r.status == b"OK":
                out.append(None)
                continue
            e = c.error_for(r, f"SUBSCRIBE {'/'.join(p)}")
            if not isinstance(e, ServerRefused):
                raise e  # a server asking to try again later, say: raised, as subscribe() raises it
            out.append(e)
        return out

    def _create_args(self, path: FolderPath, special_use: str | None) -> tuple:
        args: tuple = (b"CREATE", self._q(self._wire_name(path)))
        if special_use and "CREATE-SPECIAL-USE" in self._c.capabilities:
            args += (b"(USE (" + special_use.encode() + b"))",)  # RFC 6154: the attributes are a list
        return args

    def _create(self, path: FolderPath, special_use: str | None):
        """One CREATE; None when the folder now exists, else the server's refusal."""
        c = self._c
        args = self._create_args(path, special_use)
        r = c.command(*args)
        if _now_exists(r):
            return None
        if len(args) > 2:
            # Any refusal of the USE part (Cyrus with altnamespace: "SPECIAL-USE flag conflict", without
            # [USEATTR]) must not lose the folder: it is created plain, and only its role is lost.
            r = c.command(*args[:2])
            if _now_exists(r):
                return None
        return r

    def subscribe(self, path: FolderPath) -> None:
        c = self._c
        c.check(c.command(b"SUBSCRIBE", self._q(self._wire_name(path))), f"SUBSCRIBE {'/'.join(path)}")

    def delete_folder(self, path: FolderPath) -> None:
        if self.selected and self.selected[0] == self._wire_name(path):
            self._unselect()
        c = self._c
        c.check(c.command(b"DELETE", self._q(self._wire_name(path))), f"DELETE {'/'.join(path)}")

    def permanent_flags(self, path: FolderPath) -> PermanentFlags:
        info = self._select(path, readonly=False)
        pf = info.get("permanentflags")
        if pf is None:
            return PermanentFlags()
        return PermanentFlags(frozenset(f for f in pf if f != "\\*"), any_keyword="\\*" in pf)

    def append_batch_limit(self) -> tuple[int, int]:
        if "MULTIAPPEND" in self._c.capabilities:
            return (100, 16 << 20)
        return (50, 16 << 20)  # pipelined single APPENDs

    def append(self, path: FolderPath, items: Sequence[AppendItem]) -> list[str | None]:
        return self.append_started(path, items)()

    def append_started(self, path: FolderPath, items: Sequence[AppendItem]) -> Callable[[], list[str | None]]:
        """The batch is sent here and its answer read by the function returned; without LITERAL+ each
        literal waits for the server's "+", so such a batch is done here whole."""
        c = self._c
        if self.selected is not None and self.selected == (self._wire_name(path), True):
            # Courier refuses an APPEND into the mailbox selected read-only ("NO Current box is selected
            # READ-ONLY"), as recovery leaves it after listing the target folder.
            self._unselect()
        wire = self._q(self._wire_name(path))
        uidplus = "UIDPLUS" in c.capabilities

        def one(it: AppendItem) -> list:
            if it.internaldate is not None:
                return [_flag_list(it.flags), internaldate_arg(it.internaldate), Lit(it.body)]
            return [_flag_list(it.flags), Lit(it.body)]

        if "MULTIAPPEND" in c.capabilities and len(items) > 1:
            args = [b"APPEND", wire]
            for it in items:
                args += one(it)
            answer = c.pipeline_started([args])

            def multi() -> list[str | None]:
                r = answer()[0][0]
                if r.status != b"OK":
                    err = c.error_for(r, f"APPEND to {'/'.join(path)}")
                    if isinstance(err, MessageRejected) or (isinstance(err, ServerRefused)
                                                            and r.code not in (b"TRYCREATE",)):
                        # A MULTIAPPEND is all or nothing: find the refused message one by one.
                        raise MessageRejected(str(err), code=r.code.decode() if r.code else None)
                    raise err
                return self._uids(r, len(items)) if uidplus else [None] * len(items)
            return multi
        # One APPEND per message, pipelined when literals need no round trip.
        if "LITERAL+" in c.capabilities:
            answers = c.pipeline_started([(b"APPEND", wire, *one(it)) for it in items])
        else:
            done = [(c.command(b"APPEND", wire, *one(it)), []) for it in items]
            answers = lambda: done  # noqa: E731

        def singles() -> list[str | None]:
            keys: list[str | None] = []
            for i, (r, _) in enumerate(answers()):
                if r.status != b"OK":
                    err = c.error_for(r, f"APPEND to {'/'.join(path)}")
                    if isinstance(err, ServerRefused) and r.code != b"TRYCREATE":
                        err = MessageRejected(str(err), code=r.code.decode() if r.code else None)
                    if isinstance(err, MessageRejected):
                        err.index = i
                    raise err
                keys.extend(self._uids(r, 1) if uidplus else [None])
            return keys
        return singles

    @staticmethod
    def _uids(r, n: int) -> list[str | None]:
        if r.code == b"APPENDUID" and len(r.code_args) >= 2:
            uids = parse_uid_set(r.code_args[1])
            if len(uids) == n:
                return [str(u) for u in uids]
        return [None] * n

    def set_flags(self, path: FolderPath, changes: Iterable[tuple[str, frozenset[str], frozenset[str]]]) -> None:
        self._select(path, readonly=False)
        groups: dict[tuple[str, frozenset[str]], list[int]] = {}
        for key, add, remove in changes:
            if add:
                groups.setdefault(("+", frozenset(add)), []).append(int(key))
            if remove:
                groups.setdefault(("-", frozenset(remove)), []).append(int(key))
        cmds = [(b"UID", b"STORE", _uid_set(uids), f"{sign}FLAGS.SILENT".encode(),
                 b"(" + " ".join(sorted(flags)).encode("utf-8") + b")")
                for (sign, flags), uids in groups.items()]
        c = self._c
        for r, _ in c.pipeline(cmds) if cmds else []:
            c.check(r, "UID STORE")

    def delete_messages(self, path: FolderPath, keys: Sequence[str]) -> None:
        if not keys:
            return
        c = self._c
        if "UIDPLUS" not in c.capabilities:
            raise ServerRefused(
                f"{self.host} has no UIDPLUS: deleting would need EXPUNGE, which could also remove messages that "
                "mailmigrate did not mark; nothing deleted")
        self._select(path, readonly=False)
        uids = _uid_set(sorted(int(k) for k in keys))
        c.check(c.command(b"UID", b"STORE", uids, b"+FLAGS.SILENT", b"(\\Deleted)"), "UID STORE \\Deleted")
        c.check(c.command(b"UID", b"EXPUNGE", uids), "UID EXPUNGE")


@remembered(frozenset)
def _flag_list(flags: frozenset[str]) -> bytes:
    """APPEND's flag list, "\\Recent" left out."""
    return b"(" + " ".join(sorted(f for f in flags if f.lower() != "\\recent")).encode("utf-8") + b")"


def _meta_flags(flag_atoms) -> frozenset[str]:
    """A listing's FLAGS as a message's flags: \\Recent (session state) left out, one shared set per kind."""
    return intern_flags(frozenset(f.decode("utf-8", "replace") for f in (flag_atoms or [])
                                  if isinstance(f, bytes) and f.lower() != b"\\recent"))


_FLAG_SETS: dict[tuple, frozenset[str]] = {}


def _flag_set(raw) -> frozenset[str]:
    """A FETCH's FLAGS as a set of str; one shared set per distinct list (a folder has a handful)."""
    try:
        key = tuple(raw) if raw else ()
        fs = _FLAG_SETS.get(key)
    except TypeError:  # a nested list in FLAGS: not IMAP, but read the way it always was
        key, fs = None, None
    if fs is None:
        fs = frozenset(f.decode("utf-8", "replace") for f in (raw or []) if isinstance(f, bytes))
        if key is not None and len(_FLAG_SETS) < 1024 and all(type(f) is bytes for f in key):
            _FLAG_SETS[key] = fs
    return fs


# A FETCH's FLAGS text as the fast paths hand it over (`\Seen $Junk`), read once per distinct text.
_listing_flags = remembered(bytes)(lambda text: _meta_flags(atom_list(text)))  # a listing line's: \Recent left out
_text_flag_set = remembered(bytes)(lambda text: _flag_set(atom_list(text)))  # a body FETCH's: as the server sent them


def _uid_set(uids: Sequence[int]) -> bytes:
    """[1,2,3,7,9,10] -> b"1:3,7,9:10": short commands for long lists."""
    s = sorted(set(uids))
    out = []
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        out.append(f"{s[i]}:{s[j]}" if j > i else str(s[i]))
        i = j + 1
    return ",".join(out).encode()
