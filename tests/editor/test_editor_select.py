"""Selection tools driven with real mouse events: lasso (freehand), polygon lasso, Select object (GrabCut on its
own thread, box + include / exclude clicks); and the Qt-free ``engine.select`` behind them."""
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from engine import select
from tests.editor.helpers import canvas_point, drag, screenshot

SEGMENT_TIMEOUT_MS = 10_000


def test_lasso_freehand_adds_and_right_button_removes(window, artifacts):
    doc, canvas = window.doc, window.canvas
    QTest.keyClick(canvas, Qt.Key_L)
    assert canvas.tool == "lasso"
    ring = [(256 + 120 * np.cos(t), 256 + 90 * np.sin(t)) for t in np.linspace(0, 2 * np.pi, 40)]
    drag(canvas, ring)
    assert doc.mask[256, 256] == 255 and doc.mask[256, 370] == 255 and doc.mask[256, 385] == 0
    assert doc.mask[256, 140] == 255 and doc.mask[160, 256] == 0, "the inside of the outline, nothing more"
    assert doc.undo_stack.count() == 1 and doc.undo_stack.undoText() == "Lasso mask"
    drag(canvas, [(256 + 30 * np.cos(t), 256 + 30 * np.sin(t)) for t in np.linspace(0, 2 * np.pi, 20)],
         button=Qt.RightButton)
    assert doc.mask[256, 256] == 0 and doc.mask[256, 330] == 255, "the right button cut a hole"
    QTest.mouseMove(canvas, canvas_point(canvas, 300, 420))
    QTest.mousePress(canvas, Qt.LeftButton, Qt.NoModifier, canvas_point(canvas, 300, 420))
    for x, y in ((380, 430), (400, 480), (320, 490)):
        QTest.mouseMove(canvas, canvas_point(canvas, x, y))
    screenshot(window, artifacts, "lasso_drawing")
    QTest.mouseRelease(canvas, Qt.LeftButton, Qt.NoModifier, canvas_point(canvas, 320, 490))
    assert doc.undo_stack.count() == 3
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert doc.mask[256, 256] == 255


def test_polygon_lasso_clicks_and_closing(window, artifacts):
    doc, canvas = window.doc, window.canvas
    QTest.keyClick(canvas, Qt.Key_L, Qt.ShiftModifier)
    assert canvas.tool == "polygon"
    for x, y in ((100, 100), (300, 110), (320, 300)):
        QTest.mouseClick(canvas, Qt.LeftButton, Qt.NoModifier, canvas_point(canvas, x, y))
    QTest.mouseMove(canvas, canvas_point(canvas, 120, 320))
    assert not doc.mask.any() and len(canvas.lasso.points) == 3, "nothing is masked until it closes"
    screenshot(window, artifacts, "polygon_lasso")
    QTest.mouseDClick(canvas, Qt.LeftButton, Qt.NoModifier, canvas_point(canvas, 120, 320))
    assert doc.mask[200, 200] == 255 and not doc.mask[400, 400], "a double-click closes it"
    assert not canvas.lasso.active and doc.undo_stack.count() == 1
    # a click on the first corner closes; Backspace takes a corner back; Esc drops the polygon
    for x, y in ((350, 350), (450, 350), (450, 450), (420, 470)):
        QTest.mouseClick(canvas, Qt.LeftButton, Qt.NoModifier, canvas_point(canvas, x, y))
    QTest.keyClick(canvas, Qt.Key_Backspace)
    assert len(canvas.lasso.points) == 3
    QTest.mouseClick(canvas, Qt.LeftButton, Qt.NoModifier, canvas_point(canvas, 351, 351))
    assert doc.mask[400, 430] == 255 and doc.undo_stack.count() == 2
    for x, y in ((20, 400), (80, 400), (80, 480)):
        QTest.mouseClick(canvas, Qt.LeftButton, Qt.NoModifier, canvas_point(canvas, x, y))
    QTest.keyClick(canvas, Qt.Key_Escape)
    assert not canvas.lasso.active and not doc.mask[440, 60] and doc.undo_stack.count() == 2
    for x, y in ((20, 400), (80, 400), (80, 480)):
        QTest.mouseClick(canvas, Qt.LeftButton, Qt.NoModifier, canvas_point(canvas, x, y))
    QTest.keyClick(canvas, Qt.Key_Return)
    assert doc.mask[440, 70] == 255, "Enter closes it"


def _wait_segmented(window, qtbot):
    qtbot.waitUntil(lambda: not window.canvas.objects.busy, timeout=SEGMENT_TIMEOUT_MS)


def test_select_object_box_then_include_and_exclude_clicks(window, qtbot, artifacts):
    doc, canvas = window.doc, window.canvas
    QTest.keyClick(canvas, Qt.Key_S)
    assert canvas.tool == "object"
    box = (140, 20, 320, 230)  # the astronaut's head and helmet
    drag(canvas, [(box[0], box[1]), (230, 120), (box[2], box[3])])
    assert canvas.objects.active
    _wait_segmented(window, qtbot)
    sel = doc.mask > 0
    ys, xs = np.nonzero(sel)
    assert sel[120, 230], "the face is selected"
    assert xs.min() >= box[0] - 1 and xs.max() <= box[2] and ys.min() >= box[1] - 1 and ys.max() <= box[3]
    assert 0.2 < sel[20:230, 140:320].mean() < 0.95, "an object, not the whole box"
    assert doc.undo_stack.count() == 1 and doc.undo_stack.undoText() == "Select object"
    first = sel.sum()
    QTest.mouseClick(canvas, Qt.RightButton, Qt.NoModifier, canvas_point(canvas, 290, 205))  # exclude the suit
    _wait_segmented(window, qtbot)
    QTest.mouseClick(canvas, Qt.LeftButton, Qt.NoModifier, canvas_point(canvas, 200, 60))  # include the hair
    _wait_segmented(window, qtbot)
    assert doc.mask[60, 200] == 255 and doc.mask[205, 290] == 0
    assert (doc.mask > 0).sum() != first
    assert doc.undo_stack.count() == 1, "refinements replace the object's one undo step"
    assert canvas.objects.include and canvas.objects.exclude
    window.act.options.opacity.setValue(60)
    screenshot(window, artifacts, "select_object")
    QTest.keyClick(canvas, Qt.Key_Escape)
    assert not canvas.objects.active and doc.mask[60, 200] == 255, "Esc ends the session; the selection stays"
    doc.undo_stack.undo()
    assert not doc.mask.any()


def test_select_object_with_the_right_button_removes_an_object(window, qtbot):
    doc, canvas = window.doc, window.canvas
    doc.set_layer("mask", np.full(doc.mask.shape, 255, np.uint8), "all")
    window.act.tools["object"].trigger()
    drag(canvas, [(140, 20), (320, 230)], button=Qt.RightButton)
    _wait_segmented(window, qtbot)
    assert doc.mask[120, 230] == 0 and doc.mask[400, 30] == 255
    assert doc.undo_stack.undoText() == "Deselect object"


def test_the_tool_says_which_segmenter_runs(window):
    window.act.tools["object"].trigger()
    assert "GrabCut" in window.statusBar().currentMessage() and "weights" in window.statusBar().currentMessage()
    assert window.canvas.objects.segmenter.title.startswith("GrabCut")


# ----- engine.select (no Qt) -------------------------------------------------------------------------------
@pytest.fixture
def disc_scene():
    rng = np.random.default_rng(0)
    img = np.zeros((160, 200, 3), np.uint8)
    img[...] = (40, 140, 60)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:160, :200]
    disc = (xx - 100) ** 2 + (yy - 80) ** 2 < 40 ** 2
    img[disc] = np.clip(np.array([200, 40, 50]) + rng.normal(0, 12, (disc.sum(), 3)), 0, 255).astype(np.uint8)
    return img, disc


def test_grabcut_finds_the_object_in_its_box(disc_scene):
    img, disc = disc_scene
    sel = select.GrabCut().segment(img, (50, 30, 150, 130))
    iou = (sel & disc).sum() / (sel | disc).sum()
    assert iou > 0.9
    again = select.GrabCut().segment(img, (50, 30, 150, 130))
    assert np.array_equal(sel, again), "the same box and clicks give the same mask"
    cut = select.GrabCut().segment(img, (50, 30, 150, 130), include=[(100, 80)], exclude=[(100, 50)])
    assert cut[80, 100] and not cut[50, 100]
    assert not select.GrabCut().segment(img, (10, 10, 12, 12)).any(), "a box too small selects nothing"


def test_polygon_mask_and_segmenters_hook(monkeypatch, tmp_path):
    m = select.polygon_mask((50, 50), [(10, 10), (40, 10), (40, 40), (10, 40)])
    assert m[25, 25] and not m[5, 5] and m.sum() == pytest.approx(31 * 31, abs=70)
    assert not select.polygon_mask((10, 10), [(1, 1), (5, 5)]).any()
    assert [type(s) for s in select.segmenters(None)] == [select.GrabCut]

    class Learned(select.Segmenter):
        name, title, learned = "tiny", "Tiny learned segmenter", True

        def segment(self, image, box, include=(), exclude=()):
            return np.ones(image.shape[:2], bool)

    import engine.patch

    monkeypatch.setattr(engine.patch, "discover_segmenters", lambda folder: [Learned()], raising=False)
    found = select.segmenters(tmp_path)
    assert isinstance(found[0], Learned) and isinstance(found[-1], select.GrabCut), "a learned one first"
    assert "no learned segmenter" in select.NO_WEIGHTS
