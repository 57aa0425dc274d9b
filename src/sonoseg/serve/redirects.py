"""Redirects never name a host taken from the request: Starlette builds absolute ``Location`` URLs
from the ``Host`` header (slash redirects, StaticFiles), so ``Host: evil.example`` would send a
browser there. Every redirect keeps only its path and query, prefixed by the configured public URL
when one is set ($SONOSEG_PUBLIC_URL)."""

from __future__ import annotations

from typing import Optional
from urllib.parse import urlsplit


def safe_location(location: str, public_url: Optional[str]) -> str:
    u = urlsplit(location)
    path = "/" + (u.path or "/").lstrip("/")  # "//evil.example" would be protocol-relative
    rel = path + (f"?{u.query}" if u.query else "")
    return (public_url.rstrip("/") + rel) if public_url else rel


class RelativeRedirects:
    def __init__(self, app, public_url: Optional[str] = None):
        self.app, self.public_url = app, public_url

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_safe(message):
            if message["type"] == "http.response.start" and 300 <= message.get("status", 200) < 400:
                message["headers"] = [
                    (k, safe_location(v.decode("latin-1"), self.public_url).encode("latin-1")) if k.lower() == b"location"
                    else (k, v) for k, v in message.get("headers", [])]
            await send(message)

        await self.app(scope, receive, send_safe)
