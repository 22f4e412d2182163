"""The plain mailbox path: each unit one account, copied by the sync engine from the project's [source] to its
[target].

* start, sync – an incremental run; as often as wanted while users keep working;
* finish – the final incremental run (with --delete when the project says so), then verification message by
  message; the unit is migrated only when verification finds nothing missing;
* abort – remove from the target only what mailmigrate put there, forget the mapping; the source is not
  touched;
* skip – leave the unit out.

With ``[groupware]`` each unit's calendars and contacts follow its mail.  The fleet (``workflow/fleet.py``)
runs the copying of start, sync and finish on workers and calls :meth:`MailboxPath.record_result` and
:meth:`MailboxPath.verify_finish` with each account's result, as :meth:`act` does for a local run.
"""

from __future__ import annotations

from ..errors import ConfigError, MailmigrateError
from ..model import Account
from ..stores.registry import StoreOptions
from ..sync.abort import abort_account
from ..sync.engine import Progress, SyncOptions
from ..sync.runner import SyncRequest, run_sync
from ..sync.session import AccountSession, open_account
from ..sync.state_pg import is_pg_url, open_state
from ..sync.verify import verify_account
from . import groupware
from .base import MigrationPath, Outcome, Recorder, UnitInfo
from .registry import register


class _RecordedProgress(Progress):
    """Feeds live numbers to the unit's record (where the dashboard reads them), and on to the caller's
    display of the copy."""

    def __init__(self, record: Recorder, inner: Progress | None):
        self.record, self.inner = record, inner or Progress()
        self.total = 0
        self.done = 0
        self.bytes = 0

    def folder_start(self, account, folder, to_copy, bytes_to_copy):
        self.total += to_copy
        self.record.progress(total=self.total, folder=folder)
        self.inner.folder_start(account, folder, to_copy, bytes_to_copy)

    def copied(self, account, folder, messages, nbytes):
        self.done += messages
        self.bytes += nbytes
        self.record.progress(done=self.done, bytes_done=self.bytes)
        self.inner.copied(account, folder, messages, nbytes)

    def account_start(self, account):
        self.record.progress(total=0, done=0, bytes_done=0, folder="")
        self.inner.account_start(account)

    def account_done(self, account, result):
        self.inner.account_done(account, result)


@register
class MailboxPath(MigrationPath):
    name = "mailbox"
    copies_on_fleet = True
    verifies_mail = True

    # --- units ------------------------------------------------------------------------------------
    def accounts(self) -> list[Account]:
        return self.project.accounts

    def unit_name(self, acc: Account) -> str:
        src, tgt = acc.source_user, acc.target_user
        if not (src and tgt):  # one local store to another names no user: the project's one mailbox
            return src or tgt or "mailbox"
        return src if src == tgt else f"{src}->{tgt}"

    def account(self, unit: str) -> Account:
        for a in self.accounts():
            if self.unit_name(a) == unit:
                return a
        raise ConfigError(f"project {self.project.name} has no account {unit!r}")

    def units(self) -> list[UnitInfo]:
        return [UnitInfo(self.unit_name(a), "account", {"source_user": a.source_user, "target_user": a.target_user})
                for a in self.accounts()]

    # --- actions ----------------------------------------------------------------------------------
    def act(self, unit: str, action: str, record: Recorder) -> Outcome:
        if action == "skip":
            return Outcome(True, "skipped")
        acc = self.account(unit)
        if action in ("start", "sync"):
            return self.copy(unit, acc, record, delete=False)
        if action == "finish":
            out = self.copy(unit, acc, record, delete=self.project.delete_on_finish)
            if not out.ok:
                return Outcome(False, f"final sync: {out.message}", True)
            return self.verify_finish(unit, record)
        if action == "abort":
            return self._abort(acc)
        raise MailmigrateError(f"unknown action {action}")

    def sync_options(self, *, delete: bool, progress: Progress | None = None) -> SyncOptions:
        p = self.project
        return SyncOptions(delete=delete, progress=progress, delete_guard=p.delete_guard,
                           force_delete=p.force_delete, selection=p.selection, connections=p.connections,
                           max_attempts=p.retries)

    def copy(self, unit: str, acc: Account, record: Recorder, *, delete: bool) -> Outcome:
        req = self.request([acc])
        req.sync = self.sync_options(delete=delete,
                                     progress=_RecordedProgress(record, getattr(record, "listener", None)))
        out = self.record_result(run_sync(req).accounts[0], record)
        if out.ok and self.project.groupware:
            out.message += "; " + self._groupware(acc, record, delete=delete)
        return out

    def _abort(self, acc: Account) -> Outcome:
        with self.session(acc) as s:
            res = abort_account(s.store("target", create=False), s.state, s.name)
        return Outcome(True, (f"removed {res.messages_removed} message(s) and {len(res.folders_removed)} folder(s) "
                              f"mailmigrate had made on the target"
                              + (f"; kept non-empty folders {', '.join(res.folders_kept)}" if res.folders_kept else "")
                              + (f"; kept {res.adopted_kept} message(s) that were on the target before mailmigrate "
                                 f"(adopted)" if res.adopted_kept else "")
                              + (f"; kept {len(res.messages_kept)} message(s) that are no longer mailmigrate's "
                                 f"copies: " + "; ".join(res.messages_kept[:5]) if res.messages_kept else "")),
                       False)

    def _groupware_passwords(self):
        from ..credentials import read_password_file

        files = self.project.groupware_password_files
        return tuple(read_password_file(files[k], k.replace("_", " ")) if files.get(k) else
                     getattr(self.project, side).password(f"MAILMIGRATE_{side.upper()}_PASSWORD", side)
                     for k, side in (("source_password_file", "source"), ("target_password_file", "target")))

    def _groupware(self, acc: Account, record: Recorder, *, delete: bool) -> str:
        """The unit's calendars and contacts after its mail; what failed stays in the unit's log and meta
        (and makes a start or sync INCOMPLETE), the mail's result stands."""
        with self.session(acc) as s:
            results = groupware.sync_unit(self.project.groupware, acc, s.state._conn,
                                          passwords=self._groupware_passwords(), delete=delete)
        kept, said = [], []
        for what, r in results:
            kept.append({"what": what, "error": r.error, **r.counters.as_dict(),
                         "problems": [p.__dict__ for p in r.problems]})
            for p in r.problems:
                record.log("WARNING" if p.kind == "warning" else "ERROR", f"{what}: {p.describe()}")
            if r.error:
                record.log("ERROR", f"{what}: {r.error}")
            c = r.counters
            said.append(f"{what}: {'FAILED ' + r.error if r.error else ''}copied {c.copied}, updated {c.updated}, "
                        f"deleted {c.deleted}, failed {c.failed}")
        record.update_meta({"groupware": kept})
        return "; ".join(said)

    def record_result(self, result, record: Recorder) -> Outcome:
        """An account's sync result into the unit's meta and log, wherever it ran."""
        record.update_meta({"last_result": {"counters": result.counters.as_dict(), "error": result.error,
                                            "problems": [p.__dict__ for p in result.problems]}})
        for p in result.problems:
            record.log("WARNING" if p.kind in ("warning", "flag") else "ERROR", p.describe())
        c = result.counters
        if result.error:
            return Outcome(False, result.error, None)
        msg = f"copied {c.copied}, flags {c.flags_updated}, deleted {c.deleted}, failed {c.failed}"
        if c.skipped_by_rule:
            msg += f"; {c.skipped_by_rule} skipped by rule"
        if c.skipped_too_large:
            msg += f"; {c.skipped_too_large} over the target's message size limit (not copied, listed)"
        if c.skipped_in_label:
            msg += f"; {c.skipped_in_label} All Mail messages already copied from a label folder"
        if c.adopted:
            msg += f"; {c.adopted} already on the target (adopted, not copied again)"
        if c.target_only:
            msg += f"; {c.target_only} message(s) of the target's own left alone"
        if c.deletes_withheld:
            # The source looks emptied: finishing now would call a unit migrated whose deletes never ran.
            return Outcome(False, (f"{msg}; {c.deletes_withheld} copies NOT deleted because the source looks "
                                   f"emptied (see the log); check the source, or set [options] force_delete = "
                                   f"true"), True)
        return Outcome(True, msg, True)

    # --- verification -----------------------------------------------------------------------------
    def verify_unit(self, unit: str, record: Recorder):
        """Verify one unit's mail message by message and keep the result with the unit, so that the report
        and the dashboard show it until the next verification."""
        acc = self.account(unit)
        check = self.verify(acc)
        record.update_meta({"verification": check.as_dict()})
        if self.project.groupware:
            self._verify_groupware(acc, record)
        return check

    def verify_finish(self, unit: str, record: Recorder) -> Outcome:
        """finish after its final sync: migrated only when every source message has a verified copy."""
        check = self.verify_unit(unit, record)
        t = check.totals()
        if not check.ok:
            return Outcome(False, (f"verification failed: {t['missing']} message(s) without a verified copy"
                                   + (f"; {check.error}" if check.error else "")), True)
        said = f"verified: {t['source_messages']} messages, {t['source_bytes']} bytes, all on the target"
        if self.project.groupware:
            gv = record.meta()["groupware_verification"]  # verify_unit checked it too
            if not gv["ok"]:
                missing = sum(len(p["missing"]) for p in gv["pairs"])
                errors = "; ".join(p["error"] for p in gv["pairs"] if p["error"])
                return Outcome(False, (f"groupware verification failed: {missing} item(s) without a copy"
                                       + (f"; {errors}" if errors else "")), True)
            said += "; " + ", ".join(f"{p['what']}: {p['target_items']} items in {p['collections']} collection(s)"
                                     for p in gv["pairs"])
        return Outcome(True, said, True)

    def _verify_groupware(self, acc: Account, record: Recorder) -> dict:
        with self.session(acc) as s:
            gv = groupware.verify_unit(self.project.groupware, acc, s.state._conn,
                                       passwords=self._groupware_passwords())
        record.update_meta({"groupware_verification": gv})
        return gv

    def verify(self, acc: Account):
        with self.session(acc) as s:
            return verify_account(s.store("source"), s.store("target", create=False), s.state, s.name,
                                  self.project.selection.with_rules(acc.rules))

    # --- the sync layer, as the project configures it ---------------------------------------------
    def session(self, acc: Account) -> AccountSession:
        """The account opened (its passwords, stores, the state and the account's lock): the SQLite state
        for the action, or (PostgreSQL, shared with fleet workers and other runs) the account's own lock,
        waited for half a minute, so nothing else copies it meanwhile."""
        return open_account(self.request([acc]), acc, lock_wait=30)

    def request(self, accounts: list[Account]) -> SyncRequest:
        p = self.project
        return SyncRequest(
            source=p.source.spec, target=p.target.spec, accounts=accounts, state_path=p.state,
            source_options=StoreOptions(insecure=p.source.insecure, master_user=p.source.master,
                                        oauth=p.source.token_source("source")),
            target_options=StoreOptions(insecure=p.target.insecure, master_user=p.target.master,
                                        oauth=p.target.token_source("target")),
            source_password=p.source.password("MAILMIGRATE_SOURCE_PASSWORD", "source"),
            target_password=p.target.password("MAILMIGRATE_TARGET_PASSWORD", "target"),
            jobs=1,
            max_rate=p.max_rate,
            max_bandwidth=None if p.max_bandwidth is None else p.max_bandwidth * (1 << 20),
            state_factory=open_state if is_pg_url(p.state) else None,
        )
