"""Outpainting: Image > Expand canvas (per side or to an aspect ratio) as one undo step, the new border as the
mask, history results that follow the size, and a Fill that says why a model cannot fill a border and offers one
that can."""
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from editor.dialogs import ExpandDialog
from engine import registry
from engine.imageio import load_image, save_image
from tests.editor.conftest import SAMPLE
from tests.editor.helpers import paint_mask, screenshot, select_model, set_param

JOB_TIMEOUT_MS = 60_000


@pytest.fixture
def small(window, tmp_path):
    """A 200 x 160 piece of the sample (the rocket and the sky), so the patch model fills its border in seconds."""
    path = tmp_path / "rocket.png"
    save_image(path, load_image(SAMPLE).rgb[20:180, 300:500].copy())
    assert window.open_path(path)
    return window


def _expand(window, monkeypatch, left=0, top=0, right=0, bottom=0, aspect=None, fill="edge"):
    """Image > Expand canvas through its dialog (its modal exec answered with these values)."""
    def answer(dialog):
        if aspect is None:
            for name, v in zip(("Left", "Top", "Right", "Bottom"), (left, top, right, bottom)):
                dialog.sides[name].setValue(v)
        else:
            dialog.by_aspect.setChecked(True)
            dialog.aspect.setCurrentText(aspect)
        dialog.fill.setCurrentIndex(dialog.fill.findData(fill))
        return True

    monkeypatch.setattr(ExpandDialog, "exec", answer)
    QTest.keyClick(window.canvas, Qt.Key_C, Qt.ControlModifier | Qt.AltModifier)


def test_expand_canvas_per_side_is_one_undo_step(small, monkeypatch, artifacts):
    doc = small.doc
    before, (w, h) = doc.image.copy(), doc.size
    _expand(small, monkeypatch, left=16, top=8, right=40, bottom=0)
    assert doc.size == (w + 56, h + 8)
    assert np.array_equal(doc.image[8:, 16:16 + w], before), "the photo itself is untouched"
    assert np.array_equal(doc.image[8:, -1], before[:, -1]), "new pixels repeat the edge"
    assert (doc.mask[:, :16] == 255).all() and (doc.mask[:8] == 255).all() and (doc.mask[:, -40:] == 255).all()
    assert not doc.mask[8:, 16:16 + w].any(), "only the border is masked"
    assert doc.border == (16, 8, 40, 0) and doc.undo_stack.count() == 1
    assert doc.undo_stack.undoText().startswith("Expand canvas")
    assert small.size_label.text() == f"{w + 56} x {h + 8}"
    small.canvas.fit()
    screenshot(small, artifacts, "expand_canvas")
    doc.undo_stack.undo()
    assert doc.size == (w, h) and np.array_equal(doc.image, before) and not doc.mask.any() and doc.border is None
    doc.undo_stack.redo()
    assert doc.size == (w + 56, h + 8)


def test_expand_to_an_aspect_ratio_with_grey(small, monkeypatch):
    doc = small.doc
    _expand(small, monkeypatch, aspect="16:9", fill="grey")
    w, h = doc.size
    assert (w, h) == (284, 160) and (doc.image[:, 0] == 128).all() and (doc.image[:, -1] == 128).all()
    dialog = ExpandDialog((400, 300))
    dialog.by_aspect.setChecked(True)
    dialog.aspect.setCurrentText("1:1")
    assert dialog.pads() == (0, 50, 0, 50) and "400 x 400" in dialog.result.text()


def test_results_follow_the_expansion_and_its_undo(small, qtbot, monkeypatch):
    doc = small.doc
    select_model(small, "test-slow")
    set_param(small, "steps", 2)
    set_param(small, "step_ms", 1.0)
    paint_mask(small, (60, 60, 120, 100), size=20)
    with qtbot.waitSignal(small.jobs.finished, timeout=JOB_TIMEOUT_MS):
        small.fill()
    item = doc.results[0]
    old_box, old_filled = item.box, item.image[80, 90].copy()
    _expand(small, monkeypatch, left=30, top=10)
    assert item.image.shape[:2] == doc.image.shape[:2] and item.mask.shape == doc.mask.shape
    assert item.box == (old_box[0] + 30, old_box[1] + 10, old_box[2] + 30, old_box[3] + 10)
    assert np.array_equal(item.image[90, 120], old_filled), "the fill moved with the image"
    doc.undo_stack.undo()
    assert item.box == old_box and np.array_equal(item.image[80, 90], old_filled)
    doc.undo_stack.redo()
    small.history.list.setCurrentRow(0)
    small.history.accept_button.click()
    assert np.array_equal(doc.image[90, 120], old_filled), "an older result can still be accepted"


def test_fill_says_why_a_model_cannot_fill_the_border_and_offers_one_that_can(small, qtbot, monkeypatch, dialogs,
                                                                             artifacts):
    doc = small.doc
    select_model(small, "telea")
    assert not small.session.info.outpaint
    _expand(small, monkeypatch, right=24)
    before = doc.image.copy()
    dialogs.choice = "Cancel"
    assert small.fill() is None and not small.jobs.busy
    kind, title, text = dialogs.shown[-1]
    assert kind == "ask" and "cannot fill the new border" in text and "one side only" in text
    can = registry.get_info("patch")
    assert dialogs.choices[-1] == [f"Use {can.title}", "Fill anyway", "Cancel"]
    dialogs.choice = None  # the default button: use the model that can
    with qtbot.waitSignal(small.jobs.finished, timeout=JOB_TIMEOUT_MS):
        assert small.fill() is not None
    assert small.session.model == "patch"
    item = doc.results[-1]
    inside = doc.mask == 0
    assert np.array_equal(item.image[inside], before[inside]), "the photo stays bit-identical"
    border = item.image[:, -24:].astype(int)
    assert border.std() > 3, "the border got texture, not one smeared colour"
    screenshot(small, artifacts, "outpaint_result")
    small.history.accept_button.click()
    assert doc.border is None, "the filled border is no longer pending"
    doc.undo_stack.undo()
    assert doc.border == (0, 0, 24, 0), "undoing the accept brings the pending border back"
    doc.undo_stack.redo()
    select_model(small, "telea")
    asked = len(dialogs.shown)
    paint_mask(small, (20, 20, 40, 40), size=10)
    with qtbot.waitSignal(small.jobs.finished, timeout=JOB_TIMEOUT_MS):
        small.fill()
    assert len(dialogs.shown) == asked, "an ordinary hole asks nothing"


def test_fill_anyway_keeps_the_model(small, qtbot, monkeypatch, dialogs):
    select_model(small, "telea")
    _expand(small, monkeypatch, bottom=16)
    dialogs.choice = "Fill anyway"
    with qtbot.waitSignal(small.jobs.finished, timeout=JOB_TIMEOUT_MS):
        small.fill()
    assert small.doc.results[-1].model == "telea"
