"""The runbook's first start (seed 001 4.1.1 and 4.5), a part of :class:`.runbook.Runbook`.

Safe mode on, kopano-server started once beside the runbook (with ``--ignore-attachment-storage-conflict``
after attachments left the database), ``kopano-admin -l`` so that it reads its users, its log read for
errors and for the user changes safe mode refused, then that server stopped and server.cfg as before with
safe mode off.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from ...errors import StoreError
from ..plan import write_atomic
from . import cfgfile
from .services import CommandFailed

# Kopano's log line levels (common/ECLogger.cpp ll_names): "[crit   ]", "[error  ]"
_ERROR_LINE = re.compile(r"\[\s*(crit|error|fatal)\s*\]", re.I)
# what safe mode logs instead of changing a user (provider/libserver/ECUserManagement.cpp), at info level
_SAFE_MODE_LINE = re.compile(r"user_safe_mode: would (create|update|move|delete)", re.I)
DEFAULT_LOG = "/var/log/kopano/server.log"
INFO_LEVEL = 5  # ECLogger.h: EC_LOGLEVEL_INFO; Kopano's default log_level is 3 (warning)


class LogHasErrors(StoreError):
    """kopano-server's log shows errors after the first start."""


class FirstStartSteps:
    """Mixed into Runbook: uses its settings ``s``, ``runner``, ``services``, ``state`` and config readers."""

    def log_file(self) -> Path | None:
        """The server's log file, or None when it logs elsewhere.  log_method "auto" (Kopano's default in
        its last releases) means the file when log_file names one, else syslog (ECLogger.cpp)."""
        cfg = self.kopano_server_cfg()
        method, name = cfg.get("log_method", "auto"), cfg.get("log_file", "")
        if method == "file" and name != "-":
            return self.s.sys(name or DEFAULT_LOG)
        if method == "auto" and name not in ("", "-"):
            return self.s.sys(name)
        return None

    def pid_file(self) -> Path:
        return self.s.sys(self.kopano_server_cfg().get("pid_file", "/var/run/kopano/server.pid"))

    def first_start_settings(self) -> dict[str, str]:
        """server.cfg for the first start: safe mode, a log file the runbook reads, and log_level at least
        info — safe mode reports the user changes it refuses at info level."""
        cfg = self.kopano_server_cfg()
        want = {"user_safe_mode": "yes"}
        if self.log_file() is None:
            want.update(log_method="file", log_file=DEFAULT_LOG)
        try:
            level = int(cfg.get("log_level", "3"))
        except ValueError:
            level = 3
        if level < INFO_LEVEL:
            want["log_level"] = str(INFO_LEVEL)
        return want

    def _edit_server_cfg(self, values: dict[str, str | None]) -> list[str]:
        text = self.server_cfg_path.read_text() if self.server_cfg_path.exists() else ""
        new = text
        for k, v in values.items():
            new = cfgfile.comment_out(new, k) if v is None else \
                cfgfile.set_directive(new, k, v, "mailmigrate: for the first start of the upgrade")
        if new != text:
            write_atomic(self.server_cfg_path, new.encode(), mode=0o640)
        return [f"{self.server_cfg_path}: {k} = {v}" if v is not None else f"{self.server_cfg_path}: {k} as before"
                for k, v in values.items()]

    def _safe_mode_on(self) -> list[str]:
        want = self.first_start_settings()
        if self.state.get("settings before the first start") is None:
            cfg = self.kopano_server_cfg()
            self.state.set("settings before the first start", {k: cfg.get(k) for k in want})
        return self._edit_server_cfg(want)

    def _safe_mode_off(self) -> list[str]:
        before = dict(self.state.get("settings before the first start") or {})
        before["user_safe_mode"] = "no"  # the seed: never left on in production
        return self._stop_first_start() + self._edit_server_cfg(before)

    def first_start_argv(self) -> list[str]:
        argv = ["kopano-server"]
        if self.state.get("storage converted"):
            argv.append("--ignore-attachment-storage-conflict")  # seed 001, 4.1.1: one start with it
        return argv

    def _first_start(self) -> list[str]:
        log = self.log_file()
        self.state.set("log offset", log.stat().st_size if log is not None and log.exists() else 0)
        self.s.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        pid = self.runner.spawn(self.first_start_argv(), output=self.s.work_dir / "first-start.out")
        self.state.set("first start pid", pid)
        return [f"started (pid {pid}), its output in {self.s.work_dir / 'first-start.out'}"] if pid else []

    def _running_first_start(self) -> int | None:
        """The first start's process: the pid file's (releases that fork), else the one started here."""
        try:
            pid = int(self.pid_file().read_text().split()[0])
            if _alive(pid):
                return pid
        except (OSError, ValueError, IndexError):
            pass
        pid = int(self.state.get("first start pid") or 0)
        return pid if pid and _alive(pid) else None

    def _stop_first_start(self) -> list[str]:
        pid = self._running_first_start()
        if pid is None:
            return ["the first start is not running"]
        self.runner.run(["kill", "-TERM", str(pid)])
        for _ in range(600):  # kopano-server finishes its sessions before it exits
            if not _alive(pid):
                return [f"kopano-server (pid {pid}) stopped"]
            time.sleep(0.2)
        raise CommandFailed(f"kopano-server (pid {pid}) did not stop within 120 s")

    def _list_users(self) -> None:
        """``kopano-admin -l`` makes the server read the user list (the seed's own check): in safe mode it
        then logs each user it would create or delete.  The server may still be starting: tried again."""
        for attempt in range(30):
            try:
                self.runner.run(["kopano-admin", "-l"])
                return
            except CommandFailed:
                if attempt == 29:
                    raise
                time.sleep(2)

    def log_findings(self) -> list[str]:
        log = self.log_file()
        if log is None:
            return []
        try:
            with open(log, "rb") as f:
                f.seek(int(self.state.get("log offset", 0)))
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return []
        return [ln for ln in text.splitlines() if _ERROR_LINE.search(ln) or _SAFE_MODE_LINE.search(ln)]

    def _check_log(self) -> list[str]:
        self._list_users()
        log = self.log_file()
        bad = self.log_findings()
        if bad:
            stopped = self._stop_first_start()
            self.state.unmark("first start")
            raise LogHasErrors(f"{log} shows errors after the first start (user changes or failures; "
                               f"{'; '.join(stopped)}); fix them and run again, the first start is repeated:\n  "
                               + "\n  ".join(bad[:30]))
        return [f"{log}: no errors and no user changes since the first start"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child has exited
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return True
