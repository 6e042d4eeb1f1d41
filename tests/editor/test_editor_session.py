"""The session (editor/session.py): what the next job will be, bound both ways to the model panel; settings kept
per model; a Param.once switch used up by one job; no model family or parameter named in the editor's code."""
import ast
from pathlib import Path

import pytest

from engine import registry
from engine.api import InpaintError
from tests.editor.helpers import paint_mask, select_model, set_param

JOB_TIMEOUT_MS = 20_000
EDITOR = Path(__file__).resolve().parents[2] / "editor"


def test_panel_edits_reach_the_session_and_session_changes_reach_the_panel(window, qtbot):
    session, panel = window.session, window.model_panel
    select_model(window, "test-slow")
    set_param(window, "steps", 7)
    panel.fields["sampler"].editor.setCurrentText("ddim")
    panel.fields["note"].editor.setText("typed, no Enter yet")
    panel.seed.setValue(42)
    assert session.params["steps"] == 7 and session.params["sampler"] == "ddim"
    assert session.params["note"] == "typed, no Enter yet" and session.seed == 42

    session.set_param("steps", 12)
    session.set_param("sharpen", True)
    assert panel.fields["steps"].editor.value() == 12 and panel.fields["steps"].slider.value() > 0
    assert panel.fields["sharpen"].editor.isChecked()
    with qtbot.waitSignal(session.seed_changed, timeout=1000) as seed:
        with qtbot.waitSignal(window.jobs.finished, timeout=JOB_TIMEOUT_MS):
            set_param(window, "step_ms", 1.0)
            paint_mask(window)
            session.variation()
    assert panel.seed.value() == seed.args[0] == session.seed == window.doc.results[-1].seed
    assert window.doc.results[-1].params["note"] == "typed, no Enter yet", "the fill used the session's values"

    select_model(window, "test-attr")
    session.set_attribute("glasses", 1.0)  # instant model: refills
    assert panel.toggles["glasses"].isChecked()
    with pytest.raises(InpaintError, match="no parameter"):
        session.set_param("steps", 3)  # test-attr has none


def test_settings_are_kept_per_model_for_the_session(window):
    session, panel = window.session, window.model_panel
    select_model(window, "test-slow")
    set_param(window, "steps", 9)
    panel.seed.setValue(5)
    select_model(window, "test-region")
    assert session.params["steps"] == 40, "another model starts from its own defaults"
    set_param(window, "steps", 3)
    select_model(window, "test-attr")
    panel.toggles["smile"].setChecked(True)
    select_model(window, "test-slow")
    assert session.params["steps"] == 9 and panel.fields["steps"].editor.value() == 9
    assert session.seed == 5, "the seed is shared by every model"
    select_model(window, "test-region")
    assert session.params["steps"] == 3
    select_model(window, "test-attr")
    assert session.attributes == {"smile": 1.0, "glasses": 0.0} and panel.toggles["smile"].isChecked()


def test_region_source_default_detected_user(window, qtbot):
    session = window.session
    seen = []
    labels = []  # what the box's handle says after each change (the window's slot runs first)
    session.region_changed.connect(lambda region, source: (seen.append(source),
                                                           labels.append(window.canvas.region_label)))
    select_model(window, "test-region")
    qtbot.waitUntil(lambda: session.region_source == "detected", timeout=5000)
    assert seen[:2] == ["default", "detected"] and session.region == (0, 0, 256, 256)
    assert labels[:2] == ["looking...", "detected"]
    window.act.tools["region"].trigger()
    from tests.editor.helpers import drag
    drag(window.canvas, [(100, 100), (110, 100)])
    assert session.region_source == "user" and session.region == (10, 0, 266, 256)
    assert window.canvas.region_label == "region"


def test_the_face_is_found_before_the_model_loads(window, qtbot, monkeypatch):
    """Picking a region model asks the worker for the box first and loads the model's code after: the box moves to
    the face in a fraction of a second, not after the model's imports (a second or more here)."""
    import time

    from tests import fake_models

    monkeypatch.setattr(fake_models.SlowInpainter, "warm_up", lambda self: time.sleep(2.0))
    t0 = time.perf_counter()
    select_model(window, "test-region")
    qtbot.waitUntil(lambda: window.session.region_source == "detected", timeout=5000)
    assert time.perf_counter() - t0 < 1.0


def test_region_label_stops_looking_when_nothing_is_found(window, qtbot):
    select_model(window, "test-region-nodetect")
    qtbot.waitUntil(lambda: window.canvas.region_label == "region", timeout=5000)
    assert window.session.region_source == "default" and not window.session.region_detecting


@pytest.fixture
def fresh_model(window, learned_images):
    """test-fresh registered and picked: a learns-on-image model with a Param.once switch."""
    from tests.editor import fake_once

    fake_once.register()
    window.model_panel.refresh_models()
    select_model(window, fake_once.NAME)
    set_param(window, "steps", 60)  # long enough (0.6 s) to still be learning when the mask is painted
    set_param(window, "step_ms", 10.0)
    yield fake_once.FRESH.name
    fake_once.unregister()


def test_a_once_switch_applies_to_one_job(window, qtbot, fresh_model, learned_images):
    """A Param.once bool is turned off once a job that used it ran to its end, and the panel shows it: the fill
    that waited for a Learn does not learn again. A cancelled job leaves it on."""
    name, box = fresh_model, window.model_panel.fields[fresh_model].editor
    box.setChecked(True)
    assert window.session.params[name] is True
    window.learn()
    with qtbot.waitSignal(window.jobs.cancelled, timeout=JOB_TIMEOUT_MS):
        window.session.cancel()
    assert window.session.params[name] is True and box.isChecked(), "a cancelled job did not use it up"

    learn_id = window.learn()
    paint_mask(window, (200, 180, 320, 260))
    assert window.fill() == learn_id
    qtbot.waitUntil(lambda: len(window.doc.results) == 1, timeout=JOB_TIMEOUT_MS)
    assert window.doc.results[0].params[name] is False, "the fill after the Learn did not learn afresh"
    assert window.progress.status.text() == "learned weights loaded from cache"
    assert window.session.params[name] is False and not box.isChecked(), "the panel follows the session"

    box.setChecked(True)  # a plain Fill with the switch on learns afresh, once
    with qtbot.waitSignal(window.jobs.finished, timeout=JOB_TIMEOUT_MS):
        window.fill()
    assert window.doc.results[-1].params[name] is True and not box.isChecked()


# Words the editor uses for its own things, which a model or family also happens to be called.
EDITOR_WORDS = {"sketch": "the sketch layer and pen", "folder": "a Param kind"}


def test_the_editor_names_no_model_family_or_parameter():
    """A new family must need no editor change: no model, family, parameter or attribute name of a shipped model
    appears as a string in editor/, and no family package is imported there."""
    models = [m for m in registry.all_models() if m.family != "test"]
    names = ({m.name for m in models} | {m.family for m in models} | {p.name for m in models for p in m.params}
             | {a.name for m in models for a in m.attributes}) - set(EDITOR_WORDS)
    families = {m.family for m in models}
    found = []
    for path in sorted(EDITOR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.name}:{node.lineno}: {node.value!r}")
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[0] == "engine" and len(parts) > 1 and parts[1] in families:
                    found.append(f"{path.name}:{node.lineno}: import {node.module}")
    assert found == []
