"""The API's extension routes (added to the app by the daemon; declared in ``extvisor.shared.routes``).

    GET    /v1/extensions                 installed extensions, in stacking order
    GET    /v1/extensions/{name}          one of them
    POST   /v1/extensions                 {"refs": [...], "cwd": "...", "strict": false,
                                          "allow_setuid": false}: install or upgrade each, streamed
                                          as NDJSON lines: {"progress": {...}}, then
                                          {"installed": {...}} or {"error": "...", "ref": "...",
                                          "problems": [...]} per ref
    DELETE /v1/extensions/{name}          stop its services and remove it

A client that goes away (Ctrl-C) cancels its install: skopeo is killed and the staging
directory deleted, unless the new version was already switched in (then it finishes).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from extvisor.extensions import Progress, RefError
from extvisor.server.extensions import Cancelled, Extensions, InstallError
from extvisor.shared import routes

log = logging.getLogger("extvisor.extensions")


class InstallRequest(BaseModel):
    refs: list[str]
    cwd: str = "/"  #: relative local paths (oci:DIR, tarball:FILE...) are read from here
    strict: bool = False
    allow_setuid: bool = False  #: install setuid and setgid files (refused otherwise)


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode() + b"\n"


def add_extension_routes(app: FastAPI, ext: Extensions) -> None:
    @routes.EXTENSIONS.serve(app)
    async def list_extensions() -> list[dict[str, Any]]:
        return ext.list()

    @routes.EXTENSION_ONE.serve(app)
    async def one_extension(name: str) -> dict[str, Any]:
        for item in ext.list():
            if item["name"] == name:
                return item
        known = ", ".join(r["name"] for r in ext.list()) or "none"
        raise HTTPException(404, f'extension "{name}" is not installed (installed: {known})')

    @routes.INSTALL.serve(app)
    async def install(request: InstallRequest) -> StreamingResponse:
        if not request.refs:
            raise HTTPException(400, "no image reference given")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        cancel = threading.Event()  # set when the client goes away

        def progress(p: Progress) -> None:  # called from the install thread
            loop.call_soon_threadsafe(queue.put_nowait, _line({"progress": p.as_dict()}))

        async def run() -> None:
            try:
                for ref in request.refs:
                    try:
                        record = await ext.install(ref, request.cwd, request.strict, progress, request.allow_setuid, cancel)
                        queue.put_nowait(_line({"installed": record.as_dict()}))
                    except Cancelled:
                        log.warning("install of %s cancelled: the client went away", ref)
                        return
                    except InstallError as exc:
                        problems = [p.as_dict() | {"path": p.file, "text": str(p)} for p in exc.problems]
                        queue.put_nowait(_line({"error": f"{ref}: image refused", "ref": ref, "problems": problems}))
                    except (RefError, OSError) as exc:
                        queue.put_nowait(_line({"error": f"{ref}: {exc}", "ref": ref, "problems": []}))
            except Exception as exc:  # never leave the stream hanging
                queue.put_nowait(_line({"error": f"install failed: {exc!r}", "ref": "", "problems": []}))
            finally:
                queue.put_nowait(None)

        task = asyncio.create_task(run())
        app.state.__dict__.setdefault("extension_tasks", set()).add(task)
        task.add_done_callback(app.state.extension_tasks.discard)

        async def stream() -> AsyncIterator[bytes]:
            try:
                while (line := await queue.get()) is not None:
                    yield line
            finally:  # the end, or the client went away (the server cancels this generator)
                cancel.set()

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    @routes.REMOVE.serve(app)
    async def remove(name: str) -> dict[str, Any]:
        try:
            record = await ext.remove(name)
        except KeyError:
            known = ", ".join(r["name"] for r in ext.list()) or "none"
            raise HTTPException(404, f'extension "{name}" is not installed (installed: {known})') from None
        return {"removed": record.as_dict(), "message": f'extension "{name}" removed, services stopped: '
                                                        f'{", ".join(record.services) or "none"}'}  # fmt: skip
