"""The project file takes sync's copying options too (issue 21): [options] connections, retries, max_rate and
max_bandwidth reach the run exactly as `sync --connections/--retries/--max-rate/--max-bandwidth` would."""

from __future__ import annotations

import pytest

from mailmigrate.errors import ConfigError
from mailmigrate.workflow.project import load_project


def _file(tmp_path, options: str):
    p = tmp_path / "acme.toml"
    (tmp_path / "src").mkdir(exist_ok=True)
    p.write_text(f"""[project]
name = "acme"
[source]
url = "maildir:{tmp_path}/src"
[target]
url = "maildir:{tmp_path}/dst"
[options]
{options}
""")
    return p


def test_copying_options_reach_the_request(tmp_path):
    from mailmigrate.model import Account
    from mailmigrate.paths.mailbox import MailboxPath

    proj = load_project(_file(tmp_path, "connections = 1\nretries = 2\nmax_rate = 5\nmax_bandwidth = 1.5"))
    assert (proj.connections, proj.retries, proj.max_rate, proj.max_bandwidth) == (1, 2, 5.0, 1.5)
    req = MailboxPath(proj).request([Account("a", "a")])
    assert req.max_rate == 5.0 and req.max_bandwidth == 1.5 * (1 << 20)
    default = load_project(_file(tmp_path, ""))
    assert (default.connections, default.retries, default.max_rate) == (3, 6, None)


@pytest.mark.parametrize("bad", ["connections = 0", "retries = \"many\"", "max_rate = -1", "max_bandwidth = true"])
def test_a_wrong_value_is_named(tmp_path, bad):
    with pytest.raises(ConfigError, match=f"\\[options\\] {bad.split()[0]} must be"):
        load_project(_file(tmp_path, bad))
