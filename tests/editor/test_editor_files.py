"""Opening (path, drag and drop, recent files, bad files) and exporting (metadata, atomic writes, the original
never overwritten without confirmation)."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QMessageBox

from engine.imageio import load_image
from tests.editor.conftest import SAMPLE
from tests.editor.helpers import paint_mask, select_model, set_param


@pytest.fixture
def filled(window, qtbot):
    """The window with one finished test-slow result (seed 7) shown."""
    select_model(window, "test-slow")
    set_param(window, "steps", 2)
    set_param(window, "step_ms", 1.0)
    window.model_panel.seed.setValue(7)
    paint_mask(window, (200, 180, 320, 260))
    with qtbot.waitSignal(window.jobs.finished, timeout=20_000):
        window.fill()
    return window


def test_export_png_carries_metadata(filled, tmp_path):
    out = filled.run_export("image", tmp_path / "out.png")
    assert out is not None
    with Image.open(out) as im:
        meta = dict(im.text)
        pixels = np.asarray(im.convert("RGB"))
    item = filled.doc.results[0]
    assert meta["model"] == "test-slow" and meta["seed"] == "7" and meta["source"] == SAMPLE.name
    assert json.loads(meta["params"]) == item.params, "the job's parameters, types and all (the CLI's format)"
    assert item.params["steps"] == 2 and item.params["sampler"] == "ddpm"
    assert np.array_equal(pixels, item.image), "the export is what the canvas shows"
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_export_lossy_formats(filled, tmp_path, suffix):
    out = filled.run_export("image", tmp_path / f"out{suffix}")
    rgb = load_image(out).rgb
    assert rgb.shape == filled.doc.image.shape
    assert np.abs(rgb.astype(int) - filled.doc.results[0].image).mean() < 8


def test_export_mask_and_strip(filled, tmp_path):
    mask_path = filled.run_export("mask", tmp_path / "mask.png")
    mask = load_image(mask_path).rgb[..., 0]
    assert np.array_equal(mask, filled.doc.mask), "grey levels kept"
    strip = load_image(filled.run_export("strip", tmp_path / "strip.png")).rgb
    h, w = filled.doc.image.shape[:2]
    assert strip.shape[0] == h and strip.shape[1] > 3 * w
    assert np.array_equal(strip[:, :w], filled.doc.image)
    assert np.array_equal(strip[:, -w:], filled.doc.results[0].image)


def test_prompt_reaches_the_result_and_the_png(window, qtbot, tmp_path):
    select_model(window, "test-slow")
    assert not window.model_panel.prompt_box.isVisibleTo(window)
    select_model(window, "test-prompt")
    assert window.model_panel.prompt_box.isVisibleTo(window), "a prompt field for uses_prompt models"
    window.model_panel.prompt.setText("a red balloon")
    paint_mask(window, (200, 180, 320, 260))
    with qtbot.waitSignal(window.jobs.finished, timeout=20_000):
        window.fill()
    assert window.doc.results[-1].prompt == "a red balloon"
    with Image.open(window.run_export("image", tmp_path / "p.png")) as im:
        assert im.text["prompt"] == "a red balloon"


def test_original_never_overwritten_without_confirmation(filled, tmp_path, dialogs):
    copy = tmp_path / "photo.png"
    shutil.copy(SAMPLE, copy)
    dialogs.answer = QMessageBox.Discard  # the unaccepted result: opening another image asks first
    assert filled.open_path(copy)
    original_bytes = copy.read_bytes()
    paint_mask(filled, (10, 10, 60, 60))
    filled.doc.set_layer("image", 255 - filled.doc.image, "test edit")
    dialogs.answer = QMessageBox.No
    assert filled.run_export("image", copy) is None
    assert copy.read_bytes() == original_bytes
    assert any(kind == "question" for kind, _, _ in dialogs.shown)
    dialogs.answer = QMessageBox.Yes
    assert filled.run_export("image", copy) == copy
    assert copy.read_bytes() != original_bytes


def test_failed_write_leaves_no_partial_file(filled, tmp_path, dialogs, monkeypatch):
    target = tmp_path / "keep.png"
    target.write_bytes(b"previous export")

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"half a png")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    assert filled.run_export("image", target) is None
    assert target.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"], "no temporary file left behind"
    assert "No space left" in dialogs.errors()[-1]


def test_export_errors_are_dialogs(window, tmp_path, dialogs):
    assert window.run_export("strip", tmp_path / "strip.png") is None
    assert "fill first" in dialogs.errors()[-1]
    assert window.run_export("image", tmp_path / "x.gif") is None
    assert ".png" in dialogs.errors()[-1]


def test_open_bad_file_is_a_dialog(window, tmp_path, dialogs):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    shape = window.doc.image.shape
    assert not window.open_path(bad)
    assert "broken.png" in dialogs.errors()[-1] and "\n" not in dialogs.errors()[-1]
    assert not window.open_path(tmp_path / "missing.png")
    assert len(dialogs.errors()) == 2
    assert window.doc.image.shape == shape, "the open image is kept"


def test_drag_and_drop_and_recent_files(window, tmp_path, qtbot):
    other = tmp_path / "coffee.png"
    shutil.copy(SAMPLE.parent / "coffee.png", other)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(other))])
    ev = QDropEvent(QPointF(100, 100), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    window.dropEvent(ev)
    assert window.doc.path == other and window.doc.image.shape == load_image(other).rgb.shape
    assert window.files.recent_files()[0] == str(other.resolve())
    assert window.files.recent_files()[1] == str(SAMPLE.resolve())
    actions = window.files.recent_menu.actions()
    assert actions[0].data() == str(other.resolve())
    actions[1].trigger()
    assert window.doc.path.resolve() == SAMPLE.resolve()


def test_unexported_accept_asks_before_opening_another(filled, dialogs):
    filled.history.accept_button.click()
    dialogs.answer = QMessageBox.Cancel
    assert not filled.open_path(SAMPLE)
    assert any(title == "Keep your work?" for _, title, _ in dialogs.shown)
    dialogs.answer = QMessageBox.Discard
    assert filled.open_path(SAMPLE)


def test_self_test_passes(qapp, capsys):
    from editor.selftest import run_self_test

    assert run_self_test() == 0
    out = capsys.readouterr().out
    assert out.count("ok    ") == 6 and "self-test passed" in out


def test_run_editor_opens_command_line_path(qapp, tmp_path, monkeypatch):
    """run_editor(paths) as main.py calls it: the window opens the given file. The event loop is replaced by
    an inspection (a real exec() + quit() would leave Qt's main-thread loops in the quitting state)."""
    from PySide6.QtWidgets import QApplication

    from editor.app import run_editor
    from editor.main_window import MainWindow

    other = tmp_path / "coffee.png"
    shutil.copy(SAMPLE.parent / "coffee.png", other)
    seen = {}

    def fake_exec(self=None):
        wins = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        seen["paths"] = [w.doc.path for w in wins]
        for w in wins:
            w.close()
        return 0

    monkeypatch.setattr(type(qapp), "exec", fake_exec)
    assert run_editor([str(other)]) == 0
    assert seen["paths"] == [other]


def test_broken_model_registry_is_a_dialog(qtbot, dialogs, monkeypatch):
    from editor.main_window import MainWindow
    from engine import registry

    def broken():
        raise ImportError("engine.somefamily: No module named 'missing_dep'")

    monkeypatch.setattr(registry, "all_models", broken)
    w = MainWindow()
    qtbot.addWidget(w)
    qtbot.waitUntil(lambda: bool(dialogs.errors()), timeout=2000)
    assert "missing_dep" in dialogs.errors()[-1]
    assert w.fill() is None, "no model: Fill does nothing instead of crashing"
    w.close()
