"""The undo steps of the document: a changed rectangle of one layer, the accepted mark of a result, Expand canvas
(the one step that changes the image size) and the pending border of an expansion."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtGui import QUndoCommand

from editor import layers

if TYPE_CHECKING:
    from editor.document import Document, HistoryItem

Rect = tuple[int, int, int, int]


class PatchCommand(QUndoCommand):
    """Replaces one rectangle of one layer; undo puts the old pixels back."""

    def __init__(self, doc: "Document", layer: str, rect: Rect, before: np.ndarray, after: np.ndarray,
                 text: str, parent: QUndoCommand | None = None) -> None:
        super().__init__(text, parent)
        self.doc, self.layer, self.rect = doc, layer, rect
        self.before, self.after = before.copy(), after.copy()

    def redo(self) -> None:
        self.doc._write(self.layer, self.rect, self.after)

    def undo(self) -> None:
        self.doc._write(self.layer, self.rect, self.before)


class AcceptMark(QUndoCommand):
    """Part of the accept macro: marks the history item accepted, and unmarks it on undo so it can be accepted
    again."""

    def __init__(self, doc: "Document", item: "HistoryItem", parent: QUndoCommand | None = None) -> None:
        super().__init__("Mark accepted", parent)
        self.doc, self.item = doc, item

    def redo(self) -> None:
        self.item.accepted = True
        self.doc.results_changed.emit()

    def undo(self) -> None:
        self.item.accepted = False
        self.doc.results_changed.emit()


class BorderCommand(QUndoCommand):
    """Sets the pending border of an expansion (None once a fill covered it)."""

    def __init__(self, doc: "Document", border, parent: QUndoCommand | None = None) -> None:
        super().__init__("Border filled", parent)
        self.doc, self.new, self.old = doc, border, doc.border

    def redo(self) -> None:
        self.doc.border = self.new

    def undo(self) -> None:
        self.doc.border = self.old


class ExpandCommand(QUndoCommand):
    """Image > Expand canvas: every layer and every history result grows by ``pads``; the new border is masked
    (fully) and remembered as the border still to fill. Undo crops everything back; a result that lay only in the
    border is kept aside and comes back with a redo."""

    def __init__(self, doc: "Document", pads: layers.Pads, fill: str) -> None:
        left, top, right, bottom = pads
        super().__init__(f"Expand canvas (+{left + right} x +{top + bottom} px)")
        self.doc, self.pads, self.fill = doc, pads, fill
        self.old_border = doc.border
        self.aside: list = []

    def redo(self) -> None:
        d, p = self.doc, self.pads
        d.image = layers.pad(d.image, p, self.fill)
        d.original = layers.pad(d.original, p, self.fill)
        d.alpha = None if d.alpha is None else layers.pad(d.alpha, p, value=255)
        d.mask = layers.pad(d.mask, p)
        d.mask[layers.border_mask(d.mask.shape, p)] = 255
        d.sketch = layers.pad(d.sketch, p, value=False)
        for item in d.results:
            item.pad(p, self.fill)
        d.results.extend(self.aside)
        self.aside = []
        old = self.old_border or (0, 0, 0, 0)
        d.border = tuple(a + b for a, b in zip(old, p))
        if d.region is not None:
            x0, y0, x1, y1 = d.region
            d.region = (x0 + p[0], y0 + p[1], x1 + p[0], y1 + p[1])
        d._geometry_changed()

    def undo(self) -> None:
        d, p = self.doc, self.pads
        for name in ("image", "original", "mask", "sketch"):
            setattr(d, name, layers.unpad(getattr(d, name), p))
        d.alpha = None if d.alpha is None else layers.unpad(d.alpha, p)
        kept = []
        for item in d.results:
            (kept if item.unpad(p) else self.aside).append(item)  # unpad leaves a border-only result as it was
        d.results = kept
        d.border = self.old_border
        if d.region is not None:
            x0, y0, x1, y1 = d.region
            d.region = (max(0, x0 - p[0]), max(0, y0 - p[1]), max(0, x1 - p[0]), max(0, y1 - p[1]))
        d._geometry_changed()
