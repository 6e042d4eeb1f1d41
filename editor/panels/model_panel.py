"""Model picker (grouped: ``panels/picker.py``), the model's plain sentence and a warning when it does not fit the
image, a parameter form generated from ``ModelInfo.params``, attribute toggles, seed and prompt.

Bound to the ``Session`` both ways: every edit is written into it at once, and its changes come back (a
variation's seed, a ``Param.once`` switch turned off, a model picked elsewhere), so nothing is read out of these
widgets when Fill is pressed. Folder parameters (where a user's model lives, a folder of extra images) get a
Browse button."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, Signal, Slot
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox,
                               QHBoxLayout, QLabel, QLineEdit, QMenu, QPushButton, QSlider, QSpinBox, QToolButton,
                               QVBoxLayout, QWidget)

from editor.fit import photo_default
from editor.panels.picker import ModelPicker
from editor.session import Session
from engine import registry
from engine.api import ModelInfo, Param

SLIDER_STEPS = 1000


class ParamField(QWidget):
    """One parameter: a spin box (with a slider when the range is bounded), a check box, a combo, or a line edit
    (with a Browse button for a folder)."""

    changed = Signal()

    def __init__(self, param: Param, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.param = param
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.slider: QSlider | None = None
        k = param.kind
        if k in ("int", "float"):
            spin = QSpinBox() if k == "int" else QDoubleSpinBox()
            lo = param.min if param.min is not None else (-1e9 if k == "float" else -2**31 + 1)
            hi = param.max if param.max is not None else (1e9 if k == "float" else 2**31 - 1)
            spin.setRange(int(lo) if k == "int" else lo, int(hi) if k == "int" else hi)
            if k == "float":
                bounded = param.min is not None and param.max is not None
                step = param.step or ((hi - lo) / 100 if bounded else 0.1)
                spin.setSingleStep(step)
                spin.setDecimals(3 if step >= 0.001 else 6)
            elif param.step:
                spin.setSingleStep(int(param.step))
            spin.setValue(param.default)
            spin.valueChanged.connect(self._spin_changed)
            self.editor = spin
            if param.min is not None and param.max is not None:
                self.slider = QSlider(Qt.Horizontal)
                self.slider.setRange(0, SLIDER_STEPS)
                self.slider.setValue(self._to_slider(param.default))
                self.slider.valueChanged.connect(self._slider_changed)
                lay.addWidget(self.slider, 1)
            spin.setMinimumWidth(80)
            lay.addWidget(spin)
        elif k == "bool":
            self.editor = QCheckBox()
            self.editor.setChecked(bool(param.default))
            self.editor.toggled.connect(self.changed)
            lay.addWidget(self.editor)
        elif k == "choice":
            self.editor = QComboBox()
            self.editor.addItems(list(param.choices))
            self.editor.setCurrentText(str(param.default))
            self.editor.currentTextChanged.connect(self.changed)
            lay.addWidget(self.editor, 1)
        else:
            self.editor = QLineEdit(str(param.default))
            self.editor.textChanged.connect(self.changed)  # each keystroke: Ctrl+Enter may come before Enter
            lay.addWidget(self.editor, 1)
            if param.names_path:
                self.editor.setPlaceholderText("not set")
                browse = QToolButton()
                browse.setText("Browse…")
                browse.setToolTip(f"Choose the {param.label or param.name}")
                if k == "path":  # a single file or a folder: ask which
                    menu = QMenu(browse)
                    menu.addAction("A file…", self._browse_file)
                    menu.addAction("A folder…", self._browse)
                    browse.setMenu(menu)
                    browse.setPopupMode(QToolButton.InstantPopup)
                else:
                    browse.clicked.connect(self._browse)
                lay.addWidget(browse)
        tip = param.help + (f"  [{param.min:g} .. {param.max:g}]" if param.min is not None and param.max is not None
                            else "")
        self.setToolTip(tip)

    def _to_slider(self, v: float) -> int:
        lo, hi = self.param.min, self.param.max
        return int(round((v - lo) / (hi - lo) * SLIDER_STEPS)) if hi > lo else 0

    @Slot(int)
    def _slider_changed(self, pos: int) -> None:
        lo, hi = self.param.min, self.param.max
        v = lo + (hi - lo) * pos / SLIDER_STEPS
        if self.param.step:  # snap to the schema's grid (e.g. odd patch sizes: min 3, step 2)
            v = min(hi, round(round((v - lo) / self.param.step) * self.param.step + lo, 6))
        if self.param.kind == "int":
            v = int(round(v))
        self.editor.blockSignals(True)
        self.editor.setValue(v)
        self.editor.blockSignals(False)
        self.changed.emit()

    @Slot()
    def _browse(self) -> None:
        start = self.editor.text().strip() or str(Path.home())
        path = QFileDialog.getExistingDirectory(self, self.param.label or self.param.name, start)
        if path:
            self.editor.setText(path)  # textChanged -> changed

    @Slot()
    def _browse_file(self) -> None:
        start = self.editor.text().strip() or str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, self.param.label or self.param.name, start,
                                              "Checkpoints (*.safetensors);;All files (*)")
        if path:
            self.editor.setText(path)

    @Slot()
    def _spin_changed(self) -> None:
        if self.slider is not None:
            self.slider.blockSignals(True)
            self.slider.setValue(self._to_slider(self.editor.value()))
            self.slider.blockSignals(False)
        self.changed.emit()

    def set_value(self, value: Any) -> None:
        """Show ``value`` (a session change) without emitting ``changed``."""
        if value == self.value():
            return
        self.editor.blockSignals(True)
        k = self.param.kind
        if k in ("int", "float"):
            self.editor.setValue(value)
        elif k == "bool":
            self.editor.setChecked(bool(value))
        elif k == "choice":
            self.editor.setCurrentText(str(value))
        else:
            self.editor.setText(str(value))
        self.editor.blockSignals(False)
        if self.slider is not None:
            self.slider.blockSignals(True)
            self.slider.setValue(self._to_slider(value))
            self.slider.blockSignals(False)

    def value(self) -> Any:
        k = self.param.kind
        if k in ("int", "float"):
            return self.editor.value()
        if k == "bool":
            return self.editor.isChecked()
        if k == "choice":
            return self.editor.currentText()
        return self.editor.text()


class ModelPanel(QWidget):
    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        self.picker = ModelPicker()
        self.sentence = QLabel()
        self.sentence.setWordWrap(True)
        self.sentence.setObjectName("modelSentence")
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setObjectName("modelWarning")
        self.warning.setStyleSheet("QLabel { background: #5a4a12; color: #ffe9a8; border: 1px solid #c9a227; "
                                   "border-radius: 4px; padding: 6px; }")
        self.use_default = QPushButton()
        self.use_default.setToolTip("Switch to the model that measures best on photos here")
        warn_box = QVBoxLayout()
        warn_box.setContentsMargins(0, 0, 0, 0)
        warn_box.addWidget(self.warning)
        warn_box.addWidget(self.use_default, 0, Qt.AlignRight)
        self.warning_box = QWidget()
        self.warning_box.setLayout(warn_box)
        self.warning_box.setVisible(False)
        self.info_label = QLabel()
        self.info_label.setWordWrap(True)
        self.info_label.setTextFormat(Qt.RichText)
        self.info_label.setObjectName("modelInfo")
        self.params_box = QGroupBox("Parameters")
        box_lay = QVBoxLayout(self.params_box)
        self.params_form = QFormLayout()  # the parameters every user may want
        # the tuning most users leave alone (Param.advanced), folded; the fold is remembered
        self.more = QToolButton()
        self.more.setCheckable(True)
        self.more.setAutoRaise(True)
        self.more.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.more.setToolTip("Show or hide the tuning most fills do not need")
        self.more_box = QWidget()
        self.more_form = QFormLayout(self.more_box)
        self.more_form.setContentsMargins(0, 0, 0, 0)
        box_lay.addLayout(self.params_form)
        box_lay.addWidget(self.more, 0, Qt.AlignLeft)
        box_lay.addWidget(self.more_box)
        self.more.setChecked(QSettings().value("ui/more_settings", False, type=bool))
        self.more.toggled.connect(self._on_more)
        self.attrs_box = QGroupBox("Attributes")
        self.attrs_layout = QVBoxLayout(self.attrs_box)
        self.prompt = QLineEdit(session.prompt)
        self.prompt.setPlaceholderText("Describe what should appear in the hole")
        self.prompt_box = QGroupBox("Prompt")
        QVBoxLayout(self.prompt_box).addWidget(self.prompt)
        seed_row = QHBoxLayout()
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(session.seed)
        self.seed.setToolTip("Same seed + same mask + same parameters = same result")
        self.variation = QPushButton("New variation")
        self.variation.setToolTip("Pick a random seed and fill again (Ctrl+Shift+Enter)")
        seed_row.addWidget(QLabel("Seed"))
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.variation)
        lay.addWidget(self.picker)
        lay.addWidget(self.sentence)
        lay.addWidget(self.warning_box)
        lay.addWidget(self.info_label)
        lay.addWidget(self.params_box)
        lay.addWidget(self.attrs_box)
        lay.addWidget(self.prompt_box)
        lay.addLayout(seed_row)
        lay.addStretch(1)
        self.fields: dict[str, ParamField] = {}
        self.toggles: dict[str, QCheckBox] = {}
        self.load_error: str | None = None
        # edits -> session
        self.picker.picked.connect(self._on_pick)
        self.use_default.clicked.connect(self._use_default)
        self.seed.valueChanged.connect(session.set_seed)
        self.prompt.textChanged.connect(session.set_prompt)
        self.variation.clicked.connect(session.variation)
        # session -> widgets
        session.model_changed.connect(self._show_model)
        session.param_changed.connect(self._show_param)
        session.attribute_changed.connect(self._show_attribute)
        session.seed_changed.connect(self._show_seed)
        session.prompt_changed.connect(self._show_prompt)
        session.warning_changed.connect(self._show_warning)
        self.refresh_models()

    def refresh_models(self) -> None:
        """Re-read the registry (models registered at run time, e.g. by tests), keeping the session's model."""
        try:
            models = registry.all_models()
        except Exception as exc:  # a broken model package must not stop the editor: report it, offer none
            self.load_error = f"The model list could not be read: {type(exc).__name__}: {exc}".splitlines()[0]
            models = []
        self.picker.set_models(models)
        names = [info.name for info in models]
        current = self.session.model
        if current in names:
            self._show_model(current)  # the list was rebuilt: show the model again
        elif names:
            self.session.set_model(registry.DEFAULT_MODEL if registry.DEFAULT_MODEL in names else names[0])

    def select(self, name: str) -> None:
        if name in self.picker.names():
            self.session.set_model(name)

    def current_model(self) -> str | None:
        return self.picker.current_model()

    @Slot(str)
    def _on_pick(self, name: str) -> None:
        self.session.set_model(name)

    @Slot()
    def _use_default(self) -> None:
        best = photo_default(registry.all_models(), registry.DEFAULT_MODEL)
        if best is not None:
            self.select(best.name)

    @Slot(str)
    def _show_warning(self, text: str) -> None:
        best = photo_default(registry.all_models(), registry.DEFAULT_MODEL)
        self.warning.setText("⚠ " + text if text else "")
        self.use_default.setText(f"Use {best.title}" if best is not None else "")
        self.use_default.setVisible(best is not None and best.name != self.session.model)
        self.warning_box.setVisible(bool(text))

    @Slot(str)
    def _show_model(self, name: str) -> None:
        self.picker.show_model(name)
        info = self.session.info
        self.sentence.setText(info.on_photo)
        self.sentence.setToolTip(f"Listed under “{self.picker.group_of(name)}”")
        yours = [p.label or p.name for p in info.params if p.names_path and p.remember]
        if info.weights is None:  # nothing ships: an algorithm, a model learned on the image, or the user's model
            weights = (f"<span style='color:#aaa'>weights: yours ({yours[0]}, below)</span>" if yours
                       else "<span style='color:#aaa'>no weights to load</span>")
        elif info.weights_present:
            weights = "<span style='color:#6c6'>weights present</span>"
        else:
            weights = f"<span style='color:#e66'>weights missing: {info.weights}</span>"
        res = f"{info.resolution} px" if info.resolution else "native resolution"
        tags = [t for t, on in (("instant", info.instant), ("uses sketch", info.uses_sketch),
                                ("learns on the image", info.learns_on_image), ("greyscale", info.grey),
                                ("fills a new border", info.outpaint)) if on]
        self.info_label.setText(
            f"<span style='color:#aaa'>{info.description}</span><br><b>Made for:</b> {info.domain}"
            f"<br><b>Works at:</b> {res}"
            + (f"<br><b>Notes:</b> {', '.join(tags)}" if tags else "") + f"<br>{weights}")
        self._build_params(info)
        self._build_attributes(info)
        self.prompt_box.setVisible(info.uses_prompt)

    def _build_params(self, info: ModelInfo) -> None:
        for form in (self.params_form, self.more_form):
            while form.rowCount():
                form.removeRow(0)
        self.fields = {}
        values = self.session.params
        for p in info.params:
            f = ParamField(p)
            f.set_value(values[p.name])
            f.changed.connect(self._on_field)
            label = QLabel(p.label or p.name)
            label.setToolTip(p.help)
            (self.more_form if p.advanced else self.params_form).addRow(label, f)
            self.fields[p.name] = f
        for p in info.params:
            if p.disables:
                self._set_enabled(p.disables, not values[p.name])
        self.params_box.setVisible(bool(info.params))
        self._show_more()

    def _on_more(self, on: bool) -> None:
        QSettings().setValue("ui/more_settings", on)
        self._show_more()

    def _show_more(self) -> None:
        """The fold's button says how many folded settings differ from their defaults, so none hides unnoticed."""
        folded = [f for f in self.fields.values() if f.param.advanced]
        values = self.session.params
        changed = sum(1 for f in folded if values.get(f.param.name, f.param.default) != f.param.default)
        self.more.setVisible(bool(folded))
        self.more_box.setVisible(bool(folded) and self.more.isChecked())
        self.more.setArrowType(Qt.DownArrow if self.more.isChecked() else Qt.RightArrow)
        self.more.setText(f"More settings ({len(folded)})" + (f", {changed} changed" if changed else ""))

    @Slot()
    def _on_field(self) -> None:
        f = self.sender()
        self.session.set_param(f.param.name, f.value())  # the session's param_changed updates the fold's count

    @Slot(str, object)
    def _show_param(self, name: str, value: Any) -> None:
        f = self.fields.get(name)
        if f is None:
            return
        f.set_value(value)
        if f.param.disables:
            self._set_enabled(f.param.disables, not value)
        if f.param.advanced:
            self._show_more()

    def _set_enabled(self, names: tuple[str, ...], enabled: bool) -> None:
        for name in names:
            if name in self.fields:
                self.fields[name].setEnabled(enabled)
                self._label_of(name).setEnabled(enabled)

    def _label_of(self, name: str) -> QWidget:
        f = self.fields[name]
        return (self.more_form if f.param.advanced else self.params_form).labelForField(f)

    def _build_attributes(self, info: ModelInfo) -> None:
        for cb in self.toggles.values():
            cb.deleteLater()
        self.toggles = {}
        values = self.session.attributes
        for a in info.attributes:
            cb = QCheckBox(a.label or a.name)
            cb.setChecked(values[a.name] >= 0.5)
            cb.setToolTip(a.help + (" (refills at once)" if info.instant else ""))
            cb.setObjectName(f"attr_{a.name}")
            cb.toggled.connect(self._on_toggle)
            self.attrs_layout.addWidget(cb)
            self.toggles[a.name] = cb
        self.attrs_box.setVisible(bool(info.attributes))

    @Slot(bool)
    def _on_toggle(self, on: bool) -> None:
        self.session.set_attribute(self.sender().objectName().removeprefix("attr_"), 1.0 if on else 0.0)

    @Slot(str, float)
    def _show_attribute(self, name: str, value: float) -> None:
        if name in self.toggles:
            cb = self.toggles[name]
            cb.blockSignals(True)
            cb.setChecked(value >= 0.5)
            cb.blockSignals(False)

    @Slot(int)
    def _show_seed(self, seed: int) -> None:
        self.seed.blockSignals(True)
        self.seed.setValue(seed)
        self.seed.blockSignals(False)

    @Slot(str)
    def _show_prompt(self, prompt: str) -> None:
        if self.prompt.text() != prompt:
            self.prompt.blockSignals(True)
            self.prompt.setText(prompt)
            self.prompt.blockSignals(False)
