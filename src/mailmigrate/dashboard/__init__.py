"""The web dashboard: the project's units, live progress, actions as buttons, logs and the report.

An interface only: every decision is the workflow layer's (``mailmigrate.workflow``).  Security: a login
token from the project (or generated 0600 beside it), a session cookie (HttpOnly, SameSite=Strict), a CSRF
token in every form, loopback only unless the administrator asks otherwise.  Actions run on one background
worker so that a long sync never holds a request.
"""

from .app import create_app  # noqa: F401
