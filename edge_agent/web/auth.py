"""Login for the status page: basic auth, a bearer token, or a token in the URL once.

When any credential is configured every request needs one, on loopback too. Browsers get a
basic-auth prompt; scrapers send ``Authorization: Bearer <token>``; a wall-mounted panel can
open ``/?token=<token>`` once, which sets a cookie holding an HMAC of the token (never the token
itself) and redirects to the bare URL, so the token stays out of the address bar and history.

State-changing requests (acknowledge, inject) must be JSON and, when the browser says where
they come from (``Origin``), come from this page: another site open in the same browser cannot
ride on its cached basic-auth login to acknowledge an alert. Without a login, only requests
addressed to a loopback name are answered, so another site cannot reach the page by pointing
its own name at 127.0.0.1 (DNS rebinding).

Guessing is slowed per address (``throttle``): after a few wrong logins every request with a
credential waits, answered 429 with ``Retry-After``. The kiosk cookie holds its expiry and an
HMAC over it keyed by the token: it lasts ``session_lifetime`` without use, is renewed while the
page is used, and stops working when the token changes; it is ``Secure`` when the page is HTTPS.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from edge_agent.core.errors import Forbidden, LoginRequired, TooManyAttempts
from edge_agent.web.config import WebConfig, is_loopback
from edge_agent.web.throttle import Clock, LoginThrottle, client_key

log = logging.getLogger(__name__)

COOKIE = "edge_agent_session"
REJECTED_WARNING_INTERVAL_S = 60.0
USER_KEY: web.RequestKey[str | None] = web.RequestKey("edge_agent_user", str | None)  # type: ignore[arg-type]
SESSION_END_KEY = web.RequestKey("edge_agent_session_end", float)
"""When the cookie a request logged in with expires (a live-update stream ends then)."""
_RENEW_KEY = web.RequestKey("edge_agent_session_renew", bool)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Session(Enum):
    NONE = "none"
    VALID = "valid"
    EXPIRED = "expired"
    FORGED = "forged"


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _decode_basic(credential: str) -> tuple[str, str]:
    """``user:password`` from a basic-auth credential (RFC 7617, UTF-8); empty strings if malformed."""
    try:
        text = base64.b64decode(credential.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    login, sep, password = text.partition(":")
    return (login, password) if sep else ("", "")


class Authenticator:
    """Checks a request against the configured credentials (constant-time comparisons)."""

    def __init__(self, config: WebConfig, clock: Clock = time.time) -> None:
        self.config = config
        self.clock = clock
        token = config.token.get_secret_value() if config.token is not None else None
        self._token = token
        self._session_key = (
            hmac.new(token.encode(), b"edge-agent status page", hashlib.sha256).digest() if token else None
        )
        limits = config.limits
        self.throttle = LoginThrottle(limits.login_failures, limits.login_lockout, limits.login_lockout_max, clock)
        self.rejected = 0
        """Requests that carried a wrong credential (not the browser's first, empty-handed one)."""
        self.throttled = 0
        """Requests refused with 429 because their address guessed wrong too often."""
        self._last_warning = -math.inf

    def _session_mac(self, expires: int) -> str:
        assert self._session_key is not None
        return hmac.new(self._session_key, f"session until {expires}".encode(), hashlib.sha256).hexdigest()

    def new_session(self) -> str:
        """A cookie value valid for ``session_lifetime`` from now: ``<expiry>.<hmac>``."""
        expires = math.ceil(self.clock() + self.config.session_lifetime)
        return f"{expires}.{self._session_mac(expires)}"

    def _session(self, cookie: str | None) -> tuple[_Session, float]:
        if cookie is None or self._session_key is None:
            return _Session.NONE, 0.0
        text, _, mac = cookie.partition(".")
        if not text.isdigit() or len(text) > 12 or not _same(mac, self._session_mac(int(text))):
            return _Session.FORGED, 0.0
        expires, now = float(text), self.clock()
        # Longer than the lifetime allows: issued before the lifetime was shortened, or the clock was set back.
        if not now < expires <= now + self.config.session_lifetime + 1:
            return _Session.EXPIRED, expires
        return _Session.VALID, expires

    def set_cookie(self, response: web.StreamResponse) -> None:
        """Give the client a fresh session cookie (as a header: it also works from a prepare hook)."""
        cookie: SimpleCookie = SimpleCookie()
        cookie[COOKIE] = self.new_session()
        morsel = cookie[COOKIE]
        morsel["max-age"] = str(math.ceil(self.config.session_lifetime))
        morsel["path"] = "/"
        morsel["httponly"] = True
        morsel["samesite"] = "Strict"
        if self.config.tls is not None:
            morsel["secure"] = True
        response.headers.add(hdrs.SET_COOKIE, morsel.OutputString())

    @property
    def challenge(self) -> str:
        """The ``WWW-Authenticate`` value: basic (a browser prompts) when a password is set."""
        return 'Basic realm="edge-agent", charset="UTF-8"' if self.config.basic_auth else 'Bearer realm="edge-agent"'

    def user(self, request: web.Request) -> str | None:
        """Who is asking (the basic-auth user, or ``"token"``); raises ``LoginRequired`` if nobody valid."""
        header = request.headers.get(hdrs.AUTHORIZATION, "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "basic" and self.config.basic_auth:
            login, password = _decode_basic(credential)
            expected = self.config.password.get_secret_value() if self.config.password else ""
            # Both compared every time, so the timing does not tell which one was wrong.
            user_ok = _same(login, self.config.username or "")
            if _same(password, expected) and user_ok:
                return login
        if scheme.lower() == "bearer" and self._token is not None and _same(credential.strip(), self._token):
            return "token"
        cookie = request.cookies.get(COOKIE)
        session, expires = self._session(cookie)
        if session is _Session.VALID:
            request[SESSION_END_KEY] = expires
            request[_RENEW_KEY] = expires - self.clock() < self.config.session_lifetime / 2
            return "token"
        if header or session is _Session.FORGED:  # an expired cookie is no guess
            self._rejected(request)
        how = []
        if self.config.basic_auth:
            how.append("log in with the status page's username and password")
        if self._token is not None:
            how.append("send 'Authorization: Bearer <token>' or open /?token=<token> once")
        raise LoginRequired("login required: " + " or ".join(how), self.challenge)

    def _rejected(self, request: web.Request) -> None:
        """Count a wrong credential, make its address wait; warn at most once a minute (guessing makes many)."""
        self.rejected += 1
        wait = self.throttle.failed(client_key(request.remote))
        now = time.monotonic()
        if now - self._last_warning >= REJECTED_WARNING_INTERVAL_S:
            self._last_warning = now
            log.warning(
                "status page: rejected a wrong login from %s (%d so far)%s",
                request.remote or "?",
                self.rejected,
                f"; that address now waits {wait:g} s per try" if wait else "",
            )

    def _check_throttle(self, request: web.Request) -> None:
        """Refuse (429) a request carrying a credential while its address has to wait."""
        has_credential = hdrs.AUTHORIZATION in request.headers or COOKIE in request.cookies or "token" in request.query
        if not has_credential:
            return
        wait = self.throttle.retry_after(client_key(request.remote))
        if wait is not None:
            self.throttled += 1
            raise TooManyAttempts(wait)

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """Renew a session cookie past half its lifetime (live-update streams included)."""
        if request.get(_RENEW_KEY):
            self.set_cookie(response)

    def middleware(self) -> Middleware:
        """An aiohttp middleware enforcing the login when credentials are configured."""

        @web.middleware
        async def login(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not self.config.login_required:
                check_loopback_host(request)
                request[USER_KEY] = None
                return await handler(request)
            self._check_throttle(request)
            url_token = request.query.get("token")
            if url_token is not None and self._token is not None and request.method == hdrs.METH_GET:
                if not _same(url_token, self._token):
                    self._rejected(request)
                    raise LoginRequired("login required: the token in the URL is wrong", self.challenge)
                self.throttle.succeeded(client_key(request.remote))
                response = web.Response(status=303, headers={hdrs.LOCATION: request.path})
                self.set_cookie(response)
                return response
            request[USER_KEY] = self.user(request)
            self.throttle.succeeded(client_key(request.remote))
            return await handler(request)

        return login


def check_loopback_host(request: web.Request) -> None:
    """Without a login, answer only requests addressed to a loopback name (DNS rebinding guard).

    A web site open in a browser on the line PC could point its own host name at 127.0.0.1 and
    then read the page (and press its buttons) as if it were its own. Such requests carry that
    site's name in ``Host``; requests from this computer carry ``localhost`` or a loopback IP.
    """
    host = urlsplit(f"//{request.host}").hostname or ""
    if not is_loopback(host):
        raise Forbidden(
            f"this status page has no login and answers to loopback addresses only, not {host!r}. "
            "Fix: open it as http://127.0.0.1:<port>/ or configure web.username/password (or web.token)"
        )


def check_same_origin(request: web.Request) -> None:
    """Refuse a state-changing request that is not JSON or names another site as its origin."""
    if request.content_type != "application/json":
        raise Forbidden("send the request body as JSON (Content-Type: application/json)")
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise Forbidden(f"request from another site ({origin}) refused")
