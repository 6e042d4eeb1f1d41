"""Soft masks: a grey-level mask layer, the brush's hardness, feather as a real soft edge, results blended by the
mask's alpha (alpha 0 bit-identical), exports that keep grey levels, tablet pressure, and the keyboard back on the
canvas after a field."""
import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QInputDevice, QPointingDevice, QTabletEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from editor import layers
from engine.imageio import load_image, load_mask
from tests.editor.helpers import canvas_point, drag, screenshot, select_model, set_param

JOB_TIMEOUT_MS = 20_000


def test_soft_brush_paints_grey_levels_and_the_canvas_shows_them(window, artifacts):
    doc, canvas = window.doc, window.canvas
    assert doc.mask.dtype == np.uint8
    window.act.options.size_spin.setValue(60)
    window.act.options.hardness.setValue(20)
    assert canvas.hardness == pytest.approx(0.2)
    drag(canvas, [(120, 300), (260, 300), (400, 300)])
    column = doc.mask[260:341, 260].astype(int)
    assert column[40] == 255, "the stroke's centre is fully masked"
    assert 0 < column[40 - 25] < 255 and 0 < column[40 + 25] < 255, "its edge is partly masked"
    assert np.all(np.diff(column[40:]) <= 0), "the coverage falls off away from the centre"
    assert doc.undo_stack.count() == 1
    window.act.options.opacity.setValue(100)
    img = canvas.grab().toImage()
    centre, edge = img.pixelColor(canvas_point(canvas, 260, 300)), img.pixelColor(canvas_point(canvas, 260, 326))
    photo = doc.image[326, 260].astype(int)
    mask_red = canvas.mask_color.red()
    assert abs(centre.red() - mask_red) < 20, "full coverage: the mask colour"
    assert abs(edge.red() - mask_red) > 15 or abs(edge.red() - photo[0]) > 15, "partial: between photo and colour"
    screenshot(window, artifacts, "soft_brush")
    doc.undo_stack.undo()
    assert not doc.mask.any()


def test_hardness_keys_and_the_hard_default(window):
    opts = window.act.options
    assert opts.hardness.value() == 100, "a hard brush by default: the mask is what was painted"
    window.canvas.setFocus()
    QTest.keyClick(window.canvas, Qt.Key_BraceLeft, Qt.ShiftModifier)
    assert opts.hardness.value() == 75
    QTest.keyClick(window.canvas, Qt.Key_BraceRight, Qt.ShiftModifier)
    assert opts.hardness.value() == 100
    drag(window.canvas, [(100, 100), (200, 100)])
    assert set(np.unique(window.doc.mask)) == {0, 255}


def test_feather_makes_a_real_soft_edge(window, artifacts):
    doc = window.doc
    window.act.tools["rect"].trigger()
    drag(window.canvas, [(150, 150), (350, 330)])
    hard = doc.mask.copy()
    assert set(np.unique(hard)) == {0, 255}
    window.act.options.opacity.setValue(90)
    doc.feather_mask(16)
    soft = doc.mask
    row = soft[240, 120:200].astype(int)
    assert row[0] == 0 and row[-1] == 255, "far outside 0, well inside 255"
    assert ((row > 0) & (row < 255)).sum() >= 8, "a ramp of grey levels across the outline"
    assert np.all(np.diff(row) >= 0)
    screenshot(window, artifacts, "feathered_mask")
    doc.undo_stack.undo()
    assert np.array_equal(doc.mask, hard), "feather is one undo step"


def test_result_blended_by_alpha_and_exports_keep_grey(window, qtbot, tmp_path, artifacts):
    doc = window.doc
    select_model(window, "test-slow")
    set_param(window, "steps", 2)
    set_param(window, "step_ms", 1.0)
    ramp = np.zeros(doc.mask.shape, np.uint8)
    ramp[200:300, 100:356] = np.linspace(0, 255, 256).astype(np.uint8)[None, :]  # 0 .. 255 left to right
    doc.set_layer("mask", ramp, "test ramp")
    before = doc.image.copy()
    with qtbot.waitSignal(window.jobs.finished, timeout=JOB_TIMEOUT_MS):
        window.fill()
    item = doc.results[-1]
    zero, full, half = ramp == 0, ramp == 255, (ramp > 100) & (ramp < 155)
    assert (item.image[full] == item.image[250, 355]).all(), "alpha 255: the fill itself"
    assert np.array_equal(item.image[zero], before[zero]), "alpha 0: bit-identical"
    colour = item.image[250, 355].astype(int)
    assert not np.array_equal(colour, before[250, 355])
    a = ramp[half].astype(np.float64)[:, None] / 255
    expect = before[half] * (1 - a) + colour[None, :] * a
    assert np.abs(item.image[half] - expect).max() <= 1.0, "partial alpha: the fill blended in by alpha"
    screenshot(window, artifacts, "soft_mask_result")
    out = window.run_export("mask", tmp_path / "soft-mask.png")
    saved = load_image(out).rgb[..., 0]
    assert np.array_equal(saved, ramp), "the exported mask keeps its grey levels"
    assert np.array_equal(load_mask(out, ramp.shape), np.where(ramp < 8, 0, np.where(ramp > 247, 255, ramp))), \
        "read back as the CLI reads masks (levels near black and white snap)"
    window.history.accept_button.click()
    assert np.array_equal(doc.image[zero], before[zero]) and np.array_equal(doc.image[half], item.image[half])


def _pen() -> QPointingDevice:
    return QPointingDevice("test pen", 1, QInputDevice.DeviceType.Stylus, QPointingDevice.PointerType.Pen,
                           QInputDevice.Capability.Position | QInputDevice.Capability.Pressure, 1, 3)


def _tablet(canvas, kind, x, y, pressure, pen, buttons=Qt.LeftButton):
    pos = QPointF(canvas_point(canvas, x, y))
    ev = QTabletEvent(kind, pen, pos, QPointF(canvas.mapToGlobal(pos)), pressure, 0.0, 0.0, 0.0, 0.0, 0.0,
                      Qt.NoModifier, Qt.LeftButton if kind != QTabletEvent.TabletMove else Qt.NoButton, buttons)
    QApplication.sendEvent(canvas, ev)
    assert ev.isAccepted(), "the canvas handles the pen itself"


def test_tablet_pressure_scales_the_brush(window):
    doc, canvas = window.doc, window.canvas
    window.act.options.size_spin.setValue(40)
    pen = _pen()
    for y, pressure in ((150, 0.25), (350, 1.0)):
        _tablet(canvas, QTabletEvent.TabletPress, 100, y, pressure, pen)
        for x in (150, 200, 250, 300):
            _tablet(canvas, QTabletEvent.TabletMove, x, y, pressure, pen)
        _tablet(canvas, QTabletEvent.TabletRelease, 300, y, pressure, pen, Qt.NoButton)
    light = int((doc.mask[:, 200] > 0)[100:200].sum())
    firm = int((doc.mask[:, 200] > 0)[300:400].sum())
    assert 8 <= light <= 14 and 38 <= firm <= 44, (light, firm)
    assert doc.undo_stack.count() == 2, "each pen stroke is one undo step"
    drag(canvas, [(100, 450), (300, 450)])
    assert 38 <= int((doc.mask[:, 200] > 0)[400:500].sum()) <= 44, "the mouse paints at full size again"


def test_enter_or_esc_in_a_field_returns_the_keyboard_to_the_canvas(window, qtbot):
    spin = window.act.options.size_spin
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus, timeout=1000)
    spin.lineEdit().selectAll()
    QTest.keyClicks(spin.lineEdit(), "12")
    QTest.keyClick(spin.lineEdit(), Qt.Key_Return)
    qtbot.waitUntil(window.canvas.hasFocus, timeout=1000)
    assert window.canvas.brush_size == 12
    QTest.keyClick(window.canvas, Qt.Key_E)
    assert window.canvas.tool == "eraser", "the next tool key reaches the canvas, not the field"
    seed = window.model_panel.seed
    seed.setFocus()
    qtbot.waitUntil(seed.hasFocus, timeout=1000)
    QTest.keyClick(seed.lineEdit(), Qt.Key_Escape)
    qtbot.waitUntil(window.canvas.hasFocus, timeout=1000)


def test_layer_helpers():
    cover = layers.dab_alpha((0, 0, 41, 41), (20, 20), (20, 20), 30, hardness=0.5)
    assert cover[20, 20] == 1 and cover[20, 27] == 1 and 0 < cover[20, 32] < 1 and cover[20, 37] == 0
    target = np.full((41, 41), 200, np.uint8)
    layers.apply_dab(target, cover, erase=False)
    assert target[20, 20] == 255 and target[0, 0] == 200, "painting keeps the stronger coverage"
    layers.apply_dab(target, cover, erase=True)
    assert target[20, 20] == 0 and target[0, 0] == 200
    assert layers.pads_for_aspect(400, 300, 16 / 9) == (66, 0, 67, 0)
    assert layers.pads_for_aspect(400, 300, 1.0) == (0, 50, 0, 50)
    grown = layers.pad(np.arange(4, dtype=np.uint8).reshape(2, 2), (1, 0, 0, 1), "edge")
    assert grown.tolist() == [[0, 0, 1], [2, 2, 3], [2, 2, 3]]
    assert layers.border_mask((4, 5), (1, 1, 1, 1)).sum() == 20 - 6
