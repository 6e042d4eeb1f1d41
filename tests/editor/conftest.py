"""Editor test fixtures: offscreen Qt, scratch QSettings and autosave folder, the fake models, a shown main window
with the sample image, and QMessageBox (and the editor's own ``dialogs.ask``) recorded instead of blocking."""
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any Qt import

import pytest  # noqa: E402
from PySide6.QtCore import QCoreApplication, QSettings  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.fake_models is named by "module:attr" strings in the registry

from tests.fake_models import register_fake_models, unregister_fake_models  # noqa: E402

SAMPLE = ROOT / "resources" / "samples" / "astronaut.png"


@pytest.fixture(scope="session", autouse=True)
def _scratch_settings(tmp_path_factory):
    QCoreApplication.setOrganizationName("InpaintStudioTests")
    QCoreApplication.setApplicationName("Inpaint Studio Tests")
    QSettings.setDefaultFormat(QSettings.IniFormat)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(tmp_path_factory.mktemp("settings")))
    os.environ["INPAINT_STUDIO_AUTOSAVE"] = str(tmp_path_factory.mktemp("autosave"))
    register_fake_models()
    yield
    unregister_fake_models()


@pytest.fixture(autouse=True)
def _default_settings(monkeypatch):
    """Every test starts with the GPU setting at its default (a test that triggers every menu action turns it off)
    and no remembered model folders; the engine's device choice is undone after it."""
    from engine import device

    monkeypatch.delenv(device.ENV, raising=False)
    QSettings().remove("use_gpu")
    QSettings().remove("params")
    QSettings().remove("models_dir")
    QSettings().remove("compute")
    QSettings().remove("ui/more_settings")
    yield
    device.choose(None)
    from engine import registry

    registry.use_server(None)  # a test that connected to a server leaves this computer's models behind


class Dialogs:
    """Records message boxes; ``answer`` is what question() returns, ``choice`` what ``dialogs.ask`` returns (None:
    its default button)."""

    def __init__(self) -> None:
        self.shown: list[tuple[str, str, str]] = []
        self.answer = QMessageBox.No
        self.choice: str | None = None
        self.choices: list[list[str]] = []

    def errors(self) -> list[str]:
        return [msg for kind, _, msg in self.shown if kind == "critical"]


@pytest.fixture(autouse=True)
def dialogs(monkeypatch) -> Dialogs:
    rec = Dialogs()

    def make(kind):
        def show(parent, title, text, *args, **kwargs):
            rec.shown.append((kind, title, text))
            return rec.answer if kind == "question" else QMessageBox.Ok
        return staticmethod(show)

    for kind in ("critical", "warning", "information", "question"):
        monkeypatch.setattr(QMessageBox, kind, make(kind))

    def ask(parent, title, text, choices, default):
        rec.shown.append(("ask", title, text))
        rec.choices.append(list(choices))
        return rec.choice if rec.choice is not None else default

    from editor import dialogs as editor_dialogs

    monkeypatch.setattr(editor_dialogs, "ask", ask)
    return rec


@pytest.fixture
def learned_images():
    """test-train's record of learned images, emptied afterwards (it is class-wide, like a cache on disk)."""
    from tests.fake_models import SlowInpainter

    yield SlowInpainter.learned
    SlowInpainter.learned.clear()


@pytest.fixture
def window(qapp, qtbot, dialogs):
    from editor.app import apply_theme
    from editor.main_window import MainWindow

    apply_theme(qapp)  # screenshots look like the real app
    w = MainWindow()
    qtbot.addWidget(w)
    w.resize(1280, 820)
    w.show()
    qtbot.waitExposed(w)
    assert w.open_path(SAMPLE)
    w.model_panel.refresh_models()
    yield w
    dialogs.answer = QMessageBox.Discard
    w.close()
    assert not w.jobs._thread.isRunning()
