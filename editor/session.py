"""The editor session: what the next job will be, and the flows that run jobs. State and Qt signals, no widgets.

As in Krita AI Diffusion's ``Model`` and napari's layer events, widgets write edits here (``set_param``,
``set_seed``, ...) and follow the change signals back, so a change a flow makes (a variation's new seed, a
``Param.once`` switch turned off after the job that used it) reaches the panels exactly as a user's edit does.
Nothing here names a model family or a parameter: what a model needs comes from its ``ModelInfo``.

State, in plain Python values:
- the model (``info``: its ``ModelInfo``); per model, its parameters and attributes, kept for the session when
  another model is picked (parameters marked ``Param.remember`` also across sessions: QSettings
  ``params/<model>/<name>``);
- the seed and the prompt, shared by every model;
- the region box of a ``uses_region`` model and where it came from (``editor.region.RegionBox``).

Before a fill (``editor.fit``): a model not made for this image (digits on a colour photo) shows a warning
(``warning_changed``) and Fill asks first; a mask on the border an Expand canvas added, with a model that cannot
fill a border, says why and offers one that can. The questions go through ``ask`` (set by the window; None: no
question, fill).

Flows: ``fill``, ``learn``, ``variation``, ``refill`` (a model with attributes redoes the shown, unaccepted result
after an attribute flip), "learn, then fill" (Fill pressed while the same model learns the image waits for the learning,
then fills from it) and ``cancel``. Jobs run on the ``JobController`` (editor/worker.py); results go to the
``Document``.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, QSettings, Signal, Slot

from editor import fit
from editor.document import Document, HistoryItem, Rect
from editor.region import RegionBox
from editor.worker import Job, JobController
from engine import registry
from engine.api import InpaintError, ModelInfo, Preview, Result

SEED_MAX = 2**31 - 1
PHASES = ("idle", "filling", "learning", "waiting")  # waiting: a Fill waits for the running learning


@dataclass(frozen=True)
class JobStart:
    """A job the session started, as the progress panel needs to know it."""

    id: int
    kind: str  # "fill" | "learn"
    model: str
    instant: bool  # an instant refill: no busy bar (it would only flash)
    learns: bool  # trains on the image: the loss curve is shown
    after_learn: bool = False  # the fill that follows a Learn: the Learn's loss curve stays up


@dataclass
class _Choices:
    """One model's settings in this session."""

    params: dict[str, Any]
    attributes: dict[str, float]


def _doing(job: Job) -> str:
    return "Learning" if job.kind == "learn" else "Fill"


class Session(QObject):
    model_changed = Signal(str)  # a model was picked: its params, attributes (and region) replace the old ones
    param_changed = Signal(str, object)  # name, value (of the current model)
    attribute_changed = Signal(str, float)  # name, 0.0 | 1.0
    seed_changed = Signal(int)
    prompt_changed = Signal(str)
    region_changed = Signal(object, str)  # (x0, y0, x1, y1) or None, where it came from
    phase_changed = Signal(str)  # one of PHASES
    job_started = Signal(object)  # JobStart
    job_ended = Signal(str)  # the progress bar's last word: "done in 1.20 s", "failed", "cancelled", "idle"
    progress = Signal(int, int, float, str)  # the running job's step, total, ETA s (-1: unknown), stage
    loss_point = Signal(int, float)  # a training step's loss
    message = Signal(str)  # the model's own status line (Preview.message)
    status = Signal(str, int)  # a line for the status bar, shown for that many ms (0: until replaced)
    error = Signal(str, str)  # title, one-line message: the window shows it in a dialog
    warning_changed = Signal(str)  # the model does not fit the image: one sentence ("" when it does)

    def __init__(self, doc: Document, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.jobs = JobController(self)
        self.info: ModelInfo | None = None
        self._choices: dict[str, _Choices] = {}
        self._seed = 0
        self._prompt = ""
        self.box = RegionBox(doc, self.jobs, self)
        self.box.changed.connect(self.region_changed)
        self._phase = "idle"
        self._fill_after: int | None = None  # id of the learn job a Fill waits for
        self._replace: tuple[int, int] | None = None  # (job id, history index) a refill replaces
        self._refill_t0: float | None = None
        self.last_refill_latency: float | None = None  # attribute flip -> refilled canvas painted, seconds
        # (title, text, choices, default) -> the chosen one, or None when dismissed; set by the window
        self.ask: Callable[[str, str, list[str], str], str | None] | None = None
        self._image_gen = 0  # counts opened images: "fill anyway" holds for one model on one image
        self._fill_anyway: set[tuple[str, int]] = set()
        self._warning = ""
        jobs = self.jobs
        jobs.progress.connect(self._on_progress)
        jobs.loss_point.connect(self._on_loss)
        jobs.message.connect(self._on_message)
        jobs.preview_tick.connect(self._on_preview)
        jobs.finished.connect(self._on_finished)
        jobs.failed.connect(self._on_failed)
        jobs.cancelled.connect(self._on_cancelled)
        jobs.busy_changed.connect(self._update_phase)
        doc.image_replaced.connect(self._on_image_replaced)

    # ----- state ---------------------------------------------------------------------------------------------
    @property
    def model(self) -> str | None:
        return None if self.info is None else self.info.name

    @property
    def params(self) -> dict[str, Any]:
        """The current model's parameters (a copy: change them with ``set_param``)."""
        return dict(self._choices[self.info.name].params) if self.info is not None else {}

    @property
    def attributes(self) -> dict[str, float]:
        return dict(self._choices[self.info.name].attributes) if self.info is not None else {}

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def prompt(self) -> str:
        return self._prompt

    @property
    def region(self) -> Rect | None:
        return self.doc.region

    @property
    def region_source(self) -> str:
        return self.box.source

    @property
    def region_detecting(self) -> bool:
        return self.box.detecting

    @property
    def phase(self) -> str:
        return self._phase

    @property
    def busy(self) -> bool:
        return self.jobs.busy

    @property
    def refill_pending(self) -> bool:
        """A refill's latency is being measured (its result is not painted yet)."""
        return self._refill_t0 is not None

    def set_model(self, name: str) -> None:
        """Pick a model (InpaintError for an unknown one): a running job is cancelled, the model's settings from
        earlier in this session come back, its code is loaded on the worker now, its region box is placed."""
        if name == self.model:
            return
        info = registry.get_info(name)
        self.cancel()  # its result would belong to the other model
        self._fill_after = None
        self.info = self.box.info = info
        if name not in self._choices:
            self._choices[name] = _Choices(self._initial_params(info),
                                           {a.name: float(a.default) for a in info.attributes})
        self.model_changed.emit(name)
        self._update_warning()
        if info.uses_region:
            self.box.place()  # asks the worker first: finding the face takes ~0.15 s, the model's imports ~1 s
        self.jobs.warm_up(name)

    def models_changed(self) -> None:
        """The model list changed (another server, this computer again): stop the running job and re-read the
        current model's description (a server's model learns inside its fill job). A model the new list lacks is
        replaced by the panel's refresh."""
        self.cancel()
        if self.info is None:
            return
        try:
            self.info = registry.get_info(self.info.name)
        except InpaintError:
            return
        self.model_changed.emit(self.info.name)
        self._update_warning()

    @property
    def warning(self) -> str:
        """Why the current model does not fit the open image ("" when it does)."""
        return self._warning

    def _update_warning(self) -> None:
        text = fit.domain_warning(self.info, self.doc.image) or ""
        if text != self._warning or text:
            self._warning = text
            self.warning_changed.emit(text)

    @staticmethod
    def _initial_params(info: ModelInfo) -> dict[str, Any]:
        settings = QSettings()
        out = {}
        for p in info.params:
            out[p.name] = p.default
            if p.remember:
                try:
                    out[p.name] = p.parse(settings.value(f"params/{info.name}/{p.name}", p.default))
                except InpaintError:  # a value the schema no longer accepts: the default
                    pass
        return out

    def set_param(self, name: str, value: Any) -> None:
        """Set a parameter of the current model (parsed by its ``Param``: InpaintError when invalid)."""
        self._store(self.info.name, name, self.info.param(name).parse(value))

    def _store(self, model: str, name: str, value: Any) -> None:
        choices = self._choices[model]
        if name in choices.params and choices.params[name] == value:
            return
        choices.params[name] = value
        if registry.get_info(model).param(name).remember:
            QSettings().setValue(f"params/{model}/{name}", value)
        if model == self.model:
            self.param_changed.emit(name, value)

    def set_attribute(self, name: str, value: float) -> None:
        """Set an attribute of the current model; the shown fill is redone with it at once (``refill``)."""
        attributes = self._choices[self.info.name].attributes
        if name not in attributes:
            raise InpaintError(f"model {self.info.name} has no attribute {name!r}")
        if attributes[name] == float(value):
            return
        attributes[name] = float(value)
        self.attribute_changed.emit(name, float(value))
        self.refill()

    @Slot(int)
    def set_seed(self, seed: int) -> None:
        seed = int(seed)
        if seed != self._seed:
            self._seed = seed
            self.seed_changed.emit(seed)

    @Slot(str)
    def set_prompt(self, prompt: str) -> None:
        if prompt != self._prompt:
            self._prompt = prompt
            self.prompt_changed.emit(prompt)

    def set_region(self, region: Rect | None, source: str = "user") -> None:
        """Move the region box (``RegionBox.set``)."""
        self.box.set(region, source)

    # ----- flows ---------------------------------------------------------------------------------------------
    @Slot()
    def fill(self) -> int | None:
        """Fill the mask with the current model and settings; returns the job id, or None after an error.

        While the same model learns this image (``learn``), Fill does not restart it: the fill starts when the
        learning ends (and then finds the weights learned), and the learn job's id is returned."""
        if self.info is None or not self._fits():
            return None
        learning = self._learning()
        if learning is not None and self.doc.mask.any():
            self._fill_after = learning.id
            self._update_phase()
            self.status.emit("Fill starts when the learning ends; keep painting until then", 0)
            return learning.id
        return self._start_fill()

    def _fits(self) -> bool:
        """The checks before a fill (the model's domain, a border to fill); a question when one fails. False: do
        not fill. An answer may switch the model first."""
        if self.ask is None or not self.doc.mask.any():
            return True
        key = (self.info.name, self._image_gen)
        if self._warning and key not in self._fill_anyway:
            best = fit.photo_default(registry.all_models(), registry.DEFAULT_MODEL)
            use = [f"Use {best.title}"] if best is not None and best.name != self.info.name else []
            choice = self.ask("Model not made for this image", self._warning, use + ["Fill anyway", "Cancel"],
                              use[0] if use else "Cancel")
            if choice == "Fill anyway":
                self._fill_anyway.add(key)
            elif use and choice == use[0]:
                self.set_model(best.name)
            else:
                return False
        problem = fit.outpaint_problem(self.info, self.doc.border_pending())
        if problem:
            can = fit.outpaint_model(registry.all_models(), registry.DEFAULT_MODEL)
            use = [f"Use {can.title}"] if can is not None else []
            tip = f" {can.title} can: {can.on_photo}" if can is not None else " No installed model can."
            choice = self.ask("This model cannot fill the border", problem + tip, use + ["Fill anyway", "Cancel"],
                              use[0] if use else "Cancel")
            if use and choice == use[0]:
                self.set_model(can.name)
            elif choice != "Fill anyway":
                return False
        return True

    def _start_fill(self, after_learn: bool = False) -> int | None:
        info = self.info
        if not self.doc.mask.any():
            self.error.emit("Nothing to fill", "The mask is empty: paint the area to fill first (B = mask brush).")
            return None
        if not info.weights_present:
            self.error.emit("Model not available", f"{info.title}: weights not found at {info.weights}")
            return None
        if info.uses_region:
            self.box.follow_mask()
        req = self.doc.request(self._seed, self.params, self.attributes, self._prompt if info.uses_prompt else "",
                               info.uses_region)
        job_id = self.jobs.start(info.name, req, info.instant)  # first, so the worker starts while the GUI updates
        if not info.instant:  # an instant refill keeps the old result up until the new one lands: no flicker
            self.doc.show_result(None)
        self.job_started.emit(JobStart(job_id, "fill", info.name, info.instant, info.learns_on_image, after_learn))
        self.status.emit(f"Filling with {info.title}, seed {req.seed}...", 0)
        return job_id

    @Slot()
    def learn(self) -> int | None:
        """Learn the open image with the current model and settings, without filling, so the learning overlaps the
        painting of the mask. The mask painted so far (possibly none) is kept out of learning, as a Fill would.
        Returns the job id, or None when the model does not learn on the image."""
        info = self.info
        if info is None or not info.learns_on_image:
            return None
        if (learning := self._learning()) is not None:
            self.status.emit("Already learning this image", 4000)  # a restart would lose its progress
            return learning.id
        self._fill_after = None
        job_id = self.jobs.start(info.name, self.doc.request(self._seed, self.params, {}), kind="learn")
        self.job_started.emit(JobStart(job_id, "learn", info.name, instant=False, learns=True))
        self.status.emit("Learning the image: keep painting the mask, then Fill", 0)  # short: the bar cuts long lines
        return job_id

    @Slot()
    def variation(self) -> int | None:
        """A random seed, then Fill."""
        self.set_seed(random.randrange(0, SEED_MAX))
        return self.fill()

    @Slot()
    def refill(self) -> int | None:
        """A model with attributes fills again after a toggle flipped, replacing the shown result when it is an
        unaccepted fill of this mask by this model: flipping attributes on one hole refines one result instead of
        filling the strip with near-copies (an instant model in milliseconds, a Stable Diffusion one with its
        previews). Its latency (up to the canvas painting it) is measured: ``last_refill_latency``."""
        info = self.info
        if info is None or not info.attributes or not self.doc.mask.any():
            return None
        shown = self.doc.shown_item()
        same = (shown is not None and not shown.accepted and shown.model == info.name
                and np.array_equal(shown.mask, self.doc.mask))
        self._refill_t0 = time.perf_counter()
        job_id = self.fill()
        if job_id is None:
            self._refill_t0 = None
        self._replace = (job_id, self.doc.shown) if same and job_id is not None else None
        return job_id

    @Slot()
    def cancel(self) -> None:
        """Stop the running job (a Fill waiting for a cancelled learning is dropped with it)."""
        self.jobs.cancel()

    def shutdown(self) -> None:
        """Cancel and stop the worker thread (cancel -> quit() -> wait())."""
        self.jobs.shutdown()

    @Slot(float)
    def note_painted(self, t: float) -> None:
        """The canvas painted at perf_counter ``t``: a refill's latency ends when its result is on screen."""
        if self._refill_t0 is not None and self.doc.shown is not None and not self.jobs.busy:
            self.last_refill_latency = t - self._refill_t0
            self._refill_t0 = None
            self.status.emit(f"Refilled in {self.last_refill_latency * 1000:.0f} ms", 4000)

    def _learning(self) -> Job | None:
        """The running learn job of the current model, if any."""
        job = self.jobs.job
        return job if job is not None and job.kind == "learn" and job.model == self.model else None

    @Slot()
    def _update_phase(self) -> None:
        job = self.jobs.job
        phase = ("idle" if job is None else "waiting" if self._fill_after == job.id
                 else "learning" if job.kind == "learn" else "filling")
        if phase != self._phase:
            self._phase = phase
            self.phase_changed.emit(phase)

    def _turn_off_once(self, job: Job) -> None:
        """``Param.once`` switches apply to one job: off once a job that used them ran to its end (a cancelled or
        failed one leaves them on)."""
        for p in registry.get_info(job.model).params:
            if p.once and p.kind == "bool" and job.request.params.get(p.name):
                self._store(job.model, p.name, False)

    # ----- job events ----------------------------------------------------------------------------------------
    def _current(self) -> bool:
        """The running job belongs to the picked model (a switch cancels it; its last reports are dropped)."""
        return self.jobs.job is not None and self.jobs.job.model == self.model

    @Slot(int, int, float, str)
    def _on_progress(self, step: int, total: int, eta: float, stage: str) -> None:
        if self._current():
            self.progress.emit(step, total, eta, stage)

    @Slot(int, float)
    def _on_loss(self, step: int, loss: float) -> None:
        if self._current():
            self.loss_point.emit(step, loss)

    @Slot(str)
    def _on_message(self, text: str) -> None:
        if self._current():
            self.message.emit(text)

    @Slot(object)
    def _on_preview(self, p: Preview) -> None:
        self.doc.set_preview(p.image, p.box)

    @Slot(object, object)
    def _on_finished(self, result: Result | dict, job: Job) -> None:
        self.doc.clear_preview()
        self._turn_off_once(job)  # before a waiting fill starts: it must not, e.g., learn again
        if job.kind == "learn":
            how = "loaded from the cache" if result.get("cached") else f"learned in {result.get('wall', 0.0):.0f} s"
            self.job_ended.emit(f"done: {how}")
            if self._fill_after == job.id:
                self._fill_after = None
                self._start_fill(after_learn=True)
            else:
                self.status.emit(f"Image {how}: Fill starts from it", 8000)
            return
        replace = self._replace[1] if self._replace is not None and self._replace[0] == job.id else None
        self._replace = None
        self.doc.add_result(HistoryItem.from_result(result, job.request), replace)
        total = result.timings.get("total", 0.0)
        self.job_ended.emit(f"done in {total:.2f} s")
        self.status.emit(f"{result.model}: filled in {total:.2f} s (seed {result.seed}); "
                         "Ctrl+Shift+A accepts, C compares", 8000)

    @Slot(str, object)
    def _on_failed(self, message: str, job: Job) -> None:
        self._job_over()
        self.job_ended.emit("failed")
        try:
            info = registry.get_info(job.model)
        except InpaintError:
            info = None
        self.error.emit(f"{_doing(job)} failed", fit.user_words(message, info))

    @Slot(object)
    def _on_cancelled(self, job: Job) -> None:
        self._job_over()
        self.job_ended.emit("cancelled" if job.model == self.model else "idle")  # a switch: the old model's
        self.status.emit(f"{_doing(job)} cancelled", 4000)

    def _job_over(self) -> None:
        self._refill_t0 = self._fill_after = self._replace = None
        self.doc.clear_preview()
        self._update_phase()

    @Slot()
    def _on_image_replaced(self) -> None:
        self.jobs.abandon()  # its result would belong to the previous image
        self._job_over()
        self.job_ended.emit("idle")
        self._image_gen += 1
        self._update_warning()
        if self.info is not None and self.info.uses_region:
            self.box.place()
