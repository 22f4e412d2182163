"""What each IMAP protocol feature is worth: mailmigrate with everything on, then with one feature off at a time.

    sudo .venv/bin/python bench/run.py --features                       # every feature, loopback
    sudo .venv/bin/python bench/run.py --features compress --slow-link 20:10 --messages 1500
    sudo .venv/bin/python bench/run.py --features pipelining,literal+ --rounds 5

Features and how each is switched off (imap/diag.py; not user options):

  pipelining   MAILMIGRATE_IMAP_DISABLE=pipelining   one command in flight per connection
  fetch-batch  MAILMIGRATE_IMAP_DISABLE=fetch-batch  one message per UID FETCH
  multiappend  MAILMIGRATE_IMAP_DISABLE=multiappend  one APPEND per message
  literal+     MAILMIGRATE_IMAP_DISABLE=literal+     a round trip per literal
  connections  --connections 1                       one folder at a time per account
  compress     ?compress=no on both URLs             over a slow link; on loopback the other way round
  incremental  MAILMIGRATE_IMAP_DISABLE=incremental  a changed folder is listed in full on a rerun
  qresync      MAILMIGRATE_IMAP_DISABLE=qresync      CONDSTORE only: expunges found by count and UID search
  condstore    MAILMIGRATE_IMAP_DISABLE=condstore    no HIGHESTMODSEQ: no folder skipped, every one listed

"All on" is what mailmigrate does by default on that kind of link: on loopback ``compress=auto`` does not
compress, so there the compress row turns compression *on* (its cost on a fast link); through
``--slow-link`` (a loopback proxy standing in for a remote server) "all on" has ``?compress=yes``, as
``auto`` would towards a remote address, and the row turns it off. Both Dovecot servers load imap_zlib. Per round, in an order that rotates from
round to round: every configuration copies the source into a fresh target account (first copy), reruns with
no change, then the source gets 1 % new mail and 5 % flag changes and every configuration reruns again. The
source is warmed (Dovecot's indexes built, files in the page cache) by one unmeasured copy before round 1.
With ``--slow-link MBIT:RTT_MS`` the connections go through bench/slowlink.py (the source side, the target
side or both, ``--slow-side``), and the bytes that crossed are reported too.
"""

from __future__ import annotations

import pwd
import random
import shutil
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from corpus import generate, write_maildir_fs
from run import MAILMIGRATE, PASSWORD, Sample, change_source, timed, tool_env

FEATURES = ("pipelining", "fetch-batch", "multiappend", "literal+", "connections", "compress", "incremental",
            "qresync", "condstore")
PHASES = ("first", "rerun", "changed")


@dataclass
class Config:
    name: str  # "all on" or the feature that is off
    disable: str = ""
    compress: str = "yes"
    connections: int = 3


def configs(features: list[str], slow: bool) -> list[Config]:
    base = "yes" if slow else "no"
    out = [Config("all on", compress=base)]
    for f in features:
        if f == "connections":
            out.append(Config(f, connections=1, compress=base))
        elif f == "compress":
            out.append(Config(f, compress="no" if slow else "yes"))
        else:
            out.append(Config(f, disable=f, compress=base))
    return out


def label(c: Config) -> str:
    if c.name == "all on":
        return "nothing (all on)"
    if c.name == "compress" and c.compress == "yes":
        return "compress (turned on)"
    return f"{c.name} off"


class Links:
    """Slow links in front of the servers (or none), and what crossed them."""

    def __init__(self, spec: str | None, side: str, src_port: int, dst_port: int):
        self.links = []
        self.src_port, self.dst_port = src_port, dst_port
        if not spec:
            return
        from slowlink import SlowLink

        mbit, rtt = (float(x) for x in spec.split(":"))
        if side in ("source", "both"):
            self.links.append(SlowLink(src_port, mbit=mbit, rtt_ms=rtt))
            self.src_port = self.links[-1].port
        if side in ("target", "both"):
            self.links.append(SlowLink(dst_port, mbit=mbit, rtt_ms=rtt))
            self.dst_port = self.links[-1].port

    def bytes(self) -> int:
        return sum(link.bytes_down + link.bytes_up for link in self.links)

    def close(self) -> None:
        for link in self.links:
            link.close()


def run_one(cfg: Config, links: Links, user: str, state: Path) -> tuple[Sample, int]:
    cmd = [MAILMIGRATE, "sync",
           f"imap://src@127.0.0.1:{links.src_port}?tls=none&compress={cfg.compress}",
           f"imap://{user}@127.0.0.1:{links.dst_port}?tls=none&compress={cfg.compress}",
           "--state", str(state), "--no-progress", "--connections", str(cfg.connections)]
    env = tool_env(MAILMIGRATE_IMAP_DISABLE=cfg.disable)
    before = links.bytes()
    s = timed(cmd, env=env)
    return s, links.bytes() - before


def run_features(args) -> str:
    from servers.dovecot import DovecotServer

    names = FEATURES if args.features == "all" else [f for f in args.features.split(",") if f]
    unknown = set(names) - set(FEATURES)
    if unknown:
        raise SystemExit(f"unknown feature(s) {', '.join(sorted(unknown))}; known: {', '.join(FEATURES)}")
    cfgs = configs(list(names), bool(args.slow_link))
    base = Path(tempfile.mkdtemp(prefix="mm-bench-features-"))
    msgs = generate(args.messages, args.folders)
    total_bytes = sum(len(m.data) for m in msgs)
    src, dst = DovecotServer(compress=True).start(), DovecotServer(compress=True).start()
    links = Links(args.slow_link, args.slow_side, src.port, dst.port)
    times: dict[tuple[str, str], list[float]] = {}
    wire: dict[str, list[int]] = {}
    cpu: dict[str, list[float]] = {}
    try:
        src.add_user("src", PASSWORD)
        dv = pwd.getpwnam("dovecot")
        write_maildir_fs(src.maildir("src"), msgs, dv.pw_uid, dv.pw_gid)
        dst.add_user("warmup", PASSWORD)
        run_one(cfgs[0], links, "warmup", base / "warmup.db")
        rng = random.Random(7)
        for rnd in range(args.rounds):
            k = rnd % len(cfgs)
            order = cfgs[k:] + cfgs[:k]
            users = {c.name: f"u{rnd}x{i}" for i, c in enumerate(cfgs)}
            dst.add_users({u: PASSWORD for u in users.values()})
            for phase in PHASES:
                if phase == "changed":
                    extra = generate(max(1, args.messages // 100), args.folders, seed=1000 + rnd)
                    change_source(src.port, msgs, extra, rng, src.maildir("src"), dv.pw_uid, dv.pw_gid,
                                  start=10_000_000 * (rnd + 1))
                for c in order:
                    s, nbytes = run_one(c, links, users[c.name], base / f"{users[c.name]}.db")
                    times.setdefault((c.name, phase), []).append(s.wall)
                    if phase == "first":
                        wire.setdefault(c.name, []).append(nbytes)
                        cpu.setdefault(c.name, []).append(s.cpu)
                    print(f"round {rnd + 1} {c.name:12} {phase:8} {s.wall:7.2f}s {s.cpu:6.2f} cpu-s"
                          + (f" {nbytes / (1 << 20):7.1f} MiB on the link" if links.links else ""), flush=True)
    finally:
        links.close()
        src.stop()
        dst.stop()
        shutil.rmtree(base, ignore_errors=True)
    return render(cfgs, times, wire, cpu, args, total_bytes, bool(links.links))


def render(cfgs, times, wire, cpu, args, total_bytes, slow) -> str:
    def med(name, phase):
        return statistics.median(times[(name, phase)])

    where = "both sides" if args.slow_side == "both" else f"the {args.slow_side} side"
    link = f"through a {args.slow_link.replace(':', ' Mbit/s, ')} ms RTT link on {where}" if slow else "loopback"
    lines = [f"Corpus: {args.messages} messages, {total_bytes / (1 << 20):.1f} MiB, {args.folders} folders; "
             f"{args.rounds} rounds, medians; {link}.", "",
             "| changed | first copy (s) | x all on | rerun, no change (s) | x all on | rerun after 1% new + 5% flags (s) "
             "| x all on | mailmigrate CPU s (first copy) |" + (" MiB on the link (first copy) |" if slow else ""),
             "| --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if slow else "")]
    for c in cfgs:
        cells = []
        for phase in PHASES:
            cells += [f"{med(c.name, phase):.2f}", f"{med(c.name, phase) / med('all on', phase):.2f}"]
        cells.append(f"{statistics.median(cpu[c.name]):.2f}")
        if slow:
            cells.append(f"{statistics.median(wire[c.name]) / (1 << 20):.1f}")
        lines.append(f"| {label(c)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
