"""Runs engine jobs on one long-lived QThread and hands their previews to the GUI without flooding it.

Threading rules (DESIGN.md): one worker object living on a QThread, ``@Slot`` receivers, no lambdas across
threads, previews cross as owned numpy copies, the GUI polls the newest preview on a ~15 fps timer. Models are
loaded (torch) on the worker thread only. Shutting down is cancel -> quit() -> wait(), never terminate().
"""
from __future__ import annotations

import dataclasses
import sys
import time
import traceback
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Signal, Slot

from engine import registry
from engine.api import CancelToken, Cancelled, InpaintError, Preview, Request, Result, drive
from engine.runner import run_job, run_learn

PREVIEW_FPS = 15


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


@dataclass
class Job:
    id: int
    model: str
    request: Request
    cancel: CancelToken
    started: float  # perf_counter when Fill was pressed (GUI thread)
    instant: bool = False  # its result follows at once: drawing its previews would only delay it
    kind: str = "fill"  # "fill": ends with a Result; "learn": learns the image only, ends with the stats dict


class FillWorker(QObject):
    """Lives on the worker thread. Emits only plain Python objects it no longer touches."""

    preview = Signal(int, object)  # job id, Preview with an owned image copy
    finished = Signal(int, object)  # job id, Result (a learn job: its stats dict)
    failed = Signal(int, str)  # job id, one-line message
    cancelled = Signal(int)
    region_found = Signal(int, object)  # request id, (x0, y0, x1, y1) or None
    device_found = Signal(str, bool)  # where learned models will compute (a label or the setting's error), has a GPU

    @Slot()
    def probe_device(self) -> None:
        """Where the next learned-model job computes. Only once torch is loaded (by a learned model's job): importing
        it holds the GIL long enough to stall the GUI for half a second, which a Fill may do but startup should not."""
        torch = sys.modules.get("torch")
        if torch is None:
            return
        from engine.device import compute_device, describe

        try:
            label, has_gpu = describe(compute_device()), torch.cuda.is_available()
        except InpaintError as exc:
            label, has_gpu = first_line(exc), torch.cuda.is_available()
        except Exception as exc:  # a broken driver: say so; the job that asked goes on (a CPU model needs no GPU)
            label, has_gpu = f"GPU unusable ({type(exc).__name__}: {first_line(exc)})", False
        self.device_found.emit(label, has_gpu)

    @Slot(str)
    def warm_up(self, model: str) -> None:
        """Build the model's inpainter (importing torch for a learned model) and let it do its own first-use work
        (``warm_up()``, if it has one) now, when the model is picked: those imports hold the GIL long enough to stall
        the GUI for a few hundred ms, which should not happen while the user paints during a Learn. A failure here
        is left to the job, which reports it."""
        if registry.server() is not None:
            return
        try:
            registry.load(model).warm_up()
        except Exception:
            return
        self.probe_device()

    @Slot(int, str, object)
    def detect(self, request_id: int, model: str, image: np.ndarray) -> None:
        """A uses_region model's box suggestion (e.g. a face detector): a few hundred ms, so not on the GUI."""
        try:
            region = registry.suggest_region(model, image)
        except Exception:  # a failing detector only costs the suggestion: the box stays centred on the mask
            traceback.print_exc(file=sys.stderr)
            region = None
        self.region_found.emit(request_id, region)

    def _forward_preview(self, job_id: int, p: Preview) -> None:
        """Previews cross the thread boundary as owned copies: the engine may reuse its buffers."""
        image = None if p.image is None else np.array(p.image, dtype=np.uint8, copy=True)
        self.preview.emit(job_id, dataclasses.replace(p, image=image))

    @Slot(object)
    def run(self, job: Job) -> None:
        if job.cancel.cancelled:  # a newer job was queued behind this one; skip the model load too
            self.cancelled.emit(job.id)
            return
        try:
            server = registry.server()
            if server is not None:  # the server crops, runs and blends; its previews arrive in image pixels
                gen = server.run_job(job.model, job.request, job.cancel)
            else:
                inpainter = registry.load(job.model)
                self.probe_device()  # a learned model has loaded torch: say where it computes
                gen = (run_learn if job.kind == "learn" else run_job)(inpainter, job.request, job.cancel)
            result: Result | dict = drive(gen, lambda p: self._forward_preview(job.id, p))
        except Cancelled:
            self.cancelled.emit(job.id)
        except InpaintError as exc:
            self.failed.emit(job.id, first_line(exc) or type(exc).__name__)
        except Exception as exc:  # a model bug must not kill the thread or the app; keep the trace for bug reports
            traceback.print_exc(file=sys.stderr)
            self.failed.emit(job.id, f"{job.model} failed: {type(exc).__name__}: {first_line(exc)}")
        else:
            self.finished.emit(job.id, result)


class JobController(QObject):
    """GUI-thread side: starts jobs, cancels them, and re-emits only the current job's events.

    ``preview_tick`` fires at most ~15 times a second with the newest preview; ``loss_point`` fires for every
    training preview (cheap scalars, so the loss curve misses nothing).
    """

    started = Signal(int)
    preview_tick = Signal(object)  # newest Preview since the last tick
    progress = Signal(int, int, float, str)  # step, total, eta seconds (-1 = unknown), stage
    loss_point = Signal(int, float)
    message = Signal(str)  # a model's own status line (Preview.message), e.g. "learning the image"
    finished = Signal(object, object)  # Result (learn job: stats dict), the Job it answers (its request: the mask)
    failed = Signal(str, object)  # one-line message, the Job
    cancelled = Signal(object)  # the Job
    busy_changed = Signal(bool)
    region_ready = Signal(object)  # the newest detect_region answer: (x0, y0, x1, y1) or None
    device_found = Signal(str, bool)  # probe_device's answer: a label (or the setting's error), whether a GPU exists
    _submit = Signal(object)
    _detect = Signal(int, str, object)
    _probe = Signal()
    _warm = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("inpaint-worker")
        self._worker = FillWorker()
        self._worker.moveToThread(self._thread)
        self._submit.connect(self._worker.run)
        self._detect.connect(self._worker.detect)
        self._worker.region_found.connect(self._on_region)
        self._probe.connect(self._worker.probe_device)
        self._warm.connect(self._worker.warm_up)
        self._worker.device_found.connect(self.device_found)
        self._detect_id = 0
        self._worker.preview.connect(self._on_preview)
        self._worker.finished.connect(self._on_finished)
        self._worker.failed.connect(self._on_failed)
        self._worker.cancelled.connect(self._on_cancelled)
        self._thread.start()
        app = QCoreApplication.instance()
        if app is not None:  # a window destroyed without closeEvent must still not leave a running QThread
            app.aboutToQuit.connect(self.shutdown)
        self._next_id = 0
        self.job: Job | None = None
        self._latest: Preview | None = None
        self.first_preview_latency: float | None = None  # Fill -> first preview drawn, seconds
        self._stage: tuple[str, float, int] = ("", 0.0, 0)
        self._timer = QTimer(self)
        self._timer.setInterval(1000 // PREVIEW_FPS)
        self._timer.timeout.connect(self._flush_preview)

    @property
    def busy(self) -> bool:
        return self.job is not None

    def start(self, model: str, request: Request, instant: bool = False, kind: str = "fill") -> int:
        """Cancel whatever runs and queue a new job; the worker skips cancelled jobs that are still queued."""
        if self.job is not None:
            self.job.cancel.cancel()
        self._next_id += 1
        self.job = Job(self._next_id, model, request, CancelToken(), time.perf_counter(), instant, kind)
        self._latest = None
        self.first_preview_latency = None
        self._stage = ("", self.job.started, 0)  # (stage, time, step) the ETA's rate is measured from
        self._timer.start()
        self._submit.emit(self.job)
        self.started.emit(self.job.id)
        self.busy_changed.emit(True)
        return self.job.id

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel.cancel()

    def detect_region(self, model: str, image: np.ndarray) -> None:
        """Ask the worker for the model's suggested box; only the newest request is answered."""
        self._detect_id += 1
        self._detect.emit(self._detect_id, model, image.copy())

    def warm_up(self, model: str) -> None:
        """Have the worker load ``model``'s code now (after any job it is running), before it is needed."""
        self._warm.emit(model)

    def probe_device(self) -> None:
        """Ask the worker where learned models compute now (after any job it is running); device_found answers
        once a learned model has run, and at the start of each such job."""
        self._probe.emit()

    @Slot(int, object)
    def _on_region(self, request_id: int, region) -> None:
        if request_id == self._detect_id:
            self.region_ready.emit(region)

    def abandon(self) -> None:
        """Cancel the current job and ignore anything it still reports (its document is gone)."""
        if self.job is not None:
            self.job.cancel.cancel()
            self._end(self.job.id)

    @Slot()
    def shutdown(self) -> None:
        """Cancel, stop the thread's event loop once the current slot returns, and wait for it. No time limit:
        a model still loading (not cancellable) is waited for, since a QThread destroyed while running aborts."""
        self.cancel()
        self._timer.stop()
        self._thread.quit()
        self._thread.wait()

    # ----- worker events (queued onto the GUI thread) -------------------------------------------------------
    @Slot(int, object)
    def _on_preview(self, job_id: int, p: Preview) -> None:
        if self.job is None or job_id != self.job.id:
            return
        if p.loss is not None:
            self.loss_point.emit(p.step, float(p.loss))
        if p.message:
            self.message.emit(p.message)
        now = time.perf_counter()
        if p.stage != self._stage[0] or p.step < self._stage[2]:  # a new stage (train -> denoise): new rate
            self._stage = (p.stage, now, p.step)
        _, t0, step0 = self._stage
        done = p.step - step0
        eta = (now - t0) / done * (p.total - p.step) if done > 0 and p.total > 0 else -1.0
        self.progress.emit(p.step, p.total, eta, p.stage)
        if p.image is not None:
            self._latest = p
            if self.first_preview_latency is None and not self.job.instant:  # first at once, the rest on the timer
                self._flush_preview()

    @Slot()
    def _flush_preview(self) -> None:
        p, self._latest = self._latest, None
        if p is None or self.job is None:
            return
        if self.first_preview_latency is None:
            self.first_preview_latency = time.perf_counter() - self.job.started
        self.preview_tick.emit(p)

    def _end(self, job_id: int) -> bool:
        if self.job is None or job_id != self.job.id:
            return False
        self.job = None
        self._latest = None
        self._timer.stop()
        self.busy_changed.emit(False)
        return True

    @Slot(int, object)
    def _on_finished(self, job_id: int, result: Result | dict) -> None:
        job = self.job
        if self._end(job_id):
            if job.kind == "fill":
                result.timings.setdefault("wall", time.perf_counter() - job.started)
            self.finished.emit(result, job)

    @Slot(int, str)
    def _on_failed(self, job_id: int, message: str) -> None:
        job = self.job
        if self._end(job_id):
            self.failed.emit(message, job)

    @Slot(int)
    def _on_cancelled(self, job_id: int) -> None:
        job = self.job
        if self._end(job_id):
            self.cancelled.emit(job)
