"""The dashboard's login: the cluster token (the one gRPC checks) exchanged for a cookie.

Pure functions, no I/O: the server passes in the headers and query it received.
"""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import CookieError, SimpleCookie

COOKIE = "ember_dashboard"


def token_matches(given: str | None, token: str) -> bool:
    """Whether ``given`` is the cluster token, compared in constant time."""
    if not given or not token:
        return False
    return hmac.compare_digest(given.encode(), token.encode())


def cookie_value(token: str) -> str:
    """What the cookie holds: a digest of the token (the token itself never sits in a cookie)."""
    return hashlib.sha256(b"ember-dashboard\x00" + token.encode()).hexdigest()


def cookie_ok(header: str | None, token: str) -> bool:
    """Whether a ``Cookie:`` header carries the login cookie for ``token``."""
    if not header:
        return False
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return False
    morsel = jar.get(COOKIE)
    return morsel is not None and hmac.compare_digest(morsel.value.encode(), cookie_value(token).encode())


def set_cookie(token: str, secure: bool = False) -> str:
    """The ``Set-Cookie:`` value that logs a browser in: HttpOnly, SameSite=Strict."""
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={cookie_value(token)}; Path=/; HttpOnly; SameSite=Strict{flags}"


def safe_next(path: str | None) -> str:
    """Where to go after logging in: a path on this server only (never another site)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path
