"""The API's declared-state routes (added to the app by the daemon; declared in ``shared/routes.py``).

    GET  /v1/declared            the last applied generation: document (secrets masked unless
                                 the caller is os:admin), when, by whom, the last attempt
    POST /v1/declared/diff       {"document", "filename"}: what apply would do (readers too)
    POST /v1/declared/apply      {"document", "filename", "timeout"}: NDJSON lines
                                 {"progress": {...}}, then {"result": {...}} (os:admin)
    POST /v1/declared/rollback   {"timeout"}: the same lines (os:admin)

A document that does not load answers 400 with every finding; another apply in progress 409.
An apply runs to its end even if the client goes away: the stream only watches it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from extvisor.remote import roles as roles_mod
from extvisor.server.declared.engine import Busy, Declared, DocumentError, Refused
from extvisor.shared import routes

ROLES_KEY = "extvisor.roles"  # as server/remote.py sets it


class DiffRequest(BaseModel):
    document: str
    filename: str = "declared.yaml"  #: named in findings


class ApplyRequest(DiffRequest):
    timeout: float = Field(120.0, gt=0, le=3600)  #: seconds for the changed services to be ready


class RollbackRequest(BaseModel):
    timeout: float = Field(120.0, gt=0, le=3600)


def who(request: Request) -> str:
    """The client certificate's common name, or ``local`` for the Unix socket."""
    der = ((request.scope.get("extensions") or {}).get("tls") or {}).get("client_cert")
    if not der:
        return "local"
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if names:
        return str(names[0].value)
    orgs = ",".join(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    return f"certificate {cert.serial_number:x} ({orgs or 'no roles'})"


def _admin(request: Request) -> bool:
    return roles_mod.ADMIN in ((request.scope.get("extensions") or {}).get(ROLES_KEY) or ())


def _refused(exc: DocumentError) -> HTTPException:
    return HTTPException(400, "\n".join(str(f) for f in exc.findings if f.severity == "error"))


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode() + b"\n"


def _stream(app: FastAPI, work: Callable[[Callable[[dict[str, Any]], None]], Awaitable[dict[str, Any]]]) -> StreamingResponse:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def progress(p: dict[str, Any]) -> None:  # from the event loop or a pulling thread
        loop.call_soon_threadsafe(queue.put_nowait, _line({"progress": p}))

    async def run() -> None:
        try:
            line = {"result": await work(progress)}
        except (Busy, Refused, DocumentError) as exc:
            line = {"error": str(exc)}
        except Exception as exc:  # never leave the stream hanging
            line = {"error": f"apply failed: {exc!r}"}
        try:
            loop.call_soon_threadsafe(queue.put_nowait, _line(line))  # after every progress line
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    task = asyncio.create_task(run())
    app.state.__dict__.setdefault("declared_tasks", set()).add(task)
    task.add_done_callback(app.state.declared_tasks.discard)

    async def lines() -> AsyncIterator[bytes]:
        while (line := await queue.get()) is not None:
            yield line

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def add_declared_routes(app: FastAPI, engine: Declared) -> None:
    @routes.DECLARED.serve(app)
    async def applied(request: Request) -> dict[str, Any]:
        return engine.applied(secrets=_admin(request))

    @routes.DECLARED_DIFF.serve(app)
    async def diff(body: DiffRequest) -> dict[str, Any]:
        try:
            return await engine.diff(body.document, body.filename)
        except DocumentError as exc:
            raise _refused(exc) from None
        except Refused as exc:
            raise HTTPException(502, str(exc)) from None

    @routes.DECLARED_APPLY.serve(app)
    async def apply(body: ApplyRequest, request: Request) -> StreamingResponse:
        try:
            engine.load(body.document, body.filename)
        except DocumentError as exc:
            raise _refused(exc) from None
        if engine.lock.locked():
            raise HTTPException(409, "another apply is already in progress on this node")
        by = who(request)
        return _stream(app, lambda progress: engine.apply(body.document, body.filename, body.timeout, by, progress))

    @routes.DECLARED_ROLLBACK.serve(app)
    async def rollback(body: RollbackRequest, request: Request) -> StreamingResponse:
        if engine.lock.locked():
            raise HTTPException(409, "another apply is already in progress on this node")
        by = who(request)
        return _stream(app, lambda progress: engine.rollback(body.timeout, by, progress))
