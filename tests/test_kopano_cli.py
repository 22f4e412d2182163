"""The ``mailmigrate kopano`` command end to end on the sample tree: dry run, apply, rerun, exit statuses."""

from __future__ import annotations

import shutil

from mailmigrate.cli.main import main
from samples import zarafa_sample


def test_config_dry_run_apply_rerun(tmp_path, capsys):
    s = zarafa_sample(tmp_path)
    kopano = tmp_path / "kopano"
    shutil.copytree(s / "kopano-example-config", kopano)
    args = ["kopano", "config", "--zarafa-dir", str(s / "etc-zarafa"), "--kopano-dir", str(kopano),
            "--zarafa-defaults", str(s / "zarafa-example-config"), "--log", str(tmp_path / "log")]
    before = (kopano / "server.cfg").read_text()
    assert main(args + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "+enable_hosted_kopano = true" in out and "Kj8-not-real" not in out
    assert (kopano / "server.cfg").read_text() == before
    assert main(args) == 0
    assert "enable_hosted_kopano = true" in (kopano / "server.cfg").read_text()
    capsys.readouterr()
    assert main(args) == 0
    assert "already done" in capsys.readouterr().out


def test_ldap_offline_and_check_config(tmp_path, capsys):
    s = zarafa_sample(tmp_path)
    out = tmp_path / "kopano.ldif"
    assert main(["kopano", "ldap-offline", str(s / "slapcat.ldif"), str(out)]) == 0
    assert b"kopano-user" in out.read_bytes() and b"zarafa" not in out.read_bytes().lower()
    assert main(["kopano", "check-config", "--kopano-dir", str(s / "kopano-example-config"),
                 "--example-dir", str(s / "kopano-example-config-new")]) == 0
    assert "new option in the example configuration: shared_reminders" in capsys.readouterr().out


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["kopano", "ldap-offline", str(tmp_path / "missing.ldif"), str(tmp_path / "x")]) == 2
    assert main(["kopano", "config", "--zarafa-dir", str(tmp_path / "nope")]) == 2
    assert main(["kopano", "lob-to-files", "--database", "mm_test_absent_db", "--path", str(tmp_path)]) in (1, 2)


def test_each_line_is_printed_once_with_and_without_verbose(tmp_path, capsys):
    """Issue 17: the takeover's warnings were printed twice (in the step and again after it), and with -v
    every line of the plan came a second time through the log on stderr."""
    zarafa, kopano = tmp_path / "zarafa", tmp_path / "kopano"
    zarafa.mkdir()
    (zarafa / "server.cfg").write_text("mysql_database = zarafa\nenable_hosted_zarafa = true\n")
    for verbose in ([], ["-v"]):
        shutil.rmtree(kopano, ignore_errors=True)
        kopano.mkdir()
        assert main(verbose + ["kopano", "config", "--zarafa-dir", str(zarafa), "--kopano-dir", str(kopano)]) == 0
        cap = capsys.readouterr()
        both = cap.out + cap.err
        assert both.count("mysql_database = zarafa: still names Zarafa") == 1, both
        assert both.count("+enable_hosted_kopano = true") == 1, both
        if verbose:
            assert "write Kopano configuration: applied" in cap.err  # the progress line stays
    capsys.readouterr()
    assert main(["kopano", "config", "--zarafa-dir", str(zarafa), "--kopano-dir", str(kopano), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("still names Zarafa") == 1
