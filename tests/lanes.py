"""Which real servers a test needs (the needs_* markers, listed in pyproject.toml), found from the test itself, so that a fast lane can leave them out:
``pytest -m "not needs_server"`` runs every test that needs no Dovecot, Cyrus, Courier, slapd, Samba,
PostgreSQL, Redis, MariaDB or RabbitMQ (README, "Testing").

Why found and not written on each test: a marker written by hand is forgotten on the next test, and a test
that starts a server in the fast lane makes it slow again.  A test needs a server when it (or any fixture
it uses) is one of the shared server fixtures, when a parameter picks a server (the contract suite's store
kinds, the state's back end, the cross-server pairs), or when the code of the test, of a fixture it uses or of
a helper of its module that either calls, starts or connects to one.
"""

from __future__ import annotations

import functools
import inspect
import re
import types

#: the shared fixtures of tests/conftest.py that are servers
FIXTURES = {
    "dovecot_pair": "needs_dovecot", "dovecot_factory": "needs_dovecot", "imap_accounts": "needs_dovecot",
    "cross_accounts": "needs_dovecot", "cyrus_server": "needs_cyrus", "cyrus_alt_server": "needs_cyrus",
    "courier_server": "needs_courier", "pg_url": "needs_pg",
}

#: a parameter value that picks a server (tests/contract's store kinds, state back ends, server pairs)
PARAMS = {"imap": "needs_dovecot", "dovecot": "needs_dovecot", "cyrus": "needs_cyrus", "cyrus-alt": "needs_cyrus",
          "courier": "needs_courier", "postgresql": "needs_pg", "pg": "needs_pg", "slapd": "needs_slapd"}

#: code that starts or reaches a server
CODE = [
    (re.compile(r"\bDovecotServer\b|\bnethserver_vmail\b"), "needs_dovecot"),
    (re.compile(r"\bCyrusServer\b"), "needs_cyrus"),
    (re.compile(r"\bCourierServer\b"), "needs_courier"),
    (re.compile(r"\bSlapdServer\b"), "needs_slapd"),
    (re.compile(r"\bSambaDC\b"), "needs_samba"),
    (re.compile(r"\bmake_database\b|\bOwnPostgres\b|\bpg_url\b"), "needs_pg"),
    (re.compile(r"\bredis\.Redis\b|\bOwnRedis\b|\bredis-server\b"), "needs_redis"),
    (re.compile(r"\bpymysql\.connect\b"), "needs_mariadb"),
    (re.compile(r"\brabbitmqctl\b"), "needs_rabbitmq"),
]


def _functions_in(code: types.CodeType):
    yield code
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield from _functions_in(c)


@functools.lru_cache(maxsize=None)
def _code_needs(fn) -> frozenset[str]:
    """What a function of the test tree needs, with the test-tree helpers it names (one module deep each)."""
    seen: set = set()
    found: set[str] = set()
    todo = [fn]
    while todo:
        f = inspect.unwrap(todo.pop())
        if f in seen or not isinstance(f, types.FunctionType):
            continue
        seen.add(f)
        try:
            text = inspect.getsource(f)
        except (OSError, TypeError):
            continue
        found.update(marker for pattern, marker in CODE if pattern.search(text))
        mod = getattr(f, "__module__", "") or ""
        for code in _functions_in(f.__code__):
            for name in code.co_names:
                g = f.__globals__.get(name)
                if isinstance(g, types.FunctionType) and g.__module__ == mod:
                    todo.append(g)
                elif isinstance(g, type) and g.__module__ == mod:
                    todo.extend(v for v in vars(g).values() if isinstance(v, types.FunctionType))
    return frozenset(found)


def _in_test_tree(fn) -> bool:
    """A fixture written for these tests, not pytest's own or a plug-in's; the shared ones of conftest.py
    are named in FIXTURES."""
    module = getattr(inspect.unwrap(fn), "__module__", "") or ""
    return module != "conftest" and (module.startswith(("test_", "contract")) or ".test_" in module)


def needs(item) -> set[str]:
    """The needs_* markers of one collected test."""
    out = {FIXTURES[n] for n in item.fixturenames if n in FIXTURES}
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        for value in callspec.params.values():
            if isinstance(value, str):
                for part in re.split(r"->|\[|\]", value):
                    if part in PARAMS:
                        out.add(PARAMS[part])
    fn = getattr(item, "function", None)
    if fn is not None:
        out |= _code_needs(fn)
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info is not None else ()):
        for d in defs:
            if _in_test_tree(d.func):
                out |= _code_needs(d.func)
    return out
