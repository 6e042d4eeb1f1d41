"""The HTTP + WebSocket API of ``python main.py serve`` (FastAPI; Starlette's test client drives it in the tests).

    GET    /api/v1/models                    the models a client may run, with their parameter schemas
    POST   /api/v1/jobs                      multipart: image, mask (grey: white = fill), sketch?, and the fields
                                             model, params (JSON), attributes (JSON), prompt, seed, region (JSON)
                                             -> {"id", "key", "position"}; 503 when the backlog is full
    GET    /api/v1/jobs/{id}                 status (state, step, total, stage, message, error, result facts)
    POST   /api/v1/jobs/{id}/cancel          cancel (queued: at once; running: at its next step)
    GET    /api/v1/jobs/{id}/result          the filled image as PNG, with the CLI's metadata
    WS     /api/v1/jobs/{id}/events          progress events and throttled previews until the job ends

Per-job endpoints need the job's key (header ``X-Job-Key`` or ``?key=``); with a server token every endpoint needs
it too (``Authorization: Bearer TOKEN`` or ``?token=``). Every error is one JSON object ``{"error": "..."}`` with
the CLI's messages; no traceback reaches a client. Clients name models, never paths: a model whose parameters name
folders on the server's disk is not offered. Uploads are capped in bytes (``max_upload``) and decoded with the
image loader's pixel cap (the decompression-bomb guard).
"""
from __future__ import annotations

import asyncio
import json
import secrets
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, Request as HttpRequest, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from engine import registry
from engine.api import InpaintError, Request
from engine.imageio import load_image, load_mask
from engine.metadata import png_metadata
from engine.server import wire
from engine.server.jobs import TERMINAL, Busy, Job, JobQueue, NotYours


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(queue: JobQueue, token: str | None = None, max_upload: int = 64 << 20) -> FastAPI:
    app = FastAPI(title="Inpaint Studio", docs_url=None, redoc_url=None, openapi_url=f"{wire.API}/openapi.json")

    def check_token(given: str | None) -> None:
        if token and not secrets.compare_digest(given or "", token):
            raise ApiError(401, "a valid token is needed (Authorization: Bearer TOKEN)")

    def bearer(request: HttpRequest) -> str | None:
        auth = request.headers.get("authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else request.query_params.get("token")

    @app.middleware("http")
    async def guard(request: HttpRequest, call_next):
        try:
            check_token(bearer(request))
            size = request.headers.get("content-length")
            if size is not None and size.isdigit() and int(size) > max_upload:
                raise ApiError(413, f"the upload is {int(size) >> 20} MB; this server takes at most "
                                    f"{max_upload >> 20} MB")
            return await call_next(request)
        except ApiError as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        except Exception as exc:  # never a traceback to the client
            return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, 500)

    @app.exception_handler(ApiError)
    async def api_error(_request, exc: ApiError):
        return JSONResponse({"error": str(exc)}, exc.status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, 400)

    @app.exception_handler(Exception)
    async def any_error(_request, exc: Exception):
        return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, 500)

    def job_of(job_id: str, key: str | None) -> Job:
        try:
            return queue.get(job_id, key or "")
        except KeyError:
            raise ApiError(404, f"no job {job_id}") from None
        except NotYours as exc:
            raise ApiError(403, str(exc)) from None

    @app.get(f"{wire.API}/models")
    def models() -> list[dict[str, Any]]:
        return [wire.model_to_json(m) for m in registry.all_models() if wire.offered(m) and m.weights_present]

    @app.post(f"{wire.API}/jobs")
    def submit(image: UploadFile = File(...), mask: UploadFile = File(...), sketch: UploadFile | None = File(None),
               model: str = Form(...), params: str = Form("{}"), attributes: str = Form("{}"), prompt: str = Form(""),
               seed: int = Form(0), region: str = Form("")) -> dict[str, Any]:
        info = _offered(model)
        given, attrs = _json_object(params, "params"), _json_object(attributes, "attributes")
        box = _region(region)
        if named := wire.path_params(info, given):
            raise ApiError(403, f"parameter {named[0]} names a folder on the server's disk: not allowed to clients")
        try:
            info.resolve_params(given)  # a bad value fails before the upload is decoded
            info.resolve_attributes(attrs)
            if sketch is not None and not info.uses_sketch:
                raise InpaintError(f"model {model} takes no sketch")
            with tempfile.TemporaryDirectory(prefix="inpaint-upload-") as tmp:
                rgb = _read(image, Path(tmp), max_upload, lambda p: load_image(p).rgb)
                alpha = _read(mask, Path(tmp), max_upload, lambda p: load_mask(p, rgb.shape[:2]))
                strokes = None if sketch is None else _read(sketch, Path(tmp), max_upload,
                                                            lambda p: load_mask(p, rgb.shape[:2], "sketch"))
            req = Request(rgb, alpha, sketch=strokes, attributes=attrs, seed=seed, params=given, region=box,
                          prompt=prompt)
            req.validate()
            job = queue.submit(model, req, wire.source_name(image.filename))
        except InpaintError as exc:
            raise ApiError(400, _first_line(exc)) from None
        except Busy as exc:
            raise ApiError(503, str(exc)) from None
        return {"id": job.id, "key": job.key, "position": queue.position(job)}

    @app.get(f"{wire.API}/jobs/{{job_id}}")
    def status(job_id: str, request: HttpRequest) -> dict[str, Any]:
        job = job_of(job_id, _key(request))
        return {**job.status(), "position": queue.position(job)}

    @app.post(f"{wire.API}/jobs/{{job_id}}/cancel")
    def cancel(job_id: str, request: HttpRequest) -> dict[str, Any]:
        job = job_of(job_id, _key(request))
        queue.cancel(job)
        return job.status()

    @app.get(f"{wire.API}/jobs/{{job_id}}/result")
    def result(job_id: str, request: HttpRequest) -> Response:
        job = job_of(job_id, _key(request))
        if job.state != "done":
            raise ApiError(409, f"job {job_id} is {job.state}" + (f": {job.error}" if job.error else ""))
        png = wire.png_bytes(job.result.image, png_metadata(job.result, job.source))
        return Response(png, media_type="image/png")

    @app.websocket(f"{wire.API}/jobs/{{job_id}}/events")
    async def events(ws: WebSocket, job_id: str) -> None:
        try:
            check_token(ws.query_params.get("token") or _bearer_ws(ws))
            job = job_of(job_id, ws.query_params.get("key") or ws.headers.get("x-job-key"))
        except ApiError as exc:
            await ws.close(code=4000 + exc.status, reason=str(exc))
            return
        await ws.accept()
        try:
            await _follow(ws, queue, job)
        except WebSocketDisconnect:
            return

    return app


async def _follow(ws: WebSocket, queue: JobQueue, job: Job) -> None:
    """Send the job's status whenever it changes, the newest preview at most PREVIEW_FPS times a second, and the
    final status; then close."""
    version, shown, last_sent = -1, None, 0.0
    loop = asyncio.get_running_loop()
    while True:
        version = await asyncio.to_thread(queue.wait, job, version, 1.0)
        status = job.status()  # one snapshot: the job may end while this runs, and the client must see it end
        await ws.send_json({"type": "status", **status, "position": queue.position(job)})
        now = loop.time()
        if job.preview is not None and job.preview is not shown and now - last_sent >= 1 / wire.PREVIEW_FPS:
            shown, last_sent = job.preview, now
            await ws.send_json(wire.preview_event(shown))
        if status["state"] in TERMINAL:
            await ws.close()
            return


def _offered(model: str):
    try:
        info = registry.get_info(model)
    except InpaintError as exc:
        raise ApiError(404, str(exc)) from None
    if not wire.offered(info):
        raise ApiError(403, f"model {model} reads folders on the server's disk; it is not offered to clients")
    if not info.weights_present:
        raise ApiError(404, f"model {model}: its weights are not on this server")
    return info


def _json_object(text: str, what: str) -> dict:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"{what}: not JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"{what}: expected a JSON object")
    return value


def _region(text: str) -> tuple[int, int, int, int] | None:
    if not text:
        return None
    try:
        x0, y0, x1, y1 = (int(v) for v in json.loads(text))
    except (ValueError, TypeError, json.JSONDecodeError):
        raise ApiError(400, "region: expected [x0, y0, x1, y1]") from None
    if x1 <= x0 or y1 <= y0:
        raise ApiError(400, "region: x1 must exceed x0 and y1 exceed y0")
    return x0, y0, x1, y1


def _read(upload: UploadFile, folder: Path, limit: int, load):
    """``load(path)`` of the upload written into ``folder``, refusing more than ``limit`` bytes (a client may omit
    Content-Length); errors name the uploaded file, never the server's temporary path."""
    name = wire.source_name(upload.filename) or "upload"
    path = folder / f"{len(list(folder.iterdir()))}-{name}"
    size = 0
    with open(path, "wb") as fh:
        while chunk := upload.file.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"{name} exceeds {limit >> 20} MB")
            fh.write(chunk)
    try:
        return load(path)
    except InpaintError as exc:
        raise InpaintError(_first_line(exc).replace(str(path), name)) from None


def _key(request: HttpRequest) -> str | None:
    return request.headers.get("x-job-key") or request.query_params.get("key")


def _bearer_ws(ws: WebSocket) -> str | None:
    auth = ws.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
