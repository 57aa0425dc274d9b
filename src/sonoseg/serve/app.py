"""``create_app``: the FastAPI application (API under /api/v1, the viewer under /viewer, /health).

Start-up migrates the database, checks the audit chain, re-queues or fails jobs a stopped server left running, removes what a
crash can leave behind, then starts the worker thread."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.body_limit import RequestBodyLimitResponder
from starlette.requests import ClientDisconnect

from sonoseg.serve import validation
from sonoseg.serve.redirects import RelativeRedirects
from sonoseg.serve.security import Viewer
from sonoseg.serve.settings import Settings
from sonoseg.serve.startup import check_audit, retry_refusal
from sonoseg.serve.throttle import LoginLimiter
from sonoseg.serve.views import API
from sonoseg.store import Store, jobs

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("sonoseg.serve")
PUBLIC_PATHS = ("/health", f"{API}/auth/token", "/", "/viewer")  # everything else needs credentials


class BodyLimits:
    """Request bodies are capped (413) while they stream in: uploads at the upload limit, everything
    else at a small one. A Content-Length over the cap is refused before any byte is read."""

    def __init__(self, app, default: int, upload: int):
        self.app, self.default, self.upload = app, default, upload

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        up = scope["method"] == "POST" and scope["path"].rstrip("/") == f"{API}/jobs"
        await RequestBodyLimitResponder(self.app, self.upload if up else self.default)(scope, receive, send)


class SecurityHeaders:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        api = scope["path"].startswith(API)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                h = list(message.get("headers", []))
                h += [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                      (b"referrer-policy", b"no-referrer"),
                      (b"content-security-policy", b"default-src 'self'; img-src 'self' blob: data:; "
                                                   b"object-src 'none'; frame-ancestors 'none'")]
                if api:  # one cache-control, no-store: API answers carry patient data (frame PNGs too)
                    h = [(k, v) for k, v in h if k.lower() != b"cache-control"] + [(b"cache-control", b"no-store")]
                message["headers"] = h
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: Settings, store: Optional[Store] = None) -> FastAPI:
    from sonoseg.serve.routers import admin, auth, jobs as jobs_router, results
    from sonoseg.serve.worker import Worker

    st = store or Store(settings.data_dir, settings.db_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        st.migrate()
        check_audit(st, settings.accept_broken_audit)
        with st.session() as s:
            app.state.recovered = jobs.recover(s, retry=lambda j: retry_refusal(st, j, settings.job_limits()))
        app.state.cleaned = st.cleanup()
        if settings.worker:
            app.state.worker = Worker(st, settings.model, settings.poll_s, settings.max_view_frames,
                                      settings.job_limits(), settings.keep_identifiers)
            app.state.worker.start()
        try:
            yield
        finally:
            if app.state.worker is not None:
                app.state.worker.stop()
            if store is None:
                st.dispose()

    app = FastAPI(title="sonoseg", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.store, app.state.settings, app.state.worker = st, settings, None
    app.state.limiter = LoginLimiter(settings.login_policy())
    validation.install(app)
    for r in (auth.router, jobs_router.router, results.router, admin.router):
        app.include_router(r, prefix=API)

    if settings.docs:
        @app.get(f"{API}/openapi.json", include_in_schema=False)
        def openapi_schema(p: Viewer) -> dict:
            """The OpenAPI schema, for signed-in users only."""
            return app.openapi()

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        """A client that hangs up mid-request (e.g. an upload cancelled): one line, no traceback."""
        log.info("client disconnected during %s %s; request dropped", request.method, request.url.path)
        return Response(status_code=400)

    @app.get("/health", include_in_schema=False)
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def root(request: Request):
        return RedirectResponse("/viewer/")

    app.mount("/viewer", StaticFiles(directory=STATIC, html=True), name="viewer")
    app.add_middleware(BodyLimits, default=settings.max_body_bytes, upload=settings.max_upload_bytes)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RelativeRedirects, public_url=settings.public_url)
    if settings.trusted_proxies:  # behind the TLS proxy every client would be the proxy's address:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware  # throttling and audit need the real one

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    return app


def _version() -> str:
    from sonoseg import __version__

    return __version__
