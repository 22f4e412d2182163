"""The verification report: the document an administrator keeps as proof that nothing was lost.

Per account and folder: messages and bytes on the source, verified copies on the target, target mail that
mailmigrate did not put there, and every message without a verified copy with the reason the last run gave.
Written as JSON (for machines) and as one self-contained HTML file (for people); both from the same data.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from pathlib import Path

from ..formats.atomic import replace_file
from .overview import human_bytes


def build_report(project_name: str, status: list[dict], checks: dict[str, dict], directory: dict | None = None) -> dict:
    units = []
    for s in status:
        chk = checks.get(s["unit"]) or s.get("verification")
        # the user step's warnings (CommuniGate: addresses the target will not deliver) outlive every sync
        problems = (s.get("user") or {}).get("warnings", []) + (s.get("last_result") or {}).get("problems", [])
        gv = s.get("groupware_verification")
        if gv:
            problems += [{"kind": "groupware", "folder": f"{p['what']}", "message": m, "reason": "no copy on the target"}
                         for p in gv["pairs"] for m in p["missing"]]
            problems += [{"kind": "groupware", "folder": p["what"], "message": None, "reason": p["error"]}
                         for p in gv["pairs"] if p["error"]]
        units.append({"unit": s["unit"], "state": s["state"], "last_error": s["last_error"],
                      "verification": chk, "problems": problems, "found": s.get("found"), "groupware": gv})
    verified = [u for u in units if u["verification"]]
    totals = {k: sum(u["verification"]["totals"].get(k, 0) for u in verified)
              for k in ("source_messages", "source_bytes", "target_messages", "target_bytes", "missing",
                        "skipped_by_rule", "skipped_too_large", "in_label")}
    mail_ok = all(u["verification"] and u["verification"]["ok"] and (u["groupware"] is None or u["groupware"]["ok"])
                  for u in units if u["state"] != "skipped")
    gw = [p for u in units if u["groupware"] for p in u["groupware"]["pairs"]]
    if gw:
        totals["groupware_collections"] = sum(p["collections"] for p in gw)
        totals["groupware_source_items"] = sum(p["source_items"] for p in gw)
        totals["groupware_target_items"] = sum(p["target_items"] for p in gw)
    return {
        "project": project_name,
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "ok": mail_ok and (directory is None or directory["ok"]),
        "totals": totals,
        "units": units,
        "directory": directory,
    }


def write_report(report: dict, directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = report["generated"].replace(":", "-")
    jp = directory / f"report-{stamp}.json"
    hp = directory / f"report-{stamp}.html"
    # whole or absent: a report is kept as proof, and whatever collects the directory must never take half
    replace_file(jp, json.dumps(report, indent=2, ensure_ascii=False).encode("utf-8"), "umask", suffix=".tmp")
    replace_file(hp, render_html(report).encode("utf-8"), "umask", suffix=".tmp", sync_dir=True)
    return jp, hp


def _found(f: dict | None) -> str:
    """What the source overview counted for a unit not verified yet, so the report still says what waits."""
    if not f:
        return ""
    return f"; found on the source: {int(f['messages'])} messages in {int(f['folders'])} folders"


def _rule_note(t: dict) -> str:
    """Messages the project's [options] rules leave out: neither copied nor missing, said so."""
    n = t.get("skipped_by_rule", 0)
    out = f" Left out by the project's rules (skipped by rule, not counted above): {n}." if n else ""
    big = t.get("skipped_too_large", 0)
    if big:
        out += f" Larger than the target's message size limit (not sent, listed per unit): {big}."
    if t.get("in_label", 0):
        out += f" Gmail All Mail messages whose copy is a label folder's: {t['in_label']}."
    return out


def _gw_totals(t: dict) -> str:
    if "groupware_collections" not in t:
        return ""
    return (f" Calendars and contacts: {t['groupware_target_items']} of {t['groupware_source_items']} items in "
            f"{t['groupware_collections']} collection(s) on the target.")


def _groupware(u: dict) -> str:
    """The unit's calendars and contacts, as its last verification counted them."""
    gv = u.get("groupware")
    if not gv:
        return ""
    parts = [f"{html.escape(p['what'])}: {p['target_items']} of {p['source_items']} items in {p['collections']} "
             f"collection(s){' — ' + html.escape(p['error']) if p['error'] else ''}" for p in gv["pairs"]]
    return f"<div class='gw'>{'; '.join(parts)}</div>"


def render_html(r: dict) -> str:
    e = html.escape
    rows = []
    for u in r["units"]:
        v = u["verification"]
        if not v:
            rows.append(f"<tr class='nv'><td>{e(u['unit'])}</td><td>{e(u['state'])}</td>"
                        f"<td colspan='5'>not verified yet{(': ' + e(u['last_error'])) if u['last_error'] else ''}"
                        f"{_found(u.get('found'))}</td></tr>")
            continue
        # One row per account, its folders folded under it: 1,000 accounts of 20 folders stay readable,
        # and an account with a problem opens by itself.
        t, folders = v["totals"], v["folders"]
        bad = [f for f in folders if not f["ok"]]
        frows = []
        for f in folders:
            missing = ", ".join(f["missing"][:20]) + (" …" if len(f["missing"]) > 20 else "")
            frows.append(f"<tr class='{'ok' if f['ok'] else 'bad'}'><td>{e(f['source'])}</td><td>{e(f['target'])}</td>"
                         f"<td class=n>{f['source_messages']}</td><td class=n>{f['target_messages']}</td>"
                         f"<td class=n>{e(human_bytes(f['source_bytes']))}</td><td>{e(missing or (f['error'] or ''))}</td></tr>")
        ftable = ("<table><tr><th>source folder</th><th>target folder</th><th>source msgs</th><th>verified copies</th>"
                  f"<th>size</th><th>missing (source keys) / error</th></tr>{''.join(frows)}</table>")
        rows.append(
            f"<tr class='{'bad' if bad else 'ok'}'><td>{e(u['unit'])}</td><td>{e(u['state'])}</td>"
            f"<td class=n>{t['source_messages']}</td><td class=n>{t['target_messages']}</td>"
            f"<td class=n>{e(human_bytes(t['source_bytes']))}</td><td class=n>{t['missing']}</td>"
            f"<td><details{' open' if bad else ''}><summary>{len(folders)} folder(s)"
            f"{f', {len(bad)} with problems' if bad else ''}</summary>{ftable}</details>{_groupware(u)}</td></tr>")
    probs = []
    for u in r["units"]:
        for p in u["problems"]:
            where = " / ".join(x for x in (p.get("folder"), p.get("message")) if x)
            probs.append(f"<tr><td>{e(u['unit'])}</td><td>{e(p.get('kind', ''))}</td><td>{e(where)}</td>"
                         f"<td>{e(p.get('reason', ''))}</td></tr>")
    drows = []
    if r.get("directory"):
        for c in r["directory"]["checks"]:
            cls = "ok" if c["ok"] else "bad"
            detail = "; ".join([f"missing: {m}" for m in c["missing"][:20]] + [f"new: {a}" for a in c["added"][:10]])
            drows.append(f"<tr class='{cls}'><td>{e(c['check'])}</td><td class=n>{c['before']}</td>"
                         f"<td class=n>{c['after']}</td><td>{e(detail)}</td></tr>")
    directory_html = ("<h2>Directory: before and after</h2><table><tr><th>check</th><th>source</th><th>target</th>"
                      f"<th>differences</th></tr>{''.join(drows)}</table>") if drows else ""
    t = r["totals"]
    verdict = "Everything verified: every source message has a copy on the target." if r["ok"] else \
        "Not everything is verified: see the rows marked red and the problems below."
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mailmigrate report — {e(r['project'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}td.n{{text-align:right}}
tr.bad{{background:#fdd}}tr.ok{{background:#efe}}tr.nv{{background:#eee}}details table{{margin:.4em 0}}
summary{{cursor:pointer}}</style></head><body>
<h1>Migration report: {e(r['project'])}</h1>
<p>Generated {e(r['generated'])}. <strong>{e(verdict)}</strong></p>
<p>Source: {t['source_messages']} messages, {e(human_bytes(t['source_bytes']))} ({t['source_bytes']} bytes).
Verified on target: {t['target_messages']} messages, {e(human_bytes(t['target_bytes']))} ({t['target_bytes']} bytes).
Without a verified copy: {t['missing']}.{_rule_note(t)}{_gw_totals(t)}</p>
<h2>Accounts and folders</h2>
<table><tr><th>account</th><th>state</th><th>source msgs</th><th>verified copies</th><th>size</th>
<th>missing</th><th>folders</th></tr>
{''.join(rows)}</table>
{directory_html}
<h2>What was not copied, and why</h2>
<table><tr><th>account</th><th>kind</th><th>where</th><th>reason</th></tr>{''.join(probs) or '<tr><td colspan=4>nothing</td></tr>'}</table>
</body></html>
"""
