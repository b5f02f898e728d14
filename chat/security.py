"""Response headers (CSP and friends), the trusted Host check and the cross-site check."""

from __future__ import annotations

from quart import Quart, Response, abort, current_app, request, websocket

from chat.problems import ShownError
from chat.settings import normalise_origin

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)

# Powerful browser features a chat never uses, off for the page and anything it could embed.
# Only features this Chromium knows: an unknown name is a console error on every page.
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "autoplay",
        "bluetooth",
        "camera",
        "display-capture",
        "encrypted-media",
        "geolocation",
        "gyroscope",
        "hid",
        "idle-detection",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "publickey-credentials-get",
        "screen-wake-lock",
        "serial",
        "usb",
        "xr-spatial-tracking",
    )
)
# A year, subdomains too: only ever sent over HTTPS (a browser ignores it over http, and a
# development server on http://127.0.0.1 must not pin itself).
STRICT_TRANSPORT_SECURITY = "max-age=31536000; includeSubDomains"

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Probes reach the app by its internal address (container healthchecks, load balancers);
# these answer with a status only, so any Host is fine for them.
HOST_FREE_PATHS = frozenset({"/healthz", "/readyz"})
HTTP_SCHEME = {"ws": "http", "wss": "https", "http": "http", "https": "https"}
# Called by build servers, not browsers, with the secret in the URL and no cookie counted: a
# forged cross-site request would need the secret, so there is nothing to forge. Exempt by
# endpoint (after routing), never by path prefix, so no other route can slip through.
CROSS_SITE_ENDPOINTS = frozenset({"hooks.post"})


def host_trusted(host: str) -> bool:
    """Is the Host header's name (the port aside, as in Django's ALLOWED_HOSTS) one of ours?"""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower().rstrip(".")
    return name in current_app.config["TRUSTED_HOSTS"]


def origin_allowed(origin: str, scheme: str, host: str) -> bool:
    """Is `origin` (scheme, host and port) one this site accepts writes and sockets from?

    CHAT_ALLOWED_ORIGINS when set; otherwise CHAT_PUBLIC_URL, and in development also the
    request's own origin (so http://localhost:8000 works when the app was started on 127.0.0.1).
    """
    if origin == "null":  # sandboxed or opaque origins are never ours
        return False
    given = normalise_origin(origin)
    if given is None:
        return False
    config = current_app.config
    if config["ALLOWED_ORIGINS"]:
        return given in config["ALLOWED_ORIGINS"]
    if given == config["PUBLIC_URL"]:
        return True
    if config["ENV"] != "development":
        return False
    return given == normalise_origin(f"{HTTP_SCHEME.get(scheme, scheme)}://{host}")


def init_app(app: Quart) -> None:
    @app.before_request
    async def reject_foreign_hosts() -> None:
        # The Host header is the client's to choose: a forged one must never reach a page or an
        # email (the site name in emails comes from CHAT_PUBLIC_URL anyway).
        if request.path not in HOST_FREE_PATHS and not host_trusted(request.host):
            raise ShownError(400, "host_not_served")

    @app.before_websocket
    async def reject_foreign_socket_hosts() -> None:
        if not host_trusted(websocket.host):
            abort(400)

    @app.before_request
    async def reject_cross_site_writes() -> None:
        # Browsers send Sec-Fetch-Site and Origin on every POST; a foreign value is a CSRF attempt.
        if request.method in SAFE_METHODS or request.endpoint in CROSS_SITE_ENDPOINTS:
            return
        fetch_site = request.headers.get("Sec-Fetch-Site")
        if fetch_site and fetch_site not in ("same-origin", "none"):
            abort(403)
        origin = request.headers.get("Origin")
        if origin and not origin_allowed(origin, request.scheme, request.host):
            abort(403)

    @app.after_request
    async def security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        # Nothing of ours is meant for another origin's page, not even a sibling subdomain's
        # (same site, so it would get the cookie): /me.css names the viewer.
        headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        # The scheme the browser used: with CHAT_PROXY_HOPS, the proxy's X-Forwarded-Proto.
        if request.scheme == "https":
            headers.setdefault("Strict-Transport-Security", STRICT_TRANSPORT_SECURITY)
        if response.mimetype == "text/html":
            # Pages are per person and live: never cached, so Back after sign-out shows nothing.
            headers["Cache-Control"] = "no-store"
            headers.setdefault("Vary", "HX-Request")
        return response
