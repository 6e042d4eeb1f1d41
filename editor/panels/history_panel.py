"""The history strip: one thumbnail per finished fill, side by side; accept, discard or compare the selected one."""
from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (QHBoxLayout, QListView, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout,
                               QWidget)

from editor.qimages import rgb_qimage
from editor.document import Document, HistoryItem

THUMB = 96


def thumbnail(item: HistoryItem) -> QPixmap:
    """The result around its hole (bounding box plus a margin), letterboxed to a square."""
    x0, y0, x1, y1 = item.box
    h, w = item.image.shape[:2]
    m = max(8, (x1 - x0 + y1 - y0) // 4)
    crop = item.image[max(0, y0 - m):min(h, y1 + m), max(0, x0 - m):min(w, x1 + m)]
    s = THUMB / max(crop.shape[:2])
    small = cv2.resize(crop, (max(1, int(crop.shape[1] * s)), max(1, int(crop.shape[0] * s))),
                       interpolation=cv2.INTER_AREA)
    canvas = np.full((THUMB, THUMB, 3), 45, np.uint8)
    oy, ox = (THUMB - small.shape[0]) // 2, (THUMB - small.shape[1]) // 2
    canvas[oy:oy + small.shape[0], ox:ox + small.shape[1]] = small
    return QPixmap.fromImage(rgb_qimage(canvas))


def thumbnail_icon(item: HistoryItem) -> QIcon:
    """The same pixmap when selected: the default selected mode tints it with the highlight colour."""
    pm = thumbnail(item)
    icon = QIcon(pm)
    icon.addPixmap(pm, QIcon.Selected)
    return icon


class HistoryPanel(QWidget):
    accept_requested = Signal(int)
    discard_requested = Signal(int)
    compare_toggled = Signal(bool)

    def __init__(self, doc: Document, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.list = QListWidget()
        self.list.setViewMode(QListView.IconMode)
        self.list.setFlow(QListView.LeftToRight)
        self.list.setWrapping(False)
        self.list.setMovement(QListView.Static)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setFixedHeight(THUMB + 64)  # three label lines: model, seed, attributes
        self.list.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.list.setSpacing(4)
        self.list.setToolTip("Finished fills: click to show one on the canvas")
        self._icons: dict[int, tuple[HistoryItem, QIcon]] = {}  # id(item) -> thumbnail, built once per result
        self._state: list[tuple[int, bool]] = []  # what the list shows: (id(item), accepted) per row
        self.accept_button = QPushButton("Accept")
        self.accept_button.setToolTip("Apply the selected result to the image, as one undo step (Ctrl+Shift+A)")
        self.discard_button = QPushButton("Discard")
        self.discard_button.setToolTip("Remove the selected result (Delete)")
        self.compare_button = QPushButton("Compare")
        self.compare_button.setCheckable(True)
        self.compare_button.setToolTip("Split view: move the mouse over the canvas to wipe between before and "
                                       "result (C); hold \\ or O to see the original")
        buttons = QVBoxLayout()
        for b in (self.accept_button, self.discard_button, self.compare_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 2, 6, 2)
        lay.addWidget(self.list, 1)
        lay.addLayout(buttons)
        doc.results_changed.connect(self._rebuild)
        doc.shown_result_changed.connect(self._sync_selection)
        self.list.currentRowChanged.connect(self._on_row)
        self.accept_button.clicked.connect(self._accept)
        self.discard_button.clicked.connect(self._discard)
        self.compare_button.toggled.connect(self.compare_toggled)
        self._rebuild()

    @Slot()
    def _rebuild(self) -> None:
        state = [(id(r), r.accepted) for r in self.doc.results]
        self.list.blockSignals(True)
        if state[:-1] != self._state or not state:  # anything but "one result appended": start over
            self.list.clear()
            self._state = []
        self._icons = {id(r): self._icons.get(id(r)) or (r, thumbnail_icon(r)) for r in self.doc.results}
        for r in self.doc.results[len(self._state):]:
            self.list.addItem(self._make_item(r))
        self._state = state
        self.list.blockSignals(False)
        self._sync_selection()

    def _make_item(self, r: HistoryItem) -> QListWidgetItem:
        on = "+".join(k for k, v in sorted(r.attributes.items()) if v >= 0.5)
        label = f"{r.model}\nseed {r.seed}" + (f"\n{on}" if on else "") + ("  ✓" if r.accepted else "")
        it = QListWidgetItem(self._icons[id(r)][1], label)
        it.setToolTip(f"{r.model}, seed {r.seed}, {r.timings.get('total', 0):.1f} s\n"
                      + "\n".join(f"{k} = {v}" for k, v in sorted(r.params.items()))
                      + "".join(f"\n{k} = {v:g}" for k, v in sorted(r.attributes.items()))
                      + "".join(f"\n{k} = {v:g} (chosen by the model)" for k, v in sorted(r.chosen.items()))
                      + ("\naccepted" if r.accepted else ""))
        it.setTextAlignment(Qt.AlignHCenter)
        return it

    @Slot()
    def _sync_selection(self) -> None:
        self.list.blockSignals(True)
        self.list.setCurrentRow(-1 if self.doc.shown is None else self.doc.shown)
        self.list.blockSignals(False)
        selected = self.doc.shown is not None
        self.accept_button.setEnabled(selected and not self.doc.results[self.doc.shown].accepted)
        self.discard_button.setEnabled(selected)
        self.compare_button.setEnabled(selected)
        if not selected:
            self.compare_button.setChecked(False)
        if selected:
            self.list.scrollToItem(self.list.item(self.doc.shown))

    @Slot(int)
    def _on_row(self, row: int) -> None:
        self.doc.show_result(row if row >= 0 else None)

    @Slot()
    def _accept(self) -> None:
        if self.doc.shown is not None:
            self.accept_requested.emit(self.doc.shown)

    @Slot()
    def _discard(self) -> None:
        if self.doc.shown is not None:
            self.discard_requested.emit(self.doc.shown)
