"""`sync --just-login`: log in to both sides of every account, in parallel, and say which cannot.

Before a migration of hundreds of mailboxes, the first question is whether every password in the accounts
file works on both servers: a wrong one found during the night's first copy costs a day. Nothing is read or
written beyond the login (stores are opened and closed), so it is safe to run at any time.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..errors import MailmigrateError
from ..model import Account
from ..stores.registry import StoreOptions, build_store


@dataclass
class LoginResult:
    account: str
    side: str | None  # the side that failed, None when both logged in
    error: str | None
    configuration: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def check_logins(req, accounts: list[Account], *, jobs: int = 16) -> list[LoginResult]:
    """One LoginResult per account, in the accounts' order; both sides are tried for every account."""
    from .runner import account_key

    def one(acc: Account) -> LoginResult:
        name = account_key(req, acc)
        src_pw = req.source_password if req.source_options.master_user else (acc.source_password or req.source_password)
        tgt_pw = req.target_password if req.target_options.master_user else (acc.target_password or req.target_password)
        for side, spec, user, pw, opts in (("source", req.source, acc.source_user, src_pw, req.source_options),
                                           ("target", req.target, acc.target_user, tgt_pw,
                                            StoreOptions(**{**req.target_options.__dict__, "create": False}))):
            try:
                store = build_store(spec, user=user, password=pw, options=opts, side=side)
                store.open()
                store.close()
            except MailmigrateError as e:
                return LoginResult(name, side, str(e), e.configuration)
        return LoginResult(name, None, None)

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(accounts) or 1)),
                            thread_name_prefix="mailmigrate-login") as pool:
        return list(pool.map(one, accounts))
