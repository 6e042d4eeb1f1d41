"""Application start-up: one QApplication, the main window, the files given on the command line."""
from __future__ import annotations

import sys
import traceback
from pathlib import Path

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QMessageBox

from editor.worker import first_line

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "samples" / "astronaut.png"


def make_app() -> QApplication:
    QCoreApplication.setOrganizationName("InpaintStudio")
    QCoreApplication.setApplicationName("Inpaint Studio")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    apply_theme(app)
    return app


def apply_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    app.setPalette(dark_palette())


def dark_palette() -> QPalette:
    """A neutral dark theme, as image editors use, so the UI does not compete with the picture."""
    pal = QPalette()
    base, window, text = QColor(35, 37, 41), QColor(50, 53, 58), QColor(220, 222, 226)
    for role, color in ((QPalette.Window, window), (QPalette.WindowText, text), (QPalette.Base, base),
                        (QPalette.AlternateBase, window), (QPalette.ToolTipBase, QColor(60, 63, 68)),
                        (QPalette.ToolTipText, text), (QPalette.Text, text), (QPalette.Button, window),
                        (QPalette.ButtonText, text), (QPalette.Highlight, QColor(64, 128, 220)),
                        (QPalette.HighlightedText, QColor(255, 255, 255)), (QPalette.Link, QColor(100, 160, 255))):
        pal.setColor(role, color)
    for role in (QPalette.WindowText, QPalette.Text, QPalette.ButtonText):
        pal.setColor(QPalette.Disabled, role, QColor(120, 122, 128))
    return pal


def install_excepthook() -> None:
    """An exception escaping a slot becomes a one-line dialog (the trace goes to stderr), never a crash."""
    def hook(exc_type, exc, tb):
        traceback.print_exception(exc_type, exc, tb, file=sys.stderr)
        if QApplication.instance() is not None:
            QMessageBox.critical(None, "Unexpected error", f"{exc_type.__name__}: {first_line(exc)}")
    sys.excepthook = hook


def run_editor(paths: list[str]) -> int:
    app = make_app()
    app.setAttribute(Qt.AA_DontShowIconsInMenus, False)
    install_excepthook()
    from editor.main_window import MainWindow

    win = MainWindow()
    win.show()
    if win.autosave.offer_restore():  # the work of an editor that did not close normally comes first
        paths = []
    elif not paths and SAMPLE.exists():
        paths = [str(SAMPLE)]
    for p in paths[:1]:
        win.open_path(p)
    return app.exec()
