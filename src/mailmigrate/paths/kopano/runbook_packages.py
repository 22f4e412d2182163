"""The runbook's package steps (seed 000 4.3.2-4.3.3, seed 001 4.4-4.5), a part of :class:`.runbook.Runbook`.

Printed for the administrator unless ``run_packages``: the runbook then stops at this step and continues
after it when run again.  When run, each command goes through the runbook's runner and is recorded once
done, so a rerun never repeats one.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ...errors import ConfigError, StoreError
from ..plan import Step


class WaitingForAdministrator(StoreError):
    """A step printed commands for the administrator to run by hand; the rerun continues after it."""


class PackageSteps:
    """Mixed into Runbook: uses its settings ``s``, ``runner``, ``services``, ``state`` and config readers."""

    def package_commands(self) -> list[list[str]]:
        d = self.s.distro
        if self.s.kind == "migrate":
            # seed 000, 4.3.2-4.3.3: remove everything ZCP brought, then install Kopano
            pick = "dpkg -l | egrep '(mapi|gsoap|libical|vmime|zarafa)' | awk '{ print $2 }'" if d == "debian" \
                else "rpm -qa | egrep '(mapi|gsoap|libical|vmime|zarafa)' | awk '{ print $1 }'"
            remove = {"debian": "xargs -r apt-get remove -y", "suse": "xargs -r zypper -n rm",
                      "rhel": "xargs -r yum remove -y"}[d]
            return [["sh", "-c", f"{pick} | {remove}"]] + self._install_commands(
                {"debian": ["apt-get", "install", "-y", "kopano-server-packages"],
                 "suse": ["zypper", "-n", "install", "kopano-server-packages"],
                 "rhel": ["yum", "install", "-y", "kopano-server-packages"]}[d])
        return self._install_commands({"debian": ["apt-get", "install", "-y", "--only-upgrade", "kopano-server-packages"],
                                       "suse": ["zypper", "-n", "update", "kopano-server-packages"],
                                       "rhel": ["yum", "update", "-y", "kopano-server-packages"]}[d])

    def _install_commands(self, from_repository: list[str]) -> list[list[str]]:
        if self.s.package_dir is None:
            return [from_repository]
        pkgs = Path(self.s.package_dir)
        kind = "deb" if self.s.distro == "debian" else "rpm"
        if not any(pkgs.glob(f"*.{kind}")):
            raise ConfigError(f"--package-dir {pkgs}: no .{kind} packages there")
        if self.s.distro == "debian":
            # seed 001, 4.5: libvmime first, python-mapi, then the rest; that last dpkg may end in errors
            # ("the big split and renaming of packages"), which apt-get install -f resolves
            vmime = sorted(str(p) for p in pkgs.glob("libvmime0*.deb"))
            pymapi = sorted(str(p) for p in pkgs.glob("python-mapi*.deb"))
            rest = sorted(str(p) for p in pkgs.glob("*.deb") if str(p) not in vmime + pymapi)
            return [c for c in (["dpkg", "-B", "-i", *vmime] if vmime else None,
                                ["dpkg", "-i", *pymapi] if pymapi else None,
                                ["dpkg", "-B", "-i", *rest] if rest else None,
                                ["apt-get", "install", "-f", "-y"]) if c]
        return [["rpm", "-Uvh", *sorted(str(p) for p in pkgs.glob("*.rpm"))]]

    def _packages_step(self) -> Step:
        name = "packages"

        def lines():
            head = []
            if self.s.kind == "migrate":
                head.append("remove a python-zarafa installed from GitHub (e.g. /usr/local/lib/python2.7/"
                            "dist-packages/zarafa): it is not compatible with python-kopano (not done by mailmigrate)")
                if self.s.package_dir is None:
                    head.append("add Kopano's package repository first (it needs your subscription credentials; "
                                "not done by mailmigrate)")
            how = "run: " if self.s.run_packages else "to run by hand: "
            return head + [how + shlex.join(c) for c in self.package_commands()]

        def apply():
            if not self.s.run_packages:
                if not self.state.get("packages printed"):
                    self.state.set("packages printed", True)
                    raise WaitingForAdministrator(
                        "run these package commands by hand (or rerun with --run-packages), then run the same "
                        "command again: it continues after this step\n      " + "\n      ".join(lines()))
                return ["the package commands were run by hand (the runbook was run again after printing them)"]
            cmds, out = self.package_commands(), []
            for i, c in enumerate(cmds):
                k = f"{name}/{i}"
                if not self.state.done(k):
                    # a dpkg followed by apt-get install -f may fail: the seed has apt-get resolve it
                    fixed_later = c[0] == "dpkg" and ["apt-get", "install", "-f", "-y"] in cmds[i + 1:]
                    res = self.runner.run(c, check=not fixed_later)
                    if res.returncode:
                        out.append(f"{shlex.join(c)} ended with status {res.returncode}; apt-get install -f follows")
                    self.state.mark(k)
            return out

        return self._recorded(name, "package removal / installation / upgrade for " + self.s.distro, lines, apply)

