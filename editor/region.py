"""The region box of a ``uses_region`` model (e.g. the face box): where it is (kept on the ``Document``, which the
canvas draws and drags) and where it came from: "default" (centred on the mask; it follows the mask at each Fill),
"detected" (the model's suggestion, looked for on the worker when the model or the image changes) or "user"
(dragged). State and a Qt signal, no widgets; the ``Session`` owns one."""
from __future__ import annotations

from PySide6.QtCore import QObject, Signal, Slot

from editor.document import Document, Rect
from editor.worker import JobController
from engine.api import ModelInfo


class RegionBox(QObject):
    changed = Signal(object, str)  # (x0, y0, x1, y1) or None, where it came from

    def __init__(self, doc: Document, jobs: JobController, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.doc, self.jobs = doc, jobs
        self.info: ModelInfo | None = None  # the model picked (set by the Session)
        self.source = "default"
        self._detecting = False  # a suggestion is on its way
        jobs.region_ready.connect(self._on_suggested)

    @property
    def detecting(self) -> bool:
        """The box is the default one and the model's suggestion (e.g. the face) is still being looked for."""
        return self._detecting and self.source == "default"

    def set(self, region: Rect | None, source: str = "user") -> None:
        """Move the box; ``source``: "default" | "detected" | "user"."""
        self.source = source
        self.doc.set_region(region)
        self.changed.emit(self.doc.region, source)

    def place(self) -> None:
        """Centre the box on the mask now; move it to the model's suggestion when that arrives. Until then, or when
        there is none, the box follows the mask at each Fill (``follow_mask``)."""
        self._detecting = True
        self.set(self.doc.default_region(self._side()), "default")
        self.jobs.detect_region(self.info.name, self.doc.image)

    def follow_mask(self) -> None:
        """Before a Fill: a box neither suggested nor moved is centred on the mask as it is now."""
        if self.source == "default":
            self.set(self.doc.default_region(self._side()), "default")

    def _side(self) -> int:
        return self.info.resolution * 2 if self.info.resolution else 256

    @Slot(object)
    def _on_suggested(self, region) -> None:
        self._detecting = False
        if region is not None and self.info is not None and self.info.uses_region and self.source == "default":
            self.set(tuple(int(v) for v in region), "detected")
        else:  # nothing found (or the box was moved meanwhile): the box stays, no longer "looking"
            self.changed.emit(self.doc.region, self.source)
