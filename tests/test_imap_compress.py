"""COMPRESS=DEFLATE against Dovecot with imap_zlib, and the diagnostic feature switches as seen on the wire.

Bytes are counted and read by tests/servers/faultproxy.py between mailmigrate and the servers; the copies are
checked with imaplib (tests/servers/imapcheck.py), as in test_sync_imap.py.
"""

from __future__ import annotations

import base64
import itertools
import random
import re
import tracemalloc

import pytest

from conftest import ImapAccount
from servers.dovecot import DovecotServer, available
from mailmigrate.errors import ConfigError
from mailmigrate.imap import compress, diag
from mailmigrate.model import AppendItem, Body, Secret
from mailmigrate.stores.imap import ImapStore
from mailmigrate.stores.registry import parse_spec
from servers.faultproxy import Fault, FaultProxy
from test_sync_imap import assert_same, env_for, mm, msg, populate, snapshot

WORDS = ("migration mailbox server report meeting budget tomorrow please thanks regards invoice travel "
         "schedule quarter numbers draft review").split()


def text(rng: random.Random, size: int) -> bytes:
    """Prose-like lines: compresses about as well as real mail text does."""
    out = bytearray()
    while len(out) < size:
        out += (" ".join(rng.choice(WORDS) for _ in range(11)) + "\r\n").encode()
    return bytes(out)


def corpus(seed: int = 3) -> dict[str, list[tuple[bytes, str]]]:
    rng = random.Random(seed)
    big_text = b"Subject: the 3 MB report\r\n\r\n" + text(rng, 3 << 20)
    attachment = (b"Subject: scan\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
                  b"\r\n" + base64.encodebytes(rng.randbytes(1 << 20)).replace(b"\n", b"\r\n"))
    return {
        # Many small messages: MULTIAPPEND commands with a hundred literals each.
        "INBOX": [(b"Subject: note %d\r\n\r\n" % i + text(rng, rng.choice([200, 900, 3000])), rng.choice(["", "\\Seen"]))
                  for i in range(150)],
        "Big": [(big_text, "\\Seen"), (attachment, "\\Flagged")],
        "Work": [(msg(i, rng.choice([5000, 40000])), "\\Seen") for i in range(30)],
    }


_ids = itertools.count()


@pytest.fixture(scope="module")
def zpair():
    if not available():
        pytest.skip("needs root and Debian's dovecot-imapd")
    src, dst = DovecotServer(compress=True, tls=True).start(), DovecotServer(compress=True, tls=True).start()
    yield src, dst
    for s in (src, dst):
        s.proc.terminate()  # both shut down at once
    src.stop()
    dst.stop()


@pytest.fixture
def zservers(zpair):
    """A source and a target Dovecot that offer COMPRESS=DEFLATE, with a fresh source account."""
    src_srv, dst_srv = zpair
    n = next(_ids)
    src = ImapAccount(src_srv, f"zsrc{n}", f"pw-zsrc{n}")
    src_srv.add_user(src.user, src.password)
    return src, dst_srv


def target(dst_srv, name: str) -> ImapAccount:
    name = f"{name}{next(_ids)}"
    t = ImapAccount(dst_srv, name, f"pw-{name}")
    dst_srv.add_user(t.user, t.password)
    return t


def proxied_url(acc: ImapAccount, proxy: FaultProxy, **params) -> str:
    q = "&".join(f"{k}={v}" for k, v in {"tls": "none", **params}.items())
    return f"imap://{acc.user}@127.0.0.1:{proxy.port}?{q}"


def sync_recorded(src, dst, state, *, fault: Fault | None = None, env=None, **params) -> tuple[FaultProxy, FaultProxy]:
    """A sync through two recording proxies, returned closed so that their transcripts hold the whole run;
    ``fault`` applies to every connection of both sides."""
    with FaultProxy(src.port, record=True) as sp, FaultProxy(dst.port, record=True) as tp:
        if fault is not None:
            sp.default = tp.default = fault
        mm("sync", proxied_url(src, sp, **params), proxied_url(dst, tp, **params), "--state", state, "--no-progress",
           env={**env_for(src, dst), **(env or {})})
    return sp, tp


def test_compressed_sync_is_exact_and_crosses_fewer_bytes(zservers, tmp_path):
    src, dst_srv = zservers
    populate(src, corpus())
    original = snapshot(src)
    wire = {}
    for mode in ("no", "auto", "yes"):
        dst = target(dst_srv, f"z{mode}")
        sp, tp = FaultProxy(src.port), FaultProxy(dst.port)
        try:
            # Under STARTTLS: compression sits between IMAP and TLS, so the bytes counted are still smaller.
            mm("sync", proxied_url(src, sp, tls="starttls", cafile=src.server.cafile, compress=mode),
               proxied_url(dst, tp, tls="starttls", cafile=dst.server.cafile, compress=mode),
               "--state", tmp_path / f"{mode}.db", "--no-progress", env=env_for(src, dst))
        finally:
            sp.close()
            tp.close()
        assert snapshot(dst) == original
        wire[mode] = (sp.bytes_down, tp.bytes_up)
    plain_down, plain_up = wire["no"]
    assert plain_down > 4 << 20 and plain_up > 4 << 20  # the whole corpus crossed each way
    # The proxy is on loopback: auto does not compress there.
    assert abs(wire["auto"][0] - plain_down) < plain_down * 0.02
    assert abs(wire["auto"][1] - plain_up) < plain_up * 0.02
    # Compressed: bodies from the source and appends to the target both shrink.
    down, up = wire["yes"]
    assert down < plain_down * 0.6, (down, plain_down)
    assert up < plain_up * 0.6, (up, plain_up)


def test_compressed_without_literal_plus_or_pipelining(zservers, tmp_path):
    """Synchronising literals make the client wait for "+" mid-command: the compressor must flush there."""
    src, dst_srv = zservers
    rng = random.Random(5)
    populate(src, {"INBOX": [(b"Subject: %d\r\n\r\n" % i + text(rng, 2000), "") for i in range(40)]
                   + [(b"Subject: big\r\n\r\n" + text(rng, 3 << 20), "\\Seen")]})
    dst = target(dst_srv, "zsync")
    sp, tp = sync_recorded(src, dst, tmp_path / "s.db", env={diag.ENV: "literal+,pipelining"}, compress="yes")
    assert_same(src, dst)
    up = b"".join(d for way, _, d in tp.transcript if way == "up")
    assert b"COMPRESS DEFLATE" in up and tp.bytes_up < (3 << 20) * 0.6


def test_server_without_compress_just_works(imap_accounts, tmp_path):
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(i, 2000), "\\Seen") for i in range(20)]})
    sp, tp = sync_recorded(src, dst, tmp_path / "s.db", compress="yes")
    assert_same(src, dst)
    for p in (sp, tp):
        assert not any(b"COMPRESS" in d for way, _, d in p.transcript if way == "up")


def test_large_message_streams_through_compression_with_flat_memory(zservers):
    src, dst_srv = zservers
    dst = target(dst_srv, "zbig")
    rng = random.Random(9)
    big = b"Subject: big\r\n\r\n" + text(rng, 24 << 20)
    s = ImapStore("127.0.0.1", src.port, user=src.user, password=Secret(src.password), tls="none", compress="yes")
    t = ImapStore("127.0.0.1", dst.port, user=dst.user, password=Secret(dst.password), tls="none", compress="yes")
    s.open()
    t.open()
    try:
        assert s.conn.deflater is not None and t.conn.deflater is not None
        s.append(("INBOX",), [AppendItem(Body.from_bytes(big), frozenset({"\\Seen"}), None)])
        size = len(big)
        del big
        _, metas = s.list_messages(("INBOX",))
        tracemalloc.start()
        for meta, body in s.fetch(("INBOX",), [m.key for m in metas]):
            assert not body.in_memory and body.size == size
            t.append(("INBOX",), [AppendItem(body, meta.flags, meta.internaldate)])
            body.close()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 8 * 1024 * 1024, f"peak Python memory {peak / 1e6:.1f} MB for a {size / 1e6:.0f} MB message"
    finally:
        s.close()
        t.close()
    assert_same(src, dst)


def test_auto_compresses_only_towards_remote_addresses():
    caps = {"IMAP4REV1", compress.CAPABILITY}
    for local in ("127.0.0.1", "::1", "10.1.2.3", "192.168.7.1", "172.20.0.5", "fe80::1", "fd00::5",
                  "::ffff:192.168.1.2"):
        assert not compress.wanted("auto", local, caps), local
    for remote in ("93.184.216.34", "8.8.4.4", "2a00:1450:4001::1"):
        assert compress.wanted("auto", remote, caps), remote
    assert compress.wanted("yes", "127.0.0.1", caps)
    assert not compress.wanted("no", "8.8.4.4", caps)
    assert not compress.wanted("yes", "8.8.4.4", {"IMAP4REV1"})


def test_bad_compress_option_and_unknown_switch_are_refused():
    with pytest.raises(ConfigError):
        parse_spec("imap://ann@mail.example.org?compress=maybe")
    assert parse_spec("imap://ann@mail.example.org?compress=no").params["compress"] == "no"
    with pytest.raises(ConfigError, match="pipelineing"):
        diag.disabled({diag.ENV: "pipelineing"})


# --- the diagnostic switches, observed on the wire --------------------------------------------------------

TAGGED = re.compile(rb"^(M\d+) ([A-Z]+(?: [A-Z]+)?)")
DONE = re.compile(rb"^M\d+ (?:OK|NO|BAD)\b")


def observe(src_proxy: FaultProxy, dst_proxy: FaultProxy) -> dict:
    """What the client did, read from the transcripts: the most commands in flight on one connection, the
    APPEND commands, whether literals were non-synchronising, the UID sets of body fetches."""
    in_flight: dict[tuple[str, int], int] = {}
    most = 0
    appends = 0
    fetch_sets: list[bytes] = []
    buffers: dict[tuple[str, str, int], bytes] = {}
    for name, proxy in (("src", src_proxy), ("dst", dst_proxy)):
        for way, conn, data in proxy.transcript:
            key = (name, way, conn)
            lines = (buffers.get(key, b"") + data).split(b"\r\n")
            buffers[key] = lines.pop()
            for line in lines:
                if way == "up" and TAGGED.match(line):
                    in_flight[(name, conn)] = in_flight.get((name, conn), 0) + 1
                    most = max(most, in_flight[(name, conn)])
                    if line.split(b" ", 2)[1] == b"APPEND":
                        appends += 1
                    m = re.match(rb"^M\d+ UID FETCH (\S+) \(UID FLAGS INTERNALDATE BODY\.PEEK\[\]\)", line)
                    if m:
                        fetch_sets.append(m.group(1))
                elif way == "down" and DONE.match(line):
                    in_flight[(name, conn)] -= 1
    up = b"".join(d for way, _, d in dst_proxy.transcript if way == "up")
    return {"most_in_flight": most, "appends": appends, "literal_plus": re.search(rb"\{\d+\+\}\r\n", up) is not None,
            "fetch_sets": fetch_sets,
            "compress": any(b"COMPRESS DEFLATE" in d for p in (src_proxy, dst_proxy)
                            for way, _, d in p.transcript if way == "up")}


@pytest.mark.parametrize("off", ["", "pipelining", "fetch-batch", "multiappend", "literal+", "compress"])
def test_each_switch_turns_its_feature_off_and_the_copy_stays_exact(zservers, tmp_path, off):
    src, dst_srv = zservers
    n = 24
    populate(src, {"INBOX": [(msg(i, 500), "") for i in range(n)], "Work": [(msg(100 + i), "\\Seen") for i in range(n)]})
    dst = target(dst_srv, "zdiag")
    # Responses held back a little: a command sent before the previous completion arrived is then seen on
    # the wire before that completion, however fast the server is.
    held_back = Fault("slow_down", delay=0.01) if off in ("", "pipelining") else None
    # Compressed traffic cannot be read back, so only the compress switch's own run asks for it.
    sp, tp = sync_recorded(src, dst, tmp_path / "s.db", fault=held_back, env={diag.ENV: off},
                           compress="yes" if off == "compress" else "no")
    assert_same(src, dst)
    seen = observe(sp, tp)
    if off == "compress":
        assert not seen["compress"]
        return
    if off in ("", "pipelining"):
        assert (seen["most_in_flight"] == 1) == (off == "pipelining")
    assert all(re.fullmatch(rb"\d+", s) for s in seen["fetch_sets"]) == (off == "fetch-batch")
    assert len(seen["fetch_sets"]) == (2 * n if off == "fetch-batch" else 2)
    assert (seen["appends"] == 2 * n) == (off == "multiappend")
    assert seen["literal_plus"] == (off != "literal+")


def test_compress_switch_positive_control(zservers, tmp_path):
    """The same run as the compress switch's, without the switch: COMPRESS is sent, so the check can fail."""
    src, dst_srv = zservers
    populate(src, {"INBOX": [(msg(i, 500), "") for i in range(10)]})
    dst = target(dst_srv, "zctl")
    sp, tp = sync_recorded(src, dst, tmp_path / "s.db", compress="yes")
    assert_same(src, dst)
    assert observe(sp, tp)["compress"]
