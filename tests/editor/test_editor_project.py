"""No lost work: the project file saved and reopened intact, autosave and the offer to restore after a crash, a
confirmation before unsaved work is dropped (opening, pasting, closing), and the clipboard."""
import os
import stat
import zipfile

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QFileDialog, QMessageBox

from editor.qimages import qimage_rgb, rgb_qimage
from engine import project
from tests.editor.conftest import SAMPLE
from tests.editor.helpers import drag, paint_mask, screenshot, select_model, set_param

JOB_TIMEOUT_MS = 20_000


def _fill(window, qtbot, seed):
    window.model_panel.seed.setValue(seed)
    with qtbot.waitSignal(window.jobs.finished, timeout=JOB_TIMEOUT_MS):
        window.fill()


@pytest.fixture
def worked(window, qtbot):
    """An afternoon's work: a soft mask, a sketch, one accepted and two unaccepted results."""
    select_model(window, "test-slow")
    set_param(window, "steps", 2)
    set_param(window, "step_ms", 1.0)
    window.model_panel.fields["note"].editor.setText("kept")
    paint_mask(window, (200, 180, 320, 260))
    _fill(window, qtbot, 3)
    window.history.accept_button.click()
    window.act.options.hardness.setValue(30)
    paint_mask(window, (60, 320, 160, 380), size=30)
    window.act.tools["sketch"].trigger()
    drag(window.canvas, [(70, 350), (150, 350)])
    _fill(window, qtbot, 11)
    _fill(window, qtbot, 12)
    window.doc.show_result(1)
    assert 0 < window.doc.mask.max() and ((window.doc.mask > 0) & (window.doc.mask < 255)).any()
    return window


def _state(doc):
    return {"image": doc.image.copy(), "original": doc.original.copy(), "mask": doc.mask.copy(),
            "sketch": doc.sketch.copy(), "shown": doc.shown,
            "results": [(r.model, r.seed, dict(r.params), dict(r.attributes), r.accepted, r.box, r.image.copy(),
                         r.mask.copy(), r.base_patch.copy()) for r in doc.results]}


def _same(a, b):
    assert a.keys() == b.keys()
    for k in ("image", "original", "mask", "sketch"):
        assert np.array_equal(a[k], b[k]), k
    assert a["shown"] == b["shown"] and len(a["results"]) == len(b["results"]) == 3
    for x, y in zip(a["results"], b["results"]):
        assert x[:6] == y[:6], "model, seed, parameters, attributes, accepted, box"
        assert all(np.array_equal(p, q) for p, q in zip(x[6:], y[6:])), "result image, mask, base"


def test_project_saved_and_reopened_intact(worked, tmp_path, monkeypatch, dialogs, artifacts):
    doc = worked.doc
    before = _state(doc)
    path = tmp_path / "afternoon.inpaint"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "afternoon"), ""))
    QTest.keyClick(worked.canvas, Qt.Key_S, Qt.ControlModifier)
    assert path.exists() and worked.files.project_path == path
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, "the user's umask, not 0600"
    assert worked.files.unsaved() is None and worked.windowTitle().startswith("afternoon.inpaint -")
    assert set(zipfile.ZipFile(path).namelist()) >= {"project.json", "image.png", "mask.png", "results/2/image.png"}
    assert worked.open_path(SAMPLE.parent / "coffee.png"), "all saved: no question"
    assert not any(t == "Keep your work?" for _, t, _ in dialogs.shown)
    assert worked.open_path(path)
    _same(before, _state(doc))
    assert doc.results[1].params["note"] == "kept" and worked.history.list.count() == 3
    assert worked.files.unsaved() is None
    screenshot(worked, artifacts, "project_reopened")
    doc.undo_stack.undo()  # the reopened project's undo starts empty: nothing happens
    _same(before, _state(doc))


def test_damaged_or_foreign_files_are_one_line_dialogs(window, tmp_path, dialogs):
    bad = tmp_path / "bad.inpaint"
    bad.write_bytes(b"not a zip")
    assert not window.open_path(bad)
    foreign = tmp_path / "foreign.inpaint"
    with zipfile.ZipFile(foreign, "w") as z:
        z.writestr("project.json", '{"format": "something-else"}')
    assert not window.open_path(foreign)
    errors = dialogs.errors()
    assert len(errors) == 2 and all("not an Inpaint Studio project" in e for e in errors)
    with pytest.raises(project.ProjectError, match="no such file"):
        project.load(tmp_path / "missing.inpaint")


def test_unsaved_work_asks_before_opening_pasting_and_closing(worked, tmp_path, monkeypatch, dialogs, qtbot):
    doc = worked.doc
    assert "2 results not accepted" in worked.files.unsaved()
    assert worked.windowTitle().startswith("astronaut.png * -")
    dialogs.answer = QMessageBox.Cancel
    assert not worked.open_path(SAMPLE.parent / "coffee.png") and len(doc.results) == 3
    kind, title, text = dialogs.shown[-1]
    assert title == "Keep your work?" and "2 results not accepted" in text and "open another image" in text
    QGuiApplication.clipboard().setImage(rgb_qimage(np.zeros((20, 30, 3), np.uint8)))
    QTest.keyClick(worked.canvas, Qt.Key_V, Qt.ControlModifier)
    assert len(doc.results) == 3 and "paste" in dialogs.shown[-1][2]
    worked.close()
    assert worked.isVisible() and "quit" in dialogs.shown[-1][2], "Cancel keeps the window open"
    # Save: the project is written first, then the other image opens
    dialogs.answer = QMessageBox.Save
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "kept.inpaint"), ""))
    assert worked.open_path(SAMPLE.parent / "coffee.png")
    assert (tmp_path / "kept.inpaint").exists() and len(project.load(tmp_path / "kept.inpaint").results) == 3


def test_an_exported_image_with_nothing_pending_asks_nothing(window, qtbot, tmp_path, dialogs):
    select_model(window, "test-slow")
    set_param(window, "steps", 1)
    paint_mask(window, (200, 180, 320, 260))
    _fill(window, qtbot, 1)
    window.history.accept_button.click()
    assert window.files.unsaved() == "edits not saved or exported"
    window.run_export("image", tmp_path / "done.png")
    assert window.files.unsaved() is None
    assert window.open_path(SAMPLE.parent / "coffee.png") and not dialogs.shown


def test_autosave_then_restore_after_a_crash(worked, qtbot, dialogs):
    from editor.main_window import MainWindow

    before = _state(worked.doc)
    assert worked.autosave.save_now(wait=True) and worked.autosave.path.exists()
    assert not worked.autosave.save_now(wait=True), "nothing changed since"
    worked.autosave._lock.unlock()  # the editor "crashed": its lock is gone, its autosave stays behind
    worked.autosave._lock = None
    crashed = worked.autosave.path
    dialogs.answer = QMessageBox.Yes
    second = MainWindow()
    qtbot.addWidget(second)
    second.show()
    assert second.autosave.offer_restore()
    assert dialogs.shown[-1][1] == "Restore unsaved work?"
    _same(before, _state(second.doc))
    assert second.files.unsaved() is not None, "restored work is not saved anywhere yet"
    assert not crashed.exists()
    qtbot.waitUntil(second.autosave.path.exists, timeout=5000)  # the new session owns it now (written on a thread)
    assert not second.autosave.offer_restore(), "offered once"
    dialogs.answer = QMessageBox.Discard
    second.close()
    assert not second.autosave.path.exists(), "a clean close leaves nothing to restore"


def test_declining_the_restore_deletes_the_autosave(window, qtbot, dialogs):
    from editor.main_window import MainWindow

    paint_mask(window, (100, 100, 200, 200))
    window.autosave.save_now(wait=True)
    window.autosave._lock.unlock()
    window.autosave._lock = None
    path = window.autosave.path
    dialogs.answer = QMessageBox.No
    other = MainWindow()
    qtbot.addWidget(other)
    assert not other.autosave.offer_restore() and not path.exists()
    assert other.doc.empty
    dialogs.answer = QMessageBox.Discard
    other.close()


def test_a_running_editors_autosave_is_not_offered(window, qtbot):
    from editor.main_window import MainWindow

    paint_mask(window, (100, 100, 200, 200))
    window.autosave.save_now(wait=True)
    other = MainWindow()
    qtbot.addWidget(other)
    assert window.autosave.path not in other.autosave.orphans()
    other.close()


def test_clipboard_paste_as_new_document_and_copy_the_result(window, qtbot, dialogs, artifacts):
    rgb = np.zeros((90, 160, 3), np.uint8)
    rgb[:, :80] = (250, 120, 20)
    rgb[30:60, 100:140] = (20, 90, 240)
    QGuiApplication.clipboard().setImage(rgb_qimage(rgb))
    QTest.keyClick(window.canvas, Qt.Key_V, Qt.ControlModifier)
    doc = window.doc
    assert doc.size == (160, 90) and np.array_equal(doc.image, rgb) and doc.path is None
    assert window.windowTitle().startswith("pasted image") and not dialogs.shown
    screenshot(window, artifacts, "pasted")
    select_model(window, "test-slow")
    set_param(window, "steps", 1)
    paint_mask(window, (100, 30, 140, 60), size=16)
    _fill(window, qtbot, 5)
    QTest.keyClick(window.canvas, Qt.Key_C, Qt.ControlModifier)
    copied, alpha = qimage_rgb(QGuiApplication.clipboard().image())
    assert alpha is None and np.array_equal(copied, doc.composed()), "Ctrl+C copies the shown result"
    assert not np.array_equal(copied, rgb)
    QGuiApplication.clipboard().setImage(QImage())
    dialogs.answer = QMessageBox.Discard
    assert not window.files.paste() and "no image" in window.statusBar().currentMessage()
