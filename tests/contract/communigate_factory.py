"""Store-contract factory for the CommuniGate source: ``make_communigate_store(tmp_path) -> (store, populate)``.

CommuniGate is read-only here, so ``populate`` writes the account's files the way CommuniGate lays them out
(multi-mailbox account ``user.macnt`` in the main domain) and the store then reads them.  Top-level folders
become text mailboxes (``.mbox`` with UIDs in the separator), deeper folders ``.mdir`` directories, so the
contract exercises both formats; a message that does not end with a line break cannot be stored in a text
mailbox without changing its bytes, so a folder holding one is written as ``.mdir``.

``populate(folders)`` takes ``{folder: [message, ...]}`` where a folder is a FolderPath tuple or a
"/"-separated string and a message is an AppendItem, raw bytes, or (bytes, flags[, internaldate]); it may be
called again to add mail (appended after what is there, as new mail arrives).  Flags are stored as
CommuniGate status letters: system flags, $MDNSent, $Junk, $Forwarded and $CGP_<letter> survive; other
keywords have no letter in the format and are not stored (a limit of CommuniGate's files, not of the store).
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from mailmigrate.formats import communigate_mailbox as cgm  # noqa: E402
from mailmigrate.formats import communigate_settings as cgs  # noqa: E402
from mailmigrate.formats import mutf7  # noqa: E402
from mailmigrate.model import AppendItem  # noqa: E402
from mailmigrate.stores.communigate import CommuniGateStore  # noqa: E402

DOMAIN = "contract.example"
ACCOUNT = "user"
DEFAULT_DATE = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _normalise(message):
    if isinstance(message, AppendItem):
        return message.body.read(), frozenset(message.flags), message.internaldate or DEFAULT_DATE
    if isinstance(message, (bytes, bytearray)):
        return bytes(message), frozenset(), DEFAULT_DATE
    data, flags, *rest = message
    if isinstance(flags, str):
        flags = flags.split()
    return bytes(data), frozenset(flags), (rest[0] if rest and rest[0] else DEFAULT_DATE)


def make_communigate_store(tmp_path):
    base = Path(tmp_path) / "CommuniGate"
    root = base / "Accounts" / f"{ACCOUNT}.macnt"
    root.mkdir(parents=True)
    (base / "Settings").mkdir()
    (base / "Settings" / "Main.settings").write_bytes(cgs.dump({"DomainName": DOMAIN}))
    (root / "account.settings").write_bytes(cgs.dump({"RealName": "Contract User", "Password": "pw"}))
    next_uid: dict[tuple, int] = {}
    kinds: dict[tuple, str] = {}

    def populate(folders) -> None:
        for folder, messages in folders.items():
            path = tuple(folder.split("/")) if isinstance(folder, str) else tuple(folder)
            items = [_normalise(m) for m in messages]
            kind = kinds.get(path)
            if kind is None:
                kind = "mbox" if len(path) == 1 and all(d.endswith(b"\n") for d, _, _ in items) else "mdir"
                kinds[path] = kind
            d = root
            for comp in path[:-1]:
                d = d / (mutf7.encode(comp) + ".folder")
            d.mkdir(parents=True, exist_ok=True)
            target = d / (mutf7.encode(path[-1]) + "." + kind)
            uid = next_uid.get(path, 1)
            if kind == "mbox":
                with open(target, "ab") as f:
                    for data, flags, when in items:
                        if not data.endswith(b"\n"):
                            raise ValueError(f"{'/'.join(path)} was created as a text mailbox; "
                                             "add messages without a final line break to a deeper folder")
                        f.write(cgm.write_message(data, "sender@example.org", flags, uid, when))
                        uid += 1
            else:
                target.mkdir(exist_ok=True)
                for data, flags, when in items:
                    (target / cgm.format_mdir_name(str(uid), flags, when)).write_bytes(data)
                    uid += 1
            next_uid[path] = uid

    store = CommuniGateStore(base, ACCOUNT, DOMAIN)
    return store, populate
