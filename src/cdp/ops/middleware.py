"""The outermost ASGI layer: request id, body size limit, access log and metrics."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdp.errors import problem_body
from cdp.ops.metrics import Metrics

access_log = logging.getLogger("cdp.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


class BodyTooLarge(HTTPException):
    """Raised while the body streams in; an HTTPException so FastAPI's body parsing passes it on."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="request body too large")


class EdgeMiddleware:
    """Gives every response an X-Request-ID, caps bodies, logs and counts each request."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        sent_id = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = sent_id if _REQUEST_ID.match(sent_id) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = rid
        status_box = [500]
        started_response = [False]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                started_response[0] = True
                status_box[0] = message["status"]
                raw = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                raw.append((b"x-request-id", rid.encode()))
                message["headers"] = raw
            await send(message)

        declared = headers.get(b"content-length")
        try:
            too_big = declared is not None and int(declared) > self.max_body_bytes
        except ValueError:
            too_big = False
        try:
            if too_big:
                raise BodyTooLarge
            await self.app(scope, self._capped(receive), send_wrapper)
        except BodyTooLarge:
            if started_response[0]:
                raise
            await self._problem(
                send_wrapper,
                rid,
                413,
                "payload_too_large",
                "Request body too large",
                f"the request body exceeds {self.max_body_bytes} bytes",
            )
        except Exception as exc:
            # Last line of defence: a problem+json 500 naming the request id, never the error text.
            access_log.error("unhandled error", exc_info=exc, extra={"request_id": rid})
            if started_response[0]:
                raise
            await self._problem(
                send_wrapper,
                rid,
                500,
                "internal_error",
                "Internal server error",
                "an internal error occurred; quote the request_id",
            )
        finally:
            self._record(scope, status_box[0], time.perf_counter() - started, rid)

    def _capped(self, receive: Receive) -> Receive:
        seen = [0]

        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        return wrapped

    async def _problem(
        self, send: Send, rid: str, status: int, code: str, title: str, detail: str
    ) -> None:
        body = problem_body(status=status, code=code, title=title, detail=detail, request_id=rid)
        # Answered before any route ran, so the Segment SDKs' `message` is always there too.
        body["message"] = detail
        data = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(data)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})

    def _record(self, scope: Scope, status: int, seconds: float, rid: str) -> None:
        route: Any = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        principal = scope.get("state", {}).get("principal")
        self.metrics.observe_request(scope["method"], template, status, seconds)
        access_log.info(
            "request",
            extra={
                "request_id": rid,
                "client_id": getattr(principal, "id", None),
                "route": template,
                "method": scope["method"],
                "status": status,
                "latency_ms": round(seconds * 1000, 2),
            },
        )
