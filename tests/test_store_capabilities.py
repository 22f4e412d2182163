"""What a store can do is declared once, on its class (stores/base.py), and the URL registry, the CLI and the
engine read that declaration: no list of writable kinds anywhere else to forget a new store in."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mailmigrate.errors import ConfigError
from mailmigrate.model import Secret
from mailmigrate.stores import registry
from mailmigrate.stores.registry import StoreOptions, build_store, parse_spec

MM = [sys.executable, "-m", "mailmigrate.cli.main"]
URLS = {"imap": "imap://u@127.0.0.1", "maildir": "maildir:{d}", "mbox": "mbox:{d}/box",
        "communigate": "communigate:{d}"}


def test_every_url_kind_has_a_store_class():
    assert set(URLS) == set(registry._CLASSES) and set(registry.FILE_KINDS) < set(URLS)


@pytest.mark.parametrize("kind", sorted(URLS))
def test_a_urls_capabilities_are_its_store_classes(kind, tmp_path, monkeypatch):
    spec = parse_spec(URLS[kind].format(d=tmp_path))
    cls = registry.store_class(kind)
    assert (spec.writable, spec.searches) == (cls.writable, cls.searches)
    was = cls.writable
    monkeypatch.setattr(cls, "writable", not was)  # the declaration decides, nothing else
    assert spec.writable is (not was)


def test_the_declarations():
    assert {k for k in URLS if registry.store_class(k).writable} == {"imap", "maildir"}
    assert {k for k in URLS if registry.store_class(k).searches} == {"imap"}


@pytest.mark.parametrize("kind", ["mbox", "communigate"])
def test_a_read_only_store_is_refused_as_a_target(kind, tmp_path):
    (tmp_path / "box").write_bytes(b"")
    spec = parse_spec(URLS[kind].format(d=tmp_path))
    with pytest.raises(ConfigError, match="is a source only"):
        build_store(spec, user="u@example.org", password=Secret("x"), options=StoreOptions(), side="target")


def _mm(*args):
    return subprocess.run([*MM, *map(str, args)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MAILMIGRATE_SOURCE_PASSWORD": "x", "MAILMIGRATE_TARGET_PASSWORD": "y"})


def test_the_cli_refuses_a_read_only_target_and_search_on_a_file_source(tmp_path):
    src = tmp_path / "src"
    for sub in ("cur", "new", "tmp"):
        (src / sub).mkdir(parents=True)
    (tmp_path / "box").write_bytes(b"")
    p = _mm("sync", f"maildir:{src}", f"mbox:{tmp_path}/box", "--state", tmp_path / "s.db")
    assert p.returncode == 2 and "mbox cannot be a target" in p.stderr
    p = _mm("sync", f"maildir:{src}", f"maildir:{tmp_path}/dst", "--state", tmp_path / "s.db", "--search", "ALL")
    assert p.returncode == 2 and "works on IMAP sources only, not on maildir:" in p.stderr
