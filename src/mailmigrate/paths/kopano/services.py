"""The runbook's only doors to the operating system: one command runner and one service manager.

The seeds tell an administrator to type ``service kopano-server stop``, ``slapadd``, ``mysqldump`` and so on
in a given order.  The runbook issues every such command through :class:`Runner`, and every service start
or stop through a :class:`Services` built on that runner, so that one object sees the whole sequence.  A
:class:`Recorder` is that object for a dry run and for tests: it keeps the argument vectors in order (the
proof of the order) and, for the programs it is told to pass through, still runs them for real, which is
how the tests run slapadd or mariadb-dump against a real slapd and MariaDB while service commands are only
recorded.

Secrets never travel in an argument vector: callers give them in files (mariadb-dump's option file), so
what is recorded or logged can be shown as it is.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ConfigError, StoreError

log = logging.getLogger("mailmigrate.kopano.runbook")


class CommandFailed(StoreError):
    """An external command of the runbook ended with a non-zero status (or could not be started)."""


@dataclass
class Completed:
    argv: list[str]
    returncode: int = 0
    stderr: str = ""


class Runner:
    """Runs an argument vector; stdout goes to a file when asked (a dump), else it is discarded."""

    def run(self, argv: list[str], *, stdout: str | os.PathLike | None = None, check: bool = True) -> Completed:
        log.info("run: %s", " ".join(argv))
        try:
            if stdout is not None:
                with open(stdout, "wb") as out:
                    os.chmod(stdout, 0o600)
                    p = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            else:
                p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        except OSError as e:
            raise CommandFailed(f"{argv[0]}: cannot run: {e}") from None
        res = Completed(list(argv), p.returncode, p.stderr.decode("utf-8", "replace").strip()[-2000:])
        if check and res.returncode != 0:
            raise CommandFailed(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr}")
        return res

    def spawn(self, argv: list[str], *, output: str | os.PathLike) -> int:
        """Start a program that keeps running (a server) and return its pid, its output appended to
        ``output``.  Kopano >= 8.7.81 always runs in the foreground (RELNOTES: -F removed); older releases
        fork, and their pid is the one in the pid file."""
        log.info("start: %s", " ".join(argv))
        try:
            with open(output, "ab") as out:
                p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        except OSError as e:
            raise CommandFailed(f"{argv[0]}: cannot start: {e}") from None
        return p.pid


@dataclass
class Recorder(Runner):
    """Keeps every command in order; runs for real only the programs named in ``passthrough``.

    ``fail_on`` makes the first command whose vector contains all of its words fail once, so a test can
    interrupt the runbook at any command and prove what a rerun does.
    """

    passthrough: frozenset[str] = frozenset()
    fail_on: tuple[str, ...] | None = None
    commands: list[list[str]] = field(default_factory=list)
    real: Runner = field(default_factory=Runner)

    def _record(self, argv: list[str]) -> list[str]:
        argv = [str(a) for a in argv]
        if self.fail_on and all(w in argv for w in self.fail_on):
            self.fail_on = None
            self.commands.append(argv + ["(failed)"])
            raise CommandFailed(f"{' '.join(argv)} failed (injected)")
        self.commands.append(argv)
        return argv

    def run(self, argv: list[str], *, stdout: str | os.PathLike | None = None, check: bool = True) -> Completed:
        argv = self._record(argv)
        if Path(argv[0]).name in self.passthrough:
            return self.real.run(argv, stdout=stdout, check=check)
        if stdout is not None:
            Path(stdout).write_bytes(b"")
        return Completed(argv)

    def spawn(self, argv: list[str], *, output: str | os.PathLike) -> int:
        """Recorded like any command; started for real only when passed through (else pid 0: none)."""
        argv = self._record(argv)
        if Path(argv[0]).name in self.passthrough:
            return self.real.spawn(argv, output=output)
        return 0


class Services:
    """Stop and start services through the runner; subclasses say which command the system uses."""

    kind = "services"

    def __init__(self, runner: Runner):
        self.runner = runner

    def argv(self, action: str, name: str) -> list[str]:
        raise NotImplementedError

    def stop(self, name: str) -> None:
        self.runner.run(self.argv("stop", name))

    def start(self, name: str) -> None:
        self.runner.run(self.argv("start", name))

    def restart(self, name: str) -> None:
        self.runner.run(self.argv("restart", name))


class Systemctl(Services):
    kind = "systemctl"

    def argv(self, action: str, name: str) -> list[str]:
        return ["systemctl", action, name]


class SysV(Services):
    """``service NAME ACTION`` as the seeds write it: SysV init scripts, or systemd's compatibility wrapper."""

    kind = "service"

    def argv(self, action: str, name: str) -> list[str]:
        return ["service", name, action]


KINDS = {"systemctl": Systemctl, "service": SysV}


def detect(root: str | os.PathLike = "/") -> str:
    """systemctl when systemd is the running init (``/run/systemd/system`` exists, as sd_booted() checks),
    else ``service`` when installed."""
    if (Path(root) / "run/systemd/system").is_dir() and shutil.which("systemctl"):
        return "systemctl"
    if shutil.which("service"):
        return "service"
    raise ConfigError("neither systemd nor the service command is available: choose --services")


def services_for(kind: str, runner: Runner) -> Services:
    if kind == "auto":
        kind = detect()
    try:
        return KINDS[kind](runner)
    except KeyError:
        raise ConfigError(f"unknown service manager {kind!r} (auto, systemctl, service)") from None
