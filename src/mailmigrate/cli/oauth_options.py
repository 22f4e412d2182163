"""The OAuth 2.0 login options of `sync` (and of anything else that logs in to IMAP for an account)."""

from __future__ import annotations


def add_arguments(p) -> None:
    g = p.add_argument_group("OAuth 2.0 logins (XOAUTH2 / OAUTHBEARER, e.g. Microsoft 365 and Gmail)")
    for side in ("source", "target"):
        g.add_argument(f"--{side}-oauth-token-file", metavar="FILE",
                       help=f"{side}: log in with the bearer token in FILE (mode 0600; read again at every login, "
                            "so a tool outside may renew it)")
        g.add_argument(f"--{side}-oauth-command", metavar="CMD",
                       help=f"{side}: run CMD (no shell) for a token: it prints the token or a JSON token "
                            "response with expires_in; run again before the token expires")
        g.add_argument(f"--{side}-oauth-refresh-file", metavar="FILE",
                       help=f"{side}: the refresh-token grant: FILE (mode 0600) is JSON with token_endpoint, "
                            "client_id, refresh_token and, where needed, client_secret and scope; tokens are "
                            "renewed before they expire, a rotated refresh token is written back")
        g.add_argument(f"--{side}-sasl", choices=("xoauth2", "oauthbearer"),
                       help=f"{side}: the OAuth mechanism (default: OAUTHBEARER if offered, else XOAUTH2)")


def apply(args, source_options, target_options) -> None:
    """Sets each side's token source on its StoreOptions (None where no OAuth option was given)."""
    names = ("oauth_token_file", "oauth_command", "oauth_refresh_file", "sasl")
    if not any(getattr(args, f"{side}_{n}", None) for side in ("source", "target") for n in names):
        # No OAuth option: the token sources (and urllib.request, http.client and email under them, about
        # 15 ms of every run's start-up) are not imported.
        source_options.oauth = target_options.oauth = None
        return
    from ..stores.oauth import token_source

    for side, opts in (("source", source_options), ("target", target_options)):
        opts.oauth = token_source(token_file=getattr(args, f"{side}_oauth_token_file"),
                                  command=getattr(args, f"{side}_oauth_command"),
                                  refresh_file=getattr(args, f"{side}_oauth_refresh_file"),
                                  mechanism=getattr(args, f"{side}_sasl"), side=side)
