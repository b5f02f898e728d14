"""Response headers (CSP and friends) and the cross-site request check."""

from __future__ import annotations

from urllib.parse import urlsplit

from quart import Quart, Response, abort, current_app, request

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

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def origin_allowed(origin: str, host: str) -> bool:
    """Is `origin` in CHAT_ALLOWED_ORIGINS, or (by default) the same host as the request?"""
    if origin == "null":  # sandboxed or opaque origins are never ours
        return False
    allowed: list[str] = current_app.config["ALLOWED_ORIGINS"]
    if allowed:
        return origin.rstrip("/") in {o.rstrip("/") for o in allowed}
    return urlsplit(origin).netloc.lower() == host.lower()


def init_app(app: Quart) -> None:
    @app.before_request
    async def reject_cross_site_writes() -> None:
        # Browsers send Sec-Fetch-Site and Origin on every POST; a foreign value is a CSRF attempt.
        if request.method in SAFE_METHODS:
            return
        fetch_site = request.headers.get("Sec-Fetch-Site")
        if fetch_site and fetch_site not in ("same-origin", "none"):
            abort(403)
        origin = request.headers.get("Origin")
        if origin and not origin_allowed(origin, request.host):
            abort(403)

    @app.after_request
    async def security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if response.mimetype == "text/html":
            # Pages are per person and live: never cached, so Back after sign-out shows nothing.
            headers["Cache-Control"] = "no-store"
            headers.setdefault("Vary", "HX-Request")
        return response
