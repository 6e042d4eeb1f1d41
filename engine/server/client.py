"""A blocking client of ``python main.py serve``: the editor's worker thread runs remote jobs through it, and the
tests drive the server with it. ``Client.run_job`` has the signature of ``engine.runner.run_job``: it uploads the
whole request (the server's runner crops it), yields the server's previews (already in image pixels) as they come
over the WebSocket, and returns a ``Result``, so the editor's job machinery (previews, progress, cancel, history)
works the same for local and remote models.

Every failure is an ``InpaintError`` with one line: the server's own message, or what went wrong with the
connection ("lost the connection to the server at ..."); a cancelled remote job is cancelled on the server.
"""
from __future__ import annotations

import json
import time
from typing import Any, Generator, Iterator

import numpy as np

from engine.api import Cancelled, CancelToken, InpaintError, ModelInfo, Preview, Request, Result
from engine.runner import composite
from engine.server import wire

TIMEOUT = 30.0  # seconds for an HTTP call (uploads of large photos included)


class Client:
    def __init__(self, url: str, token: str = "", timeout: float = TIMEOUT) -> None:
        import httpx

        url = url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            url = "http://" + url  # "gpu-box:8765", as people write it
        self.url = url
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url + wire.API, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    # ----- calls --------------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs) -> Any:
        import httpx

        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise InpaintError(f"lost the connection to the server at {self.url} ({type(exc).__name__})") from None
        if r.status_code >= 400:
            try:
                message = r.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {r.status_code}"
            raise InpaintError(f"server: {message}")
        return r

    def models(self) -> list[ModelInfo]:
        return [wire.model_from_json(d) for d in self._call("GET", "/models").json()]

    def submit(self, model: str, request: Request, source: str = "image.png") -> dict[str, Any]:
        files = {"image": (source, wire.png_bytes(request.image)), "mask": ("mask.png", wire.mask_png(request.mask))}
        if request.sketch is not None:
            files["sketch"] = ("sketch.png", wire.mask_png(request.sketch))
        data = {"model": model, "params": json.dumps(request.params), "attributes": json.dumps(request.attributes),
                "prompt": request.prompt, "seed": str(int(request.seed)),
                "region": json.dumps(list(request.region)) if request.region else ""}
        return self._call("POST", "/jobs", files=files, data=data).json()

    def status(self, job: dict) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job['id']}", headers={"X-Job-Key": job["key"]}).json()

    def cancel(self, job: dict) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job['id']}/cancel", headers={"X-Job-Key": job["key"]}).json()

    def result(self, job: dict) -> np.ndarray:
        r = self._call("GET", f"/jobs/{job['id']}/result", headers={"X-Job-Key": job["key"]})
        return wire.decode_png(r.content)

    def events(self, job: dict, heartbeat: float = 0.25) -> Iterator[dict[str, Any] | None]:
        """The job's events until it ends, and None whenever the server says nothing for ``heartbeat`` seconds
        (a long step), so the caller can check for cancellation."""
        from websockets.exceptions import ConnectionClosedOK, WebSocketException
        from websockets.sync.client import connect

        ws_url = "ws" + self.url[4:] + wire.API + f"/jobs/{job['id']}/events"
        headers = {"X-Job-Key": job["key"]}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            with connect(ws_url, additional_headers=headers, open_timeout=TIMEOUT, max_size=64 << 20) as ws:
                while True:
                    try:
                        yield json.loads(ws.recv(timeout=heartbeat))
                    except TimeoutError:
                        yield None
                    except ConnectionClosedOK:
                        return
        except (OSError, WebSocketException) as exc:
            raise InpaintError(f"lost the connection to the server at {self.url} ({type(exc).__name__})") from None

    def run_job(self, model: str, request: Request, cancel: CancelToken | None = None
                ) -> Generator[Preview, None, Result]:
        """Run ``model`` on the server: yield its previews and progress, return its Result. Cancelling ``cancel``
        cancels the job on the server and raises Cancelled here."""
        cancel = cancel or CancelToken()
        t0 = time.perf_counter()
        job = self.submit(model, request)
        timings: dict[str, float] = {}
        try:
            for event in self.events(job):
                cancel.check()
                if event is None:
                    continue
                timings.setdefault("first_preview", time.perf_counter() - t0)
                if event["type"] == "preview":
                    yield wire.preview_from_event(event)
                else:
                    yield Preview(step=event["step"], total=event["total"], stage=event["stage"] or "denoise",
                                  message=event.get("message", ""))
        except Cancelled:
            self.cancel(job)
            raise
        except InpaintError:  # the connection broke mid-job: cancel it on the server if it can still be reached
            try:
                self.cancel(job)
            except InpaintError:
                pass
            raise
        final = self.status(job)
        if final["state"] == "cancelled":
            raise Cancelled()
        if final["state"] != "done":
            raise InpaintError(final.get("error") or f"the server's job ended {final['state']}")
        facts = final["result"]
        image = composite(request.image, self.result(job), request.hole)  # the server blended any soft edge
        timings.update(total=time.perf_counter() - t0, server=facts.get("timings", {}).get("total", 0.0))
        return Result(image=image, model=model, seed=facts["seed"], params=facts["params"],
                      attributes=facts["attributes"], timings=timings, unet_calls=facts.get("unet_calls"),
                      chosen=facts.get("chosen", {}), stats={"server": self.url}, prompt=request.prompt)
