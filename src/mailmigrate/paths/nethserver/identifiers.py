"""SME's short account names -> NethServer's ``user@domain`` in what Dovecot's acl plugin reads: pure.

SME names a grantee ``user=bob``; on NethServer bob logs in as ``bob@example.com``, his mailbox is
``vmail/bob@example.com`` and the shared namespace shows it as ``Shared/bob@example.com/``.  A grant, a
shared-mailbox index entry or a subscription still naming ``bob`` matches nobody there, so the shares
would silently vanish.  NethServer's own rename of short to long account names rewrites exactly three
things, and so does this: ``user=`` lines of ``dovecot-acl`` files, the names in ``shared/shared-boxes/``
keys (plus the ``anyone/vmail`` entry for NethServer's public folders) and ``Shared/<owner>/`` in
``subscriptions``.  ``owner``, ``anyone``, ``authenticated`` and ``group=`` lines stay as they are, as there.

Every function is idempotent (a name already ``bob@example.com`` is left alone), so a rerun of the import
never appends the domain twice, and returns the names that match no migrated account: those are left as
they are and reported, since guessing who ``zed`` was is not ours to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...formats import dovecot_acl as acl
from ...formats.maildir import SUBSCRIPTIONS_V2_HEADER

#: NethServer's public folders live in the mailbox "vmail", whose name has no domain on either side
PUBLIC_MAILBOX = "vmail"
PUBLIC_KEY = acl.SHARED_BOXES + "anyone/" + PUBLIC_MAILBOX


@dataclass
class Qualifier:
    """Renames short names of the migrated accounts; collects the names it could not place."""

    accounts: frozenset[str]
    domain: str
    unknown: set[str] = field(default_factory=set)

    def name(self, name: str) -> str:
        if not name:
            return name
        if name in self.accounts:
            return f"{name}@{self.domain}"
        local, at, dom = name.partition("@")
        if (at and local in self.accounts and dom == self.domain) or name == PUBLIC_MAILBOX:
            return name
        self.unknown.add(name)
        return name

    def take_unknown(self) -> list[str]:
        """The names met since the last call that match no migrated account."""
        out = sorted(self.unknown)
        self.unknown.clear()
        return out

    def acl(self, text: str) -> str:
        """``user=bob lr`` -> ``user=bob@example.com lr``; other identifiers and every other byte unchanged."""
        return acl.rename_acl(text, lambda kind, n: self.name(n) if kind == "user" else n)

    def shared_dict(self, data: bytes) -> bytes:
        """Every user name in ``shared/shared-boxes/`` keys qualified; groups keep their names (a group is no
        account); ``anyone/vmail`` added when missing.  Two keys that become one keep the first value."""
        out: dict[str, str] = {}
        for k, v in acl.parse_dict_file(data):
            nk = acl.rename_shared_key(k, lambda role, n: n if role == "group" else self.name(n))
            out.setdefault(nk, v)
        out.setdefault(PUBLIC_KEY, "1")
        return acl.dump_dict_file(list(out.items()))

    def subscription_line(self, line: str) -> str:
        return acl.rename_shared_subscription(line, self.name)

    def subscriptions(self, target: bytes | None, source: bytes = b"") -> bytes | None:
        """``target``'s lines with ``Shared/<owner>/`` qualified, plus the source's subscriptions to shared
        folders that are not there yet (the sync engine copies only the owner's own folders' subscriptions).
        The target comes back byte for byte when nothing in it changes; None when there is no target file
        and nothing shared to add."""
        head, old = _split_subscriptions(target or b"")
        lines = [self.subscription_line(ln) for ln in old]
        have = set(lines)
        for ln in _split_subscriptions(source)[1]:
            if acl.shared_subscription_owner(ln) is None:
                continue
            new = self.subscription_line(ln)
            if new not in have:
                lines.append(new)
                have.add(new)
        if lines == old:
            return target
        if target is None:
            head = SUBSCRIPTIONS_V2_HEADER.decode()
        return (head + "".join(ln + "\n" for ln in lines)).encode("utf-8", "surrogateescape")


def _split_subscriptions(data: bytes) -> tuple[str, list[str]]:
    """(the version 2 header or "", the non-empty lines) of a ``subscriptions`` file."""
    text = data.decode("utf-8", "surrogateescape")
    head = ""
    if data.startswith(SUBSCRIPTIONS_V2_HEADER):
        head = SUBSCRIPTIONS_V2_HEADER.decode()
        text = text[len(head):]
    return head, [ln.rstrip("\r") for ln in text.split("\n") if ln.strip()]
