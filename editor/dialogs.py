"""Small dialogs: a question with the answers spelled out on its buttons, and Image > Expand canvas."""
from __future__ import annotations

from PySide6.QtWidgets import (QButtonGroup, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QLabel,
                               QMessageBox, QRadioButton, QSpinBox, QVBoxLayout, QWidget)

from editor import layers


def ask(parent: QWidget, title: str, text: str, choices: list[str], default: str) -> str | None:
    """A warning box whose buttons are ``choices`` ("Cancel" rejects); returns the chosen text, or None when
    the box was closed."""
    box = QMessageBox(QMessageBox.Warning, title, text, QMessageBox.NoButton, parent)
    buttons = {}
    for c in choices:
        b = box.addButton(c, QMessageBox.RejectRole if c == "Cancel" else QMessageBox.AcceptRole)
        buttons[b] = c
        if c == default:
            box.setDefaultButton(b)
    box.exec()
    return buttons.get(box.clickedButton())


class ExpandDialog(QDialog):
    """Per side in pixels, or to an aspect ratio (centred); how the new pixels start out before the fill."""

    def __init__(self, size: tuple[int, int], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Expand canvas")
        self.w, self.h = size
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Add a border to the image; it becomes the mask, and Fill paints it "
                             "(with a model that can fill a border)."))
        self.by_side = QRadioButton("Per side (pixels)")
        self.by_aspect = QRadioButton("To an aspect ratio (centred)")
        self.by_side.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.by_side)
        group.addButton(self.by_aspect)
        sides = QHBoxLayout()
        self.sides: dict[str, QSpinBox] = {}
        for name in ("Left", "Top", "Right", "Bottom"):
            spin = QSpinBox()
            spin.setRange(0, 4096)
            spin.setValue(max(8, round(0.125 * (self.w if name in ("Left", "Right") else self.h))))
            spin.setSuffix(" px")
            spin.setToolTip(f"Pixels added on the {name.lower()}")
            sides.addWidget(QLabel(name))
            sides.addWidget(spin)
            self.sides[name] = spin
        self.aspect = QComboBox()
        self.aspect.addItems(list(layers.ASPECTS))
        self.aspect.setCurrentText("16:9" if self.w >= self.h else "9:16")
        self.fill = QComboBox()
        for key, label in layers.BORDER_FILLS.items():
            self.fill.addItem(label, key)
        self.fill.setToolTip("What the new pixels hold before the fill (the mask covers them either way)")
        self.result = QLabel()
        form = QFormLayout()
        form.addRow(self.by_side, sides)
        form.addRow(self.by_aspect, self.aspect)
        form.addRow("New pixels", self.fill)
        lay.addLayout(form)
        lay.addWidget(self.result)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        for spin in self.sides.values():
            spin.valueChanged.connect(self._update)
        self.aspect.currentTextChanged.connect(self._update)
        self.by_side.toggled.connect(self._update)
        self._update()

    def pads(self) -> layers.Pads:
        if self.by_aspect.isChecked():
            return layers.pads_for_aspect(self.w, self.h, layers.ASPECTS[self.aspect.currentText()])
        s = self.sides
        return s["Left"].value(), s["Top"].value(), s["Right"].value(), s["Bottom"].value()

    def fill_mode(self) -> str:
        return self.fill.currentData()

    def _update(self) -> None:
        left, top, right, bottom = self.pads()
        self.result.setText(f"{self.w} x {self.h}  \u2192  {self.w + left + right} x {self.h + top + bottom} px")
