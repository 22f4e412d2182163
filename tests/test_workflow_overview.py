"""Project totals, rate and ETA as the dashboard shows them, from unit states and per-minute throughput."""

from mailmigrate.workflow import overview


def unit(name, state, *, verified=None, found=None, progress=None, copied=0, failed=0, error=None):
    v = None
    if verified:
        src, tgt, size = verified
        v = {"ok": src == tgt, "totals": {"source_messages": src, "target_messages": tgt, "source_bytes": size,
                                          "target_bytes": size, "missing": src - tgt}, "folders": []}
    return {"unit": name, "state": state, "verification": v, "found": found, "progress": progress or {},
            "last_error": error, "last_result": {"counters": {"copied": copied, "failed": failed, "skipped": 0}}}


def test_eta_is_what_is_left_at_the_recent_rate():
    status = [unit("a", "migrated", verified=(100, 100, 1000)),
              unit("b", "migrating", verified=(300, 100, 3000)),  # 200 left
              unit("c", "syncing", progress={"total": 500, "done": 100})]  # 400 left
    rate = [{"minute": f"2026-01-01T00:0{i}", "messages": m, "bytes": m * 10} for i, m in enumerate([0, 50, 100, 50])]
    t = overview.totals(status, rate, (1234, 56789), window=2)
    assert t.remaining_messages == 600 and t.unknown_units == 0
    assert t.rate_msgs_per_min == 75 and t.eta_seconds == 600 / 75 * 60
    assert t.as_dict()["eta"] == "8 min 00 s"
    assert t.done_units == 1 and t.running == 1 and t.copied_messages == 1234
    assert t.verified_messages == 200 and t.source_messages == 400


def test_no_eta_while_units_are_unmeasured_or_nothing_copies():
    status = [unit("a", "not_started"), unit("b", "migrated", verified=(5, 5, 50))]
    assert overview.totals(status, []).eta_seconds is None
    assert overview.totals([unit("b", "migrated", verified=(5, 5, 50))], []).eta_seconds == 0


def test_filter_sort_page():
    status = [unit(f"u{i:02d}", "failed" if i % 10 == 3 else "migrating", copied=i,
                   error="login refused" if i == 13 else None) for i in range(30)]
    p = overview.select(status, state="failed", per=2)
    assert [u["unit"] for u in p.rows] == ["u03", "u13"] and p.pages == 2 and p.matching == 3
    assert [u["unit"] for u in overview.select(status, q="LOGIN").rows] == ["u13"]
    assert overview.select(status, sort="copied", desc=True, per=1).rows[0]["unit"] == "u29"
    assert overview.select(status, page=99, per=10).page == 3
    assert overview.matching_names(status, state="problem") == ["u13"]


def test_human_sizes():
    assert [overview.human_bytes(n) for n in (0, 1023, 1024, 5 * 1024 ** 3)] == ["0 B", "1023 B", "1.0 KiB",
                                                                                 "5.0 GiB"]
    assert overview.human_duration(3725) == "1 h 02 min"
