"""The picker by what the user has in front of them, the photo default, the warning before a model that does not
fit the image, the models folder setting, and the polish items: progress cleared on a model switch, errors in the
panel's words, one image pixel per device pixel at 100 % on a HiDPI screen."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRect, QSettings, Qt

from editor import fit
from editor.panels.picker import HEADING_ROLE, NAME_ROLE, SENTENCE_ROLE
from engine import registry
from engine.api import Geometry, ModelInfo
from engine.registry import ModelSpec
from tests.editor.conftest import ROOT, SAMPLE
from tests.editor.helpers import paint_mask, select_model, set_param

SHIPPED = [m for m in registry.all_models() if m.family != "test"]


def test_picker_groups_models_by_what_they_are_for(window, artifacts):
    picker = window.model_panel.picker
    rows = [(picker.itemText(i), picker.itemData(i, HEADING_ROLE), picker.itemData(i, NAME_ROLE),
             picker.itemData(i, SENTENCE_ROLE)) for i in range(picker.count())]
    headings = [text for text, head, _, _ in rows if head]
    assert headings[:4] == ["For photos", "For faces", "For digits", "Your models"]
    for m in SHIPPED:
        assert picker.group_of(m.name) == dict(fit.GROUPS)[m.category], m.name
        row = next(r for r in rows if r[2] == m.name)
        assert row[3] == m.on_photo and m.on_photo.endswith("."), "one plain sentence per model"
    for i in range(picker.count()):
        if picker.itemData(i, HEADING_ROLE):
            assert not picker.model().item(i).isEnabled(), "a heading cannot be picked"
    assert window.session.model == registry.DEFAULT_MODEL == "patch", "the photo default (measured)"
    assert window.model_panel.sentence.text() == registry.get_info(registry.DEFAULT_MODEL).on_photo
    picker.setCurrentIndex(picker.findData("telea", NAME_ROLE))
    assert window.session.model == "telea"
    picker.showPopup()
    assert picker.view().isVisible()
    picker.hidePopup()
    # the open list as a whole (an offscreen popup is cut to the screen): the picker's own model and delegate
    from PySide6.QtWidgets import QListView

    shipped = [i for i in range(picker.count()) if not str(picker.itemData(i, NAME_ROLE)).startswith("test-")]
    full = QListView()
    full.setModel(picker.model())
    full.setItemDelegate(picker.itemDelegate())
    for i in range(picker.count()):
        full.setRowHidden(i, i not in shipped)
    full.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    full.resize(440, sum(full.sizeHintForRow(i) for i in shipped) + 8)
    full.grab().save(str(artifacts / "editor_model_picker.png"))


def test_benchmark_names_the_default():
    """The default is what benchmarks/photo_models.py measured best for removing objects from photos."""
    from benchmarks.photo_models import default_for_photos

    result = json.loads((ROOT / "benchmarks" / "results" / "photo_models.json").read_text())
    assert result["default_for_photos"] == registry.DEFAULT_MODEL
    assert default_for_photos(result["summary"], list(result["summary"])) == registry.DEFAULT_MODEL


@pytest.fixture
def digits_model():
    """A model made for 28 x 28 grey digits (the shape of the shipped digit models, without their weights)."""
    info = ModelInfo(name="test-digits", title="Test: digits", family="test", description="a digit model",
                     domain="28x28 grey handwritten digits", geometry=Geometry(size=28), grey=True,
                     category="digits", on_photo="Paints grey digit strokes: made for 28x28 digits, not for photos.")
    registry.register(ModelSpec(info, "tests.fake_models:SlowInpainter", order=950))
    yield info
    registry.unregister(info.name)


def test_a_digit_model_on_a_colour_photo_warns_before_fill(window, qtbot, digits_model, dialogs, artifacts):
    window.model_panel.refresh_models()
    panel = window.model_panel
    assert not panel.warning_box.isVisible()
    select_model(window, digits_model.name)
    assert panel.warning_box.isVisible() and "colour photo" in panel.warning.text()
    assert panel.use_default.text() == f"Use {registry.get_info(registry.DEFAULT_MODEL).title}"
    screenshot_path = artifacts / "editor_domain_warning.png"
    window.grab().save(str(screenshot_path))
    paint_mask(window, (200, 180, 320, 260))
    dialogs.choice = "Cancel"
    assert window.fill() is None and not window.jobs.busy
    kind, title, text = dialogs.shown[-1]
    assert kind == "ask" and "not made for this image" in title.lower() and "grey strokes" in text
    dialogs.choice = "Fill anyway"
    with qtbot.waitSignal(window.jobs.finished, timeout=20_000):
        window.fill()
    asked = len(dialogs.shown)
    with qtbot.waitSignal(window.jobs.finished, timeout=20_000):
        window.fill()
    assert len(dialogs.shown) == asked, "asked once per model and image"
    panel.use_default.click()
    assert window.session.model == registry.DEFAULT_MODEL and not panel.warning_box.isVisible()


def test_domain_rules_without_qt():
    colour = np.zeros((300, 300, 3), np.uint8)
    colour[..., 0] = 200
    grey_small = np.full((28, 28, 3), 90, np.uint8)
    grey_big = np.full((512, 512, 3), 90, np.uint8)
    digits = registry.get_info("repaint-mnist")
    assert "colour photo" in fit.domain_warning(digits, colour)
    assert fit.domain_warning(digits, grey_small) is None, "a digit is what it is made for"
    assert "512 x 512" in fit.domain_warning(digits, grey_big)
    for m in SHIPPED:
        if m.category == "photos":
            assert fit.domain_warning(m, colour) is None
    assert fit.outpaint_model(SHIPPED, registry.DEFAULT_MODEL).name == "patch"


def test_errors_use_the_labels_the_user_sees():
    sd = registry.get_info("sd-sketch")
    label = sd.param("checkpoint").label
    msg = ("no Stable Diffusion folder given: set the 'checkpoint' parameter to a local diffusers folder "
           "(model_index.json inside)")
    shown = fit.user_words(msg, sd)
    assert "'checkpoint'" not in shown and f"\u201c{label}\u201d setting" in shown
    assert fit.user_words("sd-sketch: --param checkpoint=DIR", sd) == f"{sd.title}: \u201c{label}\u201d = DIR"
    assert fit.user_words("DDPM checkpoint folder not found: /x/y", registry.get_info("repaint-ddpm-folder")) \
        == "DDPM checkpoint folder not found: /x/y", "plain words stay"


def test_a_failed_job_names_the_setting_by_its_label(window, qtbot, dialogs, monkeypatch):
    from tests import fake_models

    def fail(self, request, cancel):
        yield from ()
        raise fake_models.InpaintError("set the 'step_ms' parameter below 1000")

    monkeypatch.setattr(fake_models.SlowInpainter, "run", fail)
    select_model(window, "test-slow")
    paint_mask(window, (200, 180, 320, 260))
    with qtbot.waitSignal(window.jobs.failed, timeout=20_000):
        window.fill()
    assert dialogs.errors()[-1] == "set the \u201cStep time (ms)\u201d setting below 1000"


def test_the_seed_row_and_fill_are_in_view_at_1280x820(window, qtbot):
    """The model dock takes the window's full height: the MaskGIT model's Seed row (below its description and six
    parameters) needs no scrolling in the fixture's 1280x820 window, and Fill stays in view."""
    select_model(window, "token-face")
    qtbot.wait(50)
    panel = window.model_panel
    viewport = panel.parentWidget()  # the scroll area's
    for widget in (panel.seed, panel.variation):
        assert viewport.rect().contains(QRect(widget.mapTo(viewport, QPoint(0, 0)), widget.size()))
    fill = window.progress.fill_button
    assert window.rect().contains(QRect(fill.mapTo(window, QPoint(0, 0)), fill.size()))


def test_progress_text_cleared_on_model_change(window, qtbot):
    select_model(window, "test-train")
    set_param(window, "steps", 400)
    set_param(window, "step_ms", 10.0)
    paint_mask(window, (200, 180, 320, 260))
    window.fill()
    qtbot.waitUntil(lambda: window.progress.status.text() == "learning this image", timeout=10_000)
    qtbot.waitUntil(lambda: window.progress.bar.format().startswith("training"), timeout=10_000)
    select_model(window, "test-slow")
    assert window.progress.status.text().strip() == "" and window.progress.bar.format() == "idle"
    assert not window.progress.loss.isVisible()
    qtbot.waitUntil(lambda: not window.jobs.busy, timeout=10_000)
    assert window.progress.bar.format() == "idle", "the cancelled job of the other model says nothing"


def test_models_folder_setting_scans_lists_problems_and_is_remembered(window, qtbot, tmp_path, monkeypatch,
                                                                      dialogs):
    import engine.patch

    mine = ModelInfo(name="my-model", title="My inpainter", family="patch", description="found in the folder",
                     domain="photos", category="yours", on_photo="Your own model, from your models folder.")

    def discover(folder):
        if (folder / "mine.model").exists():  # a file no real family reads
            return [ModelSpec(mine, "tests.fake_models:SlowInpainter")], ["broken.safetensors: not a checkpoint"]
        return [], []

    monkeypatch.setattr(engine.patch, "discover", discover, raising=False)
    (tmp_path / "mine.model").write_bytes(b"x")
    try:
        problems = window.models_folder.use(str(tmp_path))
        assert problems == ["broken.safetensors: not a checkpoint"]
        kind, title, text = dialogs.shown[-1]
        assert kind == "warning" and "Models found there: 1" in text and "broken.safetensors" in text
        picker = window.model_panel.picker
        assert picker.group_of("my-model") == "Your models"
        assert QSettings().value("models_dir") == str(tmp_path)
        from editor.main_window import MainWindow

        registry.set_models_dir(None)
        assert "my-model" not in [m.name for m in registry.all_models()]
        again = MainWindow()  # a new start applies the remembered folder
        qtbot.addWidget(again)
        assert "my-model" in again.model_panel.picker.names()
        assert "could not be used" in again.statusBar().currentMessage()
        again.close()
        window.models_folder.clear()
        assert "my-model" not in window.model_panel.picker.names() and not QSettings().value("models_dir")
    finally:
        registry.set_models_dir(None)


HIDPI_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from PySide6.QtCore import QCoreApplication, QPointF
    from editor.app import apply_theme, make_app
    app = make_app()
    QCoreApplication.setOrganizationName("InpaintStudioHiDPITest")
    apply_theme(app)
    from editor.main_window import MainWindow
    win = MainWindow()
    win.resize(1000, 700)
    win.show()
    app.processEvents()
    win.open_path(sys.argv[1])
    c = win.canvas
    c.actual_size()
    app.processEvents()
    shot = c.grab()
    dpr = shot.devicePixelRatio()
    img = shot.toImage()
    x0, y0 = 200, 200  # image pixels
    p = c.image_to_widget(QPointF(x0, y0))
    dx, dy = round(p.x() * dpr), round(p.y() * dpr)
    got = np.array([[img.pixelColor(dx + i, dy + j).getRgb()[:3] for i in range(48)] for j in range(48)])
    want = win.doc.image[y0:y0 + 48, x0:x0 + 48]
    shot.save(sys.argv[2])
    win.grab().save(sys.argv[3])
    print(json.dumps({"dpr": dpr, "label": win.zoom_label.text(), "zoom": c.zoom,
                      "max_diff": int(np.abs(got.astype(int) - want.astype(int)).max())}))
    win.session.shutdown()
    win.canvas.objects.shutdown()
    win.autosave.discard()
""")


def test_actual_size_is_one_image_pixel_per_device_pixel_on_hidpi(tmp_path, artifacts):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QT_SCALE_FACTOR="2", INPAINT_STUDIO_AUTOSAVE=str(tmp_path),
               XDG_CONFIG_HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", HIDPI_SCRIPT, str(SAMPLE), str(artifacts / "editor_hidpi_canvas.png"),
                          str(artifacts / "editor_hidpi_window.png")], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["dpr"] == 2.0 and result["zoom"] == 0.5 and result["label"] == "100%"
    assert result["max_diff"] == 0, "each image pixel lands on exactly one device pixel"


def test_tuning_is_folded_under_more_settings_and_a_changed_one_is_counted(window, qtbot, artifacts):
    """Param.advanced: frugal's 13 parameters show 5 and a "More settings (8)" fold (closed by default, so the Seed
    row is in view at 1280 x 820); opening it is remembered; a folded setting that differs from its default is
    counted on the button; a model with nothing folded shows no button."""
    panel = window.model_panel
    select_model(window, "frugal")
    qtbot.wait(20)  # new rows of a shown panel appear on the next event-loop pass
    folded = {n for n, f in panel.fields.items() if f.param.advanced}
    assert folded == {"iterations", "crop", "batch", "max_hole", "edm", "auto_guidance", "guidance", "eta"}
    assert all(panel.more_form.labelForField(panel.fields[n]) is not None for n in folded)
    assert panel.params_form.labelForField(panel.fields["minutes"]) is not None
    assert panel.more.isVisible() and not panel.more_box.isVisible()
    assert all(f.isVisible() != (n in folded) for n, f in panel.fields.items())
    assert panel.more.text() == "More settings (8)"

    qtbot.mouseClick(panel.more, Qt.LeftButton)
    assert panel.more_box.isVisible() and QSettings().value("ui/more_settings", type=bool)
    panel.fields["eta"].editor.setValue(0.5)  # through the widget, as a user
    assert window.session.params["eta"] == 0.5 and panel.more.text() == "More settings (8), 1 changed"
    window.session.set_param("eta", 1.0)  # back to the default, from elsewhere (e.g. a restored project)
    assert panel.more.text() == "More settings (8)"
    qtbot.wait(20)
    assert all(f.isVisible() for f in panel.fields.values())
    window.grab().save(str(artifacts / "more_settings.png"))

    select_model(window, "patch")  # the fold stays open across models
    assert panel.more_box.isVisible() and panel.more.text() == "More settings (3)"
    select_model(window, "telea")
    assert not panel.more.isVisible()
    select_model(window, "frugal")
    assert panel.more_box.isVisible()
