"""The step runner every path's procedure uses (paths/plan.py), seen as an administrator sees it: a dry run
never calls a step "already done" when it only has nothing to do *yet* (issue 17: `kopano ldap-online
--dry-run` said "already done" for the passes that then did work)."""

from __future__ import annotations

from mailmigrate.paths.plan import Plan, Step


def _ldap_like():
    """Three passes over a directory, each working on what the one before it left (like ldap-online's)."""
    entries = {"alice": {"zarafaAccount"}, "bob": {"zarafaAccount"}}

    def todo(have, lacks):
        return [f"{dn}: {lacks}" for dn, cls in sorted(entries.items()) if have in cls and lacks not in cls]

    def run(have, add, drop=None):
        for cls in entries.values():
            if have in cls:
                cls.add(add)
                if drop:
                    cls.discard(drop)

    plan = Plan("directory", [
        Step("add Kopano classes", "pass 1", changes=lambda: todo("zarafaAccount", "kopanoAccount"),
             apply=lambda: run("zarafaAccount", "kopanoAccount")),
        Step("move values", "pass 2", changes=lambda: todo("kopanoAccount", "kopanoMoved"),
             apply=lambda: run("kopanoAccount", "kopanoMoved")),
        Step("drop Zarafa classes", "pass 3",
             changes=lambda: [f"{dn}: zarafaAccount" for dn, c in sorted(entries.items())
                              if "kopanoMoved" in c and "zarafaAccount" in c],
             apply=lambda: run("kopanoMoved", "x", drop="zarafaAccount")),
    ])
    return plan, entries


def test_a_dry_run_never_calls_a_step_done_that_still_has_work():
    plan, entries = _ldap_like()
    dry = plan.run(dry_run=True)
    text = dry.render()
    assert [o.status for o in dry.outcomes] == ["planned", "after", "after"]
    assert "already done" not in text and "runs after the steps above" in text
    real = plan.run(dry_run=False)
    assert [o.status for o in real.outcomes] == ["applied", "applied", "applied"]  # every pass had work
    assert all("zarafaAccount" not in c for c in entries.values())
    again = plan.run(dry_run=True)
    assert [o.status for o in again.outcomes] == ["done", "done", "done"]
