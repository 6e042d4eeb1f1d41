"""Fill / Cancel buttons, the progress bar with step count and ETA, and the live training-loss curve; bound to the
``Session`` (its phase names the Fill button, its jobs drive the bar)."""
from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Slot
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from editor.session import JobStart, Session

FILL_TEXT = {"idle": "Fill", "filling": "Restart fill", "learning": "Fill when learned", "waiting": "Fill when learned"}


def format_eta(seconds: float) -> str:
    if seconds < 0 or not math.isfinite(seconds):
        return "ETA --"
    seconds = int(round(seconds))
    return f"ETA {seconds // 60}:{seconds % 60:02d}"


class LossCurve(QWidget):
    """A small line chart of the training loss, log-scaled when it spans more than a decade."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.points: list[tuple[int, float]] = []
        self.setMinimumHeight(90)
        self.setToolTip("Training loss on this image (learns-on-image models)")

    def sizeHint(self) -> QSize:
        return QSize(240, 110)

    def clear(self) -> None:
        self.points = []
        self.update()

    @Slot(int, float)
    def add(self, step: int, loss: float) -> None:
        """A point of the current series; one that does not move forward (a cache hit's single "step 1" after a
        Learn whose curve is kept) is left out."""
        if math.isfinite(loss) and (not self.points or step > self.points[-1][0]):
            self.points.append((step, loss))
            self.update()

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        r = QRectF(self.rect()).adjusted(36, 6, -6, -16)
        p.fillRect(self.rect(), QColor(30, 32, 36))
        p.setPen(QPen(QColor(80, 84, 90), 1))
        p.drawRect(r)
        p.setPen(QColor(170, 170, 170))
        if len(self.points) < 2:
            p.drawText(r, Qt.AlignCenter, "loss curve appears while training")
            p.end()
            return
        steps = [s for s, _ in self.points]
        vals = [v for _, v in self.points]
        lo, hi = min(vals), max(vals)
        use_log = lo > 0 and hi / lo > 10
        f = (lambda v: math.log10(v)) if use_log else (lambda v: v)
        flo, fhi = f(lo), f(hi)
        span = (fhi - flo) or 1.0
        s0, s1 = steps[0], steps[-1]
        sspan = (s1 - s0) or 1
        path = QPainterPath()
        for i, (s, v) in enumerate(self.points):
            pt = QPointF(r.left() + (s - s0) / sspan * r.width(), r.bottom() - (f(v) - flo) / span * r.height())
            path.moveTo(pt) if i == 0 else path.lineTo(pt)
        p.setPen(QPen(QColor(255, 170, 40), 1.5))
        p.drawPath(path)
        p.setPen(QColor(170, 170, 170))
        font = p.font()
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.8))
        p.setFont(font)
        p.drawText(QRectF(0, r.top() - 4, 34, 14), Qt.AlignRight, f"{hi:.3g}")
        p.drawText(QRectF(0, r.bottom() - 10, 34, 14), Qt.AlignRight, f"{lo:.3g}")
        p.drawText(QRectF(r.left(), r.bottom() + 2, r.width(), 14), Qt.AlignRight,
                   f"step {s1}  loss {vals[-1]:.4g}" + ("  (log)" if use_log else ""))
        p.end()


class ProgressPanel(QWidget):
    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        row = QHBoxLayout()
        self.fill_button = QPushButton("Fill")
        self.fill_button.setToolTip("Fill the masked area with the selected model (Ctrl+Enter)")
        self.fill_button.setMinimumHeight(32)
        self.fill_button.setObjectName("fillButton")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running fill (Esc)")
        self.cancel_button.setEnabled(False)
        row.addWidget(self.fill_button, 2)
        row.addWidget(self.cancel_button, 1)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setFormat("idle")
        self.bar.setTextVisible(True)
        self.status = QLabel(" ")  # the model's own messages
        self.status.setWordWrap(True)
        self.loss = LossCurve()
        self.loss.setVisible(False)
        lay.addLayout(row)
        lay.addWidget(self.bar)
        lay.addWidget(self.status)
        lay.addWidget(self.loss)
        self.fill_button.clicked.connect(session.fill)
        self.cancel_button.clicked.connect(session.cancel)
        session.phase_changed.connect(self._on_phase)
        session.job_started.connect(self._on_job_started)
        session.job_ended.connect(self.finish)
        session.progress.connect(self.set_progress)
        session.loss_point.connect(self.loss.add)
        session.message.connect(self.status.setText)
        session.model_changed.connect(self._on_model_changed)

    @Slot(str)
    def _on_model_changed(self, name: str) -> None:
        """The previous model's progress, message and loss curve belong to it: cleared (its job was cancelled)."""
        self.status.setText(" ")
        self.finish("idle")
        self.loss.clear()
        self.loss.setVisible(False)

    @Slot(str)
    def _on_phase(self, phase: str) -> None:
        self.fill_button.setText(FILL_TEXT[phase])
        self.cancel_button.setEnabled(phase != "idle")

    @Slot(object)
    def _on_job_started(self, job: JobStart) -> None:
        if job.instant:  # an instant refill would only flash the busy bar and cost a repaint
            return
        self.bar.setRange(0, 0)  # indeterminate until the first preview says how many steps
        self.bar.setFormat("loading model...")
        self.status.setText(" ")
        if not job.after_learn:  # the fill after "Learn this image" keeps the Learn's curve up
            self.loss.clear()
        self.loss.setVisible(job.learns)

    @Slot(int, int, float, str)
    def set_progress(self, step: int, total: int, eta: float, stage: str) -> None:
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(min(step, total))
        what = "training" if stage == "train" else "step"
        self.bar.setFormat(f"{what} {step} / {total}   {format_eta(eta)}")

    @Slot(str)
    def finish(self, text: str) -> None:
        self.bar.setRange(0, 1)
        self.bar.setValue(1 if text.startswith("done") else 0)
        self.bar.setFormat(text)
