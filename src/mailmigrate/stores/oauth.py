"""OAuth 2.0 access tokens for IMAP logins: where a token comes from, and keeping it fresh.

Microsoft 365 has switched basic authentication off for IMAP and Gmail discourages it, so a migration from or
to them logs in with SASL XOAUTH2 or OAUTHBEARER (RFC 7628) and a bearer token.  Tokens expire (an hour is
usual) while a migration runs for days, and every new connection (a retry, a folder worker, the next account)
logs in again, so the token is asked for at each login and renewed before it expires:

* :class:`FileToken` — a 0600 file holding the token, read at each login (an outside tool keeps it fresh);
* :class:`CommandToken` — a command that prints the token (or the JSON of a token response), run again when
  the last one is about to expire;
* :class:`RefreshToken` — the refresh-token grant (RFC 6749 section 6) against the provider's token endpoint,
  from a 0600 JSON file holding the endpoint, client id, client secret and refresh token; a refresh token
  the provider rotates is written back to that file.

No token, secret or refresh token is ever taken from the command line (it would show in process listings);
they are :class:`~mailmigrate.model.Secret` in memory and never logged.  A login refused with a token that
should still be valid is tried once more with a freshly fetched one (the provider may have revoked it early).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..credentials import check_private as _private  # the one check of files holding secrets
from ..errors import AuthenticationFailed, ConfigError, TemporaryFailure
from ..formats.atomic import replace_file
from ..model import Secret

log = logging.getLogger("mailmigrate.oauth")

#: renew this many seconds before the provider's expiry, or a tenth of the lifetime if that is shorter
MARGIN = 120.0
MECHANISMS = ("xoauth2", "oauthbearer")


class TokenSource:
    """What an IMAP connection logs in with instead of a password (see ``imap.connection.login``)."""

    #: "xoauth2", "oauthbearer", or None: the first of OAUTHBEARER and XOAUTH2 the server offers
    mechanism: str | None = None
    #: a second, fresh token can differ from the first (worth one more try after a refusal)
    renewable = True

    def __init__(self, mechanism: str | None = None):
        if mechanism is not None and mechanism.lower() not in MECHANISMS:
            raise ConfigError(f"OAuth mechanism {mechanism!r} is not one of {', '.join(MECHANISMS)}")
        self.mechanism = mechanism.lower() if mechanism else None
        self._lock = threading.Lock()
        self._token: Secret | None = None
        self._expires = 0.0  # monotonic time after which the cached token is not used
        self.fetched = 0  # how many tokens were fetched (for tests and the log)

    def token(self, *, fresh: bool = False) -> Secret:
        """A token valid for a while yet; ``fresh`` fetches a new one whatever the cache says."""
        with self._lock:
            if fresh or self._token is None or time.monotonic() >= self._expires:
                token, lifetime = self._fetch()
                self.fetched += 1
                self._token = token
                margin = MARGIN if lifetime is None else min(MARGIN, lifetime / 10)
                self._expires = time.monotonic() + (lifetime - margin if lifetime is not None else 0.0)
                log.info("OAuth token from %s%s", self.describe(),
                         f", valid for {lifetime:.0f} s" if lifetime is not None else "")
            return self._token

    def _fetch(self) -> tuple[Secret, float | None]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def __bool__(self) -> bool:  # "a password was given"
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


def _token_response(text: str, origin: str) -> tuple[Secret, float | None]:
    """A bare token, or the JSON of a token response (``access_token``, ``expires_in``)."""
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise AuthenticationFailed(f"{origin} gave JSON that cannot be read") from None
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise AuthenticationFailed(f"{origin} gave no access_token"
                                       + (f" ({data.get('error')}: {data.get('error_description', '')})"
                                          if data.get("error") else ""))
        expires = data.get("expires_in")
        try:
            lifetime = float(expires) if expires is not None else None
        except (TypeError, ValueError):
            lifetime = None
        return Secret(token), lifetime
    if not text or any(c.isspace() for c in text):
        raise AuthenticationFailed(f"{origin} gave no token (an empty or multi-word answer)")
    return Secret(text), None


class FileToken(TokenSource):
    def __init__(self, path: str | os.PathLike, mechanism: str | None = None):
        super().__init__(mechanism)
        self.path = Path(path)
        _private(self.path, "OAuth token file")

    def _fetch(self):
        _private(self.path, "OAuth token file")
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"OAuth token file {self.path}: {e.strerror}") from None
        token, lifetime = _token_response(text, f"OAuth token file {self.path}")
        return token, 0.0 if lifetime is None else lifetime  # read again at every login: someone renews it

    def describe(self) -> str:
        return f"file {self.path}"


class CommandToken(TokenSource):
    """``command`` is split like a shell would (no shell runs it) and must print the token on stdout."""

    def __init__(self, command: str, mechanism: str | None = None, timeout: float = 60.0):
        super().__init__(mechanism)
        self.argv = shlex.split(command)
        if not self.argv:
            raise ConfigError("the OAuth token command is empty")
        self.timeout = timeout

    def _fetch(self):
        try:
            r = subprocess.run(self.argv, capture_output=True, text=True, timeout=self.timeout,
                               stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise ConfigError(f"OAuth token command {self.argv[0]}: not found") from None
        except subprocess.TimeoutExpired:
            raise TemporaryFailure(f"OAuth token command {self.argv[0]} ran longer than {self.timeout:.0f} s") \
                from None
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or [""])[-1][:300]
            raise AuthenticationFailed(f"OAuth token command {self.argv[0]} failed (exit {r.returncode}): {last}")
        return _token_response(r.stdout, f"OAuth token command {self.argv[0]}")

    def describe(self) -> str:
        return f"command {self.argv[0]}"


class RefreshToken(TokenSource):
    """The refresh-token grant.  The JSON file (0600): ``token_endpoint``, ``client_id``, ``refresh_token``,
    and where the provider wants them ``client_secret`` and ``scope``."""

    def __init__(self, path: str | os.PathLike, mechanism: str | None = None, timeout: float = 30.0,
                 cafile: str | None = None):
        super().__init__(mechanism)
        self.path = Path(path)
        self.timeout = timeout
        self.cafile = cafile
        _private(self.path, "OAuth refresh file")
        self._conf = self._read()

    def _read(self) -> dict:
        try:
            conf = json.loads(self.path.read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"OAuth refresh file {self.path}: {e.strerror}") from None
        except ValueError:
            raise ConfigError(f"OAuth refresh file {self.path} is not JSON") from None
        if not isinstance(conf, dict):
            raise ConfigError(f"OAuth refresh file {self.path} is not a JSON object")
        missing = [k for k in ("token_endpoint", "client_id", "refresh_token") if not conf.get(k)]
        if missing:
            raise ConfigError(f"OAuth refresh file {self.path} lacks {', '.join(missing)}")
        if not str(conf["token_endpoint"]).startswith(("https://", "http://127.", "http://localhost", "http://[::1]")):
            raise ConfigError(f"OAuth refresh file {self.path}: token_endpoint must be https:// (plain http only "
                              f"on loopback)")
        return conf

    def _fetch(self):
        """Under a lock shared by every process using this file (a run's parallel accounts, a fleet worker's
        processes): the file is read again first, so a refresh token another process rotated is the one used;
        a rotation by this grant is written back before the lock is let go."""
        import fcntl

        lock = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._conf = self._read()
            return self._grant()
        finally:
            os.close(fd)

    def _grant(self):
        conf = self._conf
        form = {"grant_type": "refresh_token", "refresh_token": conf["refresh_token"], "client_id": conf["client_id"]}
        if conf.get("client_secret"):
            form["client_secret"] = conf["client_secret"]
        if conf.get("scope"):
            form["scope"] = conf["scope"]
        req = urllib.request.Request(conf["token_endpoint"], data=urllib.parse.urlencode(form).encode(),
                                     headers={"Content-Type": "application/x-www-form-urlencoded",
                                              "Accept": "application/json"}, method="POST")
        import ssl

        ctx = ssl.create_default_context(cafile=self.cafile)
        origin = f"OAuth token endpoint {urllib.parse.urlsplit(conf['token_endpoint']).netloc}"
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=ctx) as resp:
                text = resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            body = e.read().decode("utf-8", "replace")[:2000]
            if e.code >= 500 or e.code == 429:
                raise TemporaryFailure(f"{origin} answered {e.code}") from None
            try:
                err = json.loads(body)
                why = f"{err.get('error', '')}: {err.get('error_description', '')}".strip(": ")
            except ValueError:
                why = f"HTTP {e.code}"
            raise AuthenticationFailed(f"{origin} refused the refresh token ({why})") from None
        except (urllib.error.URLError, OSError) as e:
            raise TemporaryFailure(f"{origin} cannot be reached: {getattr(e, 'reason', e)}") from None
        token, lifetime = _token_response(text, origin)
        try:
            rotated = json.loads(text).get("refresh_token")
        except ValueError:
            rotated = None
        if isinstance(rotated, str) and rotated and rotated != conf["refresh_token"]:
            # Providers that rotate refresh tokens (Microsoft's identity platform may) invalidate the old one:
            # keep the new one in memory and in the file, or the next run cannot log in.
            conf["refresh_token"] = rotated
            replace_file(self.path, (json.dumps(conf, indent=2) + "\n").encode(), None, sync_dir=True)
            log.info("OAuth refresh token renewed by the provider; %s updated", self.path)
        return token, lifetime

    def describe(self) -> str:
        return f"refresh grant at {urllib.parse.urlsplit(self._conf['token_endpoint']).netloc}"


def token_source(*, token_file: str | None = None, command: str | None = None, refresh_file: str | None = None,
                 mechanism: str | None = None, cafile: str | None = None, side: str = "source") -> TokenSource | None:
    """The one source the options name, or None when none does."""
    given = [x for x in (token_file, command, refresh_file) if x]
    if len(given) > 1:
        raise ConfigError(f"--{side}-oauth-token-file, --{side}-oauth-command and --{side}-oauth-refresh-file "
                          f"are alternatives: give one")
    if token_file:
        return FileToken(token_file, mechanism)
    if command:
        return CommandToken(command, mechanism)
    if refresh_file:
        return RefreshToken(refresh_file, mechanism, cafile=cafile)
    if mechanism:
        raise ConfigError(f"--{side}-sasl {mechanism} needs a token: --{side}-oauth-token-file, "
                          f"--{side}-oauth-command or --{side}-oauth-refresh-file")
    return None
