"""mailmigrate against its peers (mbsync, offlineimap) on the same corpus, same servers, same run.

    sudo .venv/bin/python bench/run.py                # default: 3,750 messages, 3 rounds
    sudo .venv/bin/python bench/run.py --messages 10000 --folders 20 --rounds 3 --write docs/benchmarks.md
    sudo .venv/bin/python bench/run.py --slow-link 20:10           # every tool through a 20 Mbit/s, 10 ms link
    sudo .venv/bin/python bench/run.py --features [LIST]           # mailmigrate only, one feature off at a time
    sudo .venv/bin/python bench/run.py --limits --storage tmpfs,disk --tools mailmigrate,mbsync --rounds 5
                                              # against the servers alone, mail on tmpfs then on disk

Two throwaway Dovecot servers on loopback (tests/servers/dovecot.py); the source account is filled once
with a seeded corpus (bench/corpus.py); each tool copies it into its own fresh target account.  Per round
and tool, in alternating order: a first full copy, a rerun with no change, then (after the source got 1 %
new mail and 5 % flag changes) a rerun.  Wall time, peak RSS and CPU seconds come from wait4() of the
tool's process; the table reports medians and mailmigrate/peer ratios.  Nothing here is asserted: the
numbers are for people to read.

``--slow-link MBIT:RTT_MS`` puts bench/slowlink.py between the tools and the servers (``--slow-side``); the
proxy listens on loopback, where mailmigrate's ``compress=auto`` would not compress, so mailmigrate is given
``?compress=yes`` there, as ``auto`` would do towards a remote server. ``--features`` is described in
bench/features.py.
"""

from __future__ import annotations

import argparse
import imaplib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))

from corpus import generate, write_maildir_fs  # noqa: E402

PASSWORD = "benchpw"


def tool_env(**extra: str) -> dict[str, str]:
    """mailmigrate's environment here: the passwords, and Python allowed to keep the bytecode it compiles.

    A PYTHONDONTWRITEBYTECODE inherited from the shell made every run compile the (editable) package from
    source again, about 0.1 s of each rerun that an installed package never pays.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(MAILMIGRATE_SOURCE_PASSWORD=PASSWORD, MAILMIGRATE_TARGET_PASSWORD=PASSWORD, **extra)
    # This checkout's code, not whatever the venv's editable install points at (a worktree's bench would
    # otherwise measure the main checkout).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return env


#: The venv's entry points (the interpreter running the bench is the venv's), whichever checkout this is.
BIN = Path(sys.executable).parent
MAILMIGRATE = str(BIN / "mailmigrate")


def precompile() -> None:
    """Compile the package once before anything is timed, as pip does when it installs a wheel."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src" / "mailmigrate")], check=True,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})


@dataclass
class Sample:
    wall: float
    rss_mb: float
    cpu: float
    servers_cpu: float = 0.0  # both Dovecots' CPU during the run (server_cpu), where measured


_TICK = os.sysconf("SC_CLK_TCK")


def server_cpu(*servers) -> float:
    """CPU seconds the servers have used so far: each Dovecot master's own and that of its children it has reaped.

    Each IMAP session is a child process of the master that ends at LOGOUT, so a run's sessions are counted
    once they are reaped (``servers_cpu_of`` waits for that); the long-lived helpers (auth, login) are not,
    which leaves out a little of each login. Used to show what a 2-core machine can do at best: no copy can
    finish before all the CPU it needs, the client's and both servers', has been spent on the cores there are."""
    total = 0
    for srv in servers:
        with open(f"/proc/{srv.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return total / _TICK


def servers_cpu_of(run, *servers) -> Sample:
    """``run()``'s Sample with the servers' CPU during it (sessions reaped: a moment's wait after the run)."""
    before = server_cpu(*servers)
    s = run()
    time.sleep(0.3)
    s.servers_cpu = server_cpu(*servers) - before
    return s


def timed(cmd: list[str], env=None) -> Sample:
    """Run a tool under GNU time and read its peak RSS from there.

    Not from our own wait4(): Linux carries the spawning process's high-water mark into a child's maxrss at
    exec, so every tool started from this Python process would report at least this process's size.
    /usr/bin/time is small, so what it reports is the tool's own peak.
    """
    with tempfile.NamedTemporaryFile("r") as tf:
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-o", tf.name, "-f", "%M %U %S"] + cmd, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(f"{cmd[0]} exited {p.returncode}: {p.stderr.decode(errors='replace')[-2000:]}")
        rss_kb, user, system = tf.read().split()[-3:]
    return Sample(wall, int(rss_kb) / 1024, float(user) + float(system))


class Tool:
    name = "tool"

    def __init__(self, work: Path, src_port: int, dst_port: int, dst_user: str):
        self.work = work
        self.src_port = src_port
        self.dst_port = dst_port
        self.dst_user = dst_user
        work.mkdir(parents=True, exist_ok=True)

    def cmd(self) -> list[str]:
        raise NotImplementedError

    def env(self):
        return None

    def run(self) -> Sample:
        return timed(self.cmd(), env=self.env())


class MailMigrate(Tool):
    name = "mailmigrate"
    query = "tls=none"

    def cmd(self):
        return [MAILMIGRATE, "sync",
                f"imap://src@127.0.0.1:{self.src_port}?{self.query}",
                f"imap://{self.dst_user}@127.0.0.1:{self.dst_port}?{self.query}",
                "--state", str(self.work / "state.db"), "--no-progress"]

    def env(self):
        return tool_env()


class Mbsync(Tool):
    name = "mbsync"

    def cmd(self):
        conf = self.work / "mbsyncrc"
        if not conf.exists():
            (self.work / "state").mkdir(exist_ok=True)
            conf.write_text(f"""IMAPAccount src
Host 127.0.0.1
Port {self.src_port}
User src
Pass {PASSWORD}
SSLType None
AuthMechs LOGIN

IMAPStore src
Account src

IMAPAccount dst
Host 127.0.0.1
Port {self.dst_port}
User {self.dst_user}
Pass {PASSWORD}
SSLType None
AuthMechs LOGIN

IMAPStore dst
Account dst

Channel bench
Far :src:
Near :dst:
Patterns *
Create Near
Sync Pull
SyncState {self.work}/state/
""")
        return ["mbsync", "-q", "-c", str(conf), "bench"]


class OfflineImap(Tool):
    name = "offlineimap"

    def cmd(self):
        conf = self.work / "offlineimaprc"
        if not conf.exists():
            conf.write_text(f"""[general]
accounts = bench
metadata = {self.work}/meta
ui = quiet

[Account bench]
localrepository = dst
remoterepository = src

[Repository src]
type = IMAP
remotehost = 127.0.0.1
remoteport = {self.src_port}
remoteuser = src
remotepass = {PASSWORD}
ssl = no
starttls = no
readonly = True

[Repository dst]
type = IMAP
remotehost = 127.0.0.1
remoteport = {self.dst_port}
remoteuser = {self.dst_user}
remotepass = {PASSWORD}
ssl = no
starttls = no
""")
        return ["offlineimap", "-c", str(conf), "-o", "-u", "quiet"]


class _Alone(Tool):
    """A server's own limit (bench/rawimap.py): only the first copy is measured; the wall time is the
    timed part the tool reports (after loading the corpus into memory), CPU and RSS its whole process's."""

    mode = ""
    maildir: Path | None = None

    def cmd(self):
        port, user = (self.dst_port, self.dst_user) if self.mode == "append" else (self.src_port, "src")
        return [sys.executable, str(HERE / "rawimap.py"), self.mode, "127.0.0.1", str(port), user,
                *([str(self.maildir)] if self.mode == "append" else []), "--connections", "3"]

    def run(self) -> Sample:
        with tempfile.NamedTemporaryFile("r") as tf:
            p = subprocess.run(["/usr/bin/time", "-o", tf.name, "-f", "%M %U %S"] + self.cmd(), env=tool_env(),
                               capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeError(f"{self.name}: {p.stderr[-2000:]}")
            rss_kb, user, system = tf.read().split()[-3:]
        wall = float(p.stdout.split("wall=")[1].split()[0])
        return Sample(wall, int(rss_kb) / 1024, float(user) + float(system))


class TargetAlone(_Alone):
    name = "target-alone"
    mode = "append"


class SourceAlone(_Alone):
    name = "source-alone"
    mode = "fetch"


TOOLS = {"mailmigrate": MailMigrate, "mbsync": Mbsync, "offlineimap": OfflineImap}
LIMITS = {"target-alone": TargetAlone, "source-alone": SourceAlone}


def change_source(port: int, msgs, extra, rng: random.Random, maildir: Path, uid, gid, start: int) -> None:
    """1 % new mail (written like a delivery) and 5 % flag changes (over IMAP, as a user would)."""
    write_maildir_fs(maildir, extra, uid, gid, start=start)
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login("src", PASSWORD)
    typ, data = c.list()
    for line in data:
        name = line.decode().rsplit(' "/" ', 1)[-1].strip('"')
        typ, _ = c.select(f'"{name}"')
        if typ != "OK":
            continue
        typ, d = c.uid("SEARCH", None, "ALL")
        uids = d[0].split()
        for u in rng.sample(uids, k=max(0, len(uids) // 20)):
            c.uid("STORE", u, "+FLAGS.SILENT", "(\\Flagged)")
    c.logout()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=3750)
    ap.add_argument("--folders", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tools", default="mailmigrate,mbsync,offlineimap")
    ap.add_argument("--write", metavar="FILE", help="write the table (markdown) here")
    ap.add_argument("--slow-link", metavar="MBIT:RTT_MS", help="e.g. 20:10: a bandwidth- and latency-limited link")
    ap.add_argument("--slow-side", choices=("source", "target", "both"), default="source",
                    help="which server sits behind the slow link (default: source)")
    ap.add_argument("--limits", action="store_true",
                    help="also measure the servers alone: the target taking the corpus from memory (pipelined "
                         "MULTIAPPEND, 3 folders at once) and the source serving it (bench/rawimap.py)")
    ap.add_argument("--storage", default="disk", metavar="LIST",
                    help="where both servers keep their mail (and the tools their state): 'disk' (/tmp, ext4 "
                         "here), 'tmpfs' (/dev/shm, so that the disk does not hide the client's cost) or "
                         "'tmpfs,disk' for both, one after the other in the same run")
    ap.add_argument("--tmpfs", action="store_const", dest="storage", const="tmpfs", help="same as --storage tmpfs")
    ap.add_argument("--features", nargs="?", const="all", metavar="LIST",
                    help="mailmigrate only: all on, then each feature off in turn (default: every feature)")
    args = ap.parse_args(argv)
    precompile()
    if args.features:
        from features import run_features

        table = run_features(args)
        print(table)
        if args.write:
            Path(args.write).write_text(table)
        return 0
    tools = [t for t in args.tools.split(",") if t]
    for t in tools:
        if t != "mailmigrate" and not shutil.which(t):
            sys.exit(f"{t} is not installed (apt-get install {'isync' if t == 'mbsync' else t})")
    msgs = generate(args.messages, args.folders)
    total_bytes = sum(len(m.data) for m in msgs)
    out = []
    for storage in [x for x in args.storage.split(",") if x]:
        if storage not in STORAGE:
            sys.exit(f"--storage: {storage!r} is neither 'tmpfs' nor 'disk'")
        print(f"# mail on {storage}, load average {os.getloadavg()[0]:.2f}", flush=True)
        results = measure(args, tools, msgs, storage)
        table = render(results, tools, args, total_bytes, storage)
        if args.limits:
            table += render_limits(results, tools, args, storage)
        out.append(table)
        print(table, flush=True)
    table = "\n".join(out)
    if args.write:
        Path(args.write).write_text(table)
    return 0


STORAGE = {"tmpfs": "/dev/shm", "disk": "/tmp"}


def measure(args, tools, msgs, storage) -> dict[tuple[str, str], list[Sample]]:
    """Every round of every tool on one kind of storage, with servers of its own."""
    from servers.dovecot import DovecotServer

    base = Path(tempfile.mkdtemp(prefix="mm-bench-", dir=STORAGE[storage]))
    src = DovecotServer(compress=bool(args.slow_link), parent=STORAGE[storage])
    dst = DovecotServer(compress=bool(args.slow_link), parent=STORAGE[storage])
    src.start()
    dst.start()
    results: dict[tuple[str, str], list[Sample]] = {}
    from features import Links

    links = Links(args.slow_link, args.slow_side, src.port, dst.port)
    if args.slow_link:
        MailMigrate.query = "tls=none&compress=yes"
    try:
        src.add_user("src", PASSWORD)
        import pwd

        dv = pwd.getpwnam("dovecot")
        write_maildir_fs(src.maildir("src"), msgs, dv.pw_uid, dv.pw_gid)
        rng = random.Random(7)
        for rnd in range(args.rounds):
            order = tools[rnd % len(tools):] + tools[:rnd % len(tools)]
            runners = {}
            for t in order:
                user = f"{t}{rnd}"
                dst.add_user(user, PASSWORD)
                runners[t] = TOOLS[t](base / "work" / f"{t}{rnd}", links.src_port, links.dst_port, user)
            if args.limits:
                for t, cls in LIMITS.items():
                    user = f"{t.replace('-', '')}{rnd}"
                    dst.add_user(user, PASSWORD)
                    cls.maildir = src.maildir("src")
                    s = servers_cpu_of(cls(base / "work" / f"{t}{rnd}", src.port, dst.port, user).run, src, dst)
                    results.setdefault((t, "first"), []).append(s)
                    print(f"round {rnd + 1} {t:12} first    {s.wall:7.2f}s {s.rss_mb:6.1f} MB {s.cpu:6.2f} cpu-s",
                          flush=True)
            for phase in ("first", "rerun"):
                for t in order:
                    run = runners[t].run
                    s = servers_cpu_of(run, src, dst) if args.limits and phase == "first" else run()
                    results.setdefault((t, phase), []).append(s)
                    print(f"round {rnd + 1} {t:12} {phase:8} {s.wall:7.2f}s {s.rss_mb:6.1f} MB {s.cpu:6.2f} cpu-s",
                          flush=True)
            extra = generate(max(1, args.messages // 100), args.folders, seed=1000 + rnd)
            change_source(src.port, msgs, extra, rng, src.maildir("src"), dv.pw_uid, dv.pw_gid,
                          start=10_000_000 * (rnd + 1))
            for t in order:
                s = runners[t].run()
                results.setdefault((t, "changed"), []).append(s)
                print(f"round {rnd + 1} {t:12} changed  {s.wall:7.2f}s {s.rss_mb:6.1f} MB {s.cpu:6.2f} cpu-s",
                      flush=True)
    finally:
        links.close()
        src.stop()
        dst.stop()
        shutil.rmtree(base, ignore_errors=True)
    return results


def render(results, tools, args, total_bytes, storage="disk") -> str:
    def med(t, phase, attr):
        return statistics.median(getattr(s, attr) for s in results[(t, phase)])

    where = "both sides" if args.slow_side == "both" else f"the {args.slow_side} side"
    link = f" Through a {args.slow_link} (Mbit/s:ms RTT) link on {where}." if args.slow_link else ""
    lines = [f"Corpus: {args.messages} messages, {total_bytes / (1 << 20):.1f} MiB, {args.folders} folders; "
             f"{args.rounds} rounds, medians. Loopback Dovecot 2.3 -> Dovecot 2.3, mail on {storage}.{link}", "",
             "| tool | first copy (s) | rerun, no change (s) | rerun after 1% new + 5% flags (s) | peak RSS (MB) |"
             " CPU s / 1000 msgs |", "| --- | --- | --- | --- | --- | --- |"]
    for t in tools:
        lines.append(f"| {t} | {med(t, 'first', 'wall'):.2f} | {med(t, 'rerun', 'wall'):.2f} | "
                     f"{med(t, 'changed', 'wall'):.2f} | {max(s.rss_mb for ph in ('first', 'rerun', 'changed') for s in results[(t, ph)]):.0f} | "
                     f"{1000 * med(t, 'first', 'cpu') / args.messages:.2f} |")
    if "mailmigrate" in tools:
        lines += ["", "Ratios mailmigrate / peer (below 1 means mailmigrate is faster or smaller):", "",
                  "| peer | first copy | rerun | rerun after changes | peak RSS |", "| --- | --- | --- | --- | --- |"]
        for t in tools:
            if t == "mailmigrate":
                continue
            rss = lambda x: max(s.rss_mb for ph in ("first", "rerun", "changed") for s in results[(x, ph)])  # noqa
            lines.append(
                f"| {t} | {med('mailmigrate', 'first', 'wall') / med(t, 'first', 'wall'):.2f} | "
                f"{med('mailmigrate', 'rerun', 'wall') / med(t, 'rerun', 'wall'):.2f} | "
                f"{med('mailmigrate', 'changed', 'wall') / med(t, 'changed', 'wall'):.2f} | "
                f"{rss('mailmigrate') / rss(t):.2f} |")
    return "\n".join(lines) + "\n"


def render_limits(results, tools, args, storage="disk") -> str:
    """The first copy against the servers' own limits: wall and CPU per 1,000 messages of each client."""
    def med(t, attr):
        return statistics.median(getattr(s, attr) for s in results[(t, "first")])

    k = 1000 / args.messages
    cores = os.cpu_count() or 1
    lines = ["", f"First copy against the servers alone (mail on {storage}; 3 folders at once):", "",
             "| who | wall s / 1,000 msgs | wall / target alone | client CPU s / 1,000 msgs (user + system) |"
             f" servers' CPU s / 1,000 msgs | all CPU / {cores} cores, x target alone |",
             "| --- | --- | --- | --- | --- | --- |"]
    limit = med("target-alone", "wall")
    for t in list(LIMITS) + tools:
        floor = (med(t, "cpu") + med(t, "servers_cpu")) / cores
        lines.append(f"| {t} | {k * med(t, 'wall'):.3f} | {med(t, 'wall') / limit:.2f} | {k * med(t, 'cpu'):.3f} | "
                     f"{k * med(t, 'servers_cpu'):.3f} | {floor / limit:.2f} |")
    lines += ["", "The last column: the least wall time the run's CPU allows on this machine's cores (the client's "
              "and both servers', as if all of it ran in parallel), over the target alone's wall time. A copy "
              "cannot come closer to the limit than that, whatever its client does. (For the target alone itself "
              "it compares its whole process's CPU with its timed part.)"]
    if "mailmigrate" in tools:
        lines += ["", f"mailmigrate wall / target alone: {med('mailmigrate', 'wall') / limit:.2f} (goal <= 1.3)"]
        if "mbsync" in tools:
            lines.append(f"mailmigrate CPU / mbsync CPU: {med('mailmigrate', 'cpu') / med('mbsync', 'cpu'):.2f} "
                         "(goal <= 2)")
            both = {t: med(t, "cpu") + med(t, "servers_cpu") for t in ("mailmigrate", "mbsync")}
            lines.append(f"client + servers' CPU, mailmigrate / mbsync: {both['mailmigrate'] / both['mbsync']:.2f}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
