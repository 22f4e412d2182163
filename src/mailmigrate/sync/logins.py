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
from .session import open_account


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
    def one(acc: Account) -> LoginResult:
        session = open_account(req, acc)  # never entered: no state, no lock, only the stores
        for side in ("source", "target"):
            try:
                store = session.store(side, create=False)
                store.open()
                store.close()
            except MailmigrateError as e:
                return LoginResult(session.key, side, str(e), e.configuration)
        return LoginResult(session.key, None, None)

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(accounts) or 1)),
                            thread_name_prefix="mailmigrate-login") as pool:
        return list(pool.map(one, accounts))
