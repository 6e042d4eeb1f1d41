"""The server's job queue: jobs of all clients run one at a time on the device, first come first served.

A bounded backlog: when ``max_backlog`` jobs wait, ``submit`` raises ``Busy`` (the API answers 503), so a flood of
clients costs memory for at most that many uploads. Each job has a public id and a secret key: only the client
that submitted it (it alone got the key) can follow, cancel or fetch it. Progress is kept as the newest event and
the newest preview only, with a version counter and a condition variable, so a slow client never makes the job
wait and never sees a backlog of stale frames. Finished jobs are forgotten after ``keep_seconds``.
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from engine.api import Cancelled, CancelToken, InpaintError, Preview, Request, Result, drive

TERMINAL = ("done", "failed", "cancelled")


class Busy(Exception):
    """The backlog is full."""


class NotYours(Exception):
    """A job id with the wrong key."""


@dataclass
class Job:
    id: str
    key: str
    model: str
    request: Request
    source: str = ""  # the uploaded file's name (PNG metadata)
    cancel: CancelToken = field(default_factory=CancelToken)
    state: str = "queued"  # queued | running | done | failed | cancelled
    step: int = 0
    total: int = 0
    stage: str = ""
    message: str = ""
    error: str = ""
    preview: Preview | None = None  # the newest one with an image
    result: Result | None = None
    version: int = 0  # bumped on every change; a follower waits for a newer one
    created: float = field(default_factory=time.monotonic)
    ended: float | None = None

    def status(self) -> dict[str, Any]:
        out = {"id": self.id, "model": self.model, "state": self.state, "step": self.step, "total": self.total,
               "stage": self.stage, "message": self.message, "version": self.version}
        if self.error:
            out["error"] = self.error
        if self.result is not None:
            r = self.result
            out["result"] = {"seed": r.seed, "params": r.params, "attributes": r.attributes, "chosen": r.chosen,
                             "timings": r.timings, "unet_calls": r.unet_calls}
        return out


class JobQueue:
    """``run(job)`` is injectable (tests); by default it loads the model and drives ``engine.runner.run_job``."""

    def __init__(self, max_backlog: int = 8, keep_seconds: float = 600.0,
                 run: Callable[["Job", Callable[[Preview], None]], Result] | None = None) -> None:
        self.max_backlog = max_backlog
        self.keep_seconds = keep_seconds
        self._run = run or _run_with_engine
        self._waiting: deque[Job] = deque()
        self._jobs: dict[str, Job] = {}
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._work, name="inpaint-server-jobs", daemon=True)
        self._thread.start()

    # ----- clients ------------------------------------------------------------------------------------------
    def submit(self, model: str, request: Request, source: str = "") -> Job:
        with self._cond:
            self._forget_old()
            if len(self._waiting) >= self.max_backlog:
                raise Busy(f"the server is busy: {len(self._waiting)} jobs are waiting; try again later")
            job = Job(secrets.token_urlsafe(9), secrets.token_urlsafe(24), model, request, source)
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._cond.notify_all()
            return job

    def get(self, job_id: str, key: str) -> Job:
        """The job, for the client holding its key: KeyError if unknown, NotYours if the key is wrong."""
        with self._cond:
            job = self._jobs[job_id]
        if not secrets.compare_digest(job.key, key or ""):
            raise NotYours(f"job {job_id} belongs to another client")
        return job

    def cancel(self, job: Job) -> None:
        with self._cond:
            job.cancel.cancel()
            if job.state == "queued":
                self._waiting.remove(job)
                self._end(job, "cancelled")

    def wait(self, job: Job, version: int, timeout: float) -> int:
        """Block until the job changes past ``version`` (or ``timeout`` seconds); return its version."""
        with self._cond:
            self._cond.wait_for(lambda: job.version > version or self._stopped, timeout)
            return job.version

    def position(self, job: Job) -> int:
        """How many jobs run or wait before this one (0: it runs now)."""
        with self._cond:
            return self._waiting.index(job) + 1 if job in self._waiting else 0

    @property
    def backlog(self) -> int:
        with self._cond:
            return len(self._waiting)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            for job in list(self._waiting):
                job.cancel.cancel()
                self._end(job, "cancelled")
            self._waiting.clear()
            running = [j for j in self._jobs.values() if j.state == "running"]
            for job in running:
                job.cancel.cancel()
            self._cond.notify_all()
        self._thread.join(timeout=10)

    # ----- the worker ---------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._waiting or self._stopped)
                if self._stopped:
                    return
                job = self._waiting.popleft()
                job.state = "running"
                self._bump(job)
            try:
                result = self._run(job, lambda p: self._progress(job, p))
            except Cancelled:
                self._finish(job, "cancelled")
            except InpaintError as exc:
                self._finish(job, "failed", _first_line(exc) or type(exc).__name__)
            except Exception as exc:  # a model bug: one line to the client, the server goes on
                self._finish(job, "failed", f"{job.model} failed: {type(exc).__name__}: {_first_line(exc)}")
            else:
                job.result = result
                self._finish(job, "done")

    def _progress(self, job: Job, p: Preview) -> None:
        with self._cond:
            job.step, job.total, job.stage = p.step, p.total, p.stage
            if p.message:
                job.message = p.message
            if p.image is not None:
                job.preview = p
            self._bump(job)

    def _finish(self, job: Job, state: str, error: str = "") -> None:
        with self._cond:
            job.error = error
            self._end(job, state)

    def _end(self, job: Job, state: str) -> None:  # holding the lock
        job.state, job.ended = state, time.monotonic()
        job.request = None  # type: ignore[assignment]  # the upload is not needed any more
        self._bump(job)

    def _bump(self, job: Job) -> None:  # holding the lock
        job.version += 1
        self._cond.notify_all()

    def _forget_old(self) -> None:  # holding the lock
        now = time.monotonic()
        for job_id in [j.id for j in self._jobs.values() if j.ended and now - j.ended > self.keep_seconds]:
            del self._jobs[job_id]


def _run_with_engine(job: Job, on_preview: Callable[[Preview], None]) -> Result:
    from engine import registry
    from engine.runner import run_job

    return drive(run_job(registry.load(job.model), job.request, job.cancel), on_preview)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
