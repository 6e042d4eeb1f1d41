"""``python main.py --self-test``: drive the real editor window offscreen through one complete edit.

Open the sample, paint a mask with simulated mouse input, fill with the default model on the worker thread,
accept, export image / mask / strip to a temporary folder, and check each step. One line per step; exit 0 only
when every step worked. Used to check a frozen build too, so it needs no test framework.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

SAMPLE_BOX = (190, 170, 310, 250)  # image pixels painted over on the 512 x 512 sample
TIMEOUT_S = 60.0


class SelfTestFailed(Exception):
    pass


def _wait(app, cond, timeout_s: float) -> bool:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    poll = QTimer()
    poll.timeout.connect(lambda: cond() and loop.quit())
    poll.start(5)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    poll.stop()
    return bool(cond())


def _paint(win) -> None:
    """Brush strokes with QTest mouse events, through the canvas's own input handling."""
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtTest import QTest

    canvas = win.canvas
    win.act.options.size_spin.setValue(24)
    x0, y0, x1, y1 = SAMPLE_BOX
    for y in range(y0, y1 + 1, 12):
        pts = [canvas.image_to_widget(QPointF(x, y)) for x in np.linspace(x0, x1, 5)]
        pts = [QPoint(round(p.x()), round(p.y())) for p in pts]
        QTest.mousePress(canvas, Qt.LeftButton, Qt.NoModifier, pts[0])
        for p in pts[1:]:
            QTest.mouseMove(canvas, p)
        QTest.mouseRelease(canvas, Qt.LeftButton, Qt.NoModifier, pts[-1])


def run_self_test() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from editor.app import SAMPLE, make_app

    app = make_app()
    from editor.main_window import MainWindow
    from engine import registry
    from engine.imageio import load_image

    errors: list[str] = []
    win = MainWindow()
    win.error = lambda title, message: errors.append(f"{title}: {message}")  # no modal dialogs offscreen
    win.resize(1280, 820)
    win.show()
    out_dir = Path(tempfile.mkdtemp(prefix="inpaint-selftest-"))
    state: dict = {}

    def step_open():
        if not win.open_path(SAMPLE):
            raise SelfTestFailed(errors[-1] if errors else "could not open the sample")
        return f"{SAMPLE.name} {win.doc.size[0]}x{win.doc.size[1]}"

    def step_paint():
        _paint(win)
        n = int(np.count_nonzero(win.doc.mask))
        if n < 2000 or win.doc.undo_stack.count() == 0:
            raise SelfTestFailed(f"mask has {n} pixels after painting")
        state["mask"], state["before"] = win.doc.mask > 0, win.doc.image.copy()
        return f"{n} mask pixels, {win.doc.undo_stack.count()} undo steps"

    def step_fill():
        win.model_panel.select(registry.DEFAULT_MODEL)
        t0 = time.perf_counter()
        if win.fill() is None:
            raise SelfTestFailed(errors[-1] if errors else "fill did not start")
        if not _wait(app, lambda: bool(win.doc.results) or bool(errors), TIMEOUT_S) or errors:
            raise SelfTestFailed(errors[-1] if errors else f"no result within {TIMEOUT_S:.0f} s")
        return f"{registry.DEFAULT_MODEL} in {time.perf_counter() - t0:.2f} s"

    def step_accept():
        win.act.accept_result(len(win.doc.results) - 1)
        mask, before, img = state["mask"], state["before"], win.doc.image
        if not np.array_equal(img[~mask], before[~mask]):
            raise SelfTestFailed("pixels outside the mask changed")
        if np.array_equal(img[mask], before[mask]):
            raise SelfTestFailed("the hole was not filled")
        return "outside the mask unchanged, hole filled"

    def step_export():
        from PIL import Image

        paths = {k: win.run_export(k, out_dir / f"selftest-{k}.png") for k in ("image", "mask", "strip")}
        missing = [k for k, p in paths.items() if p is None or not p.exists()]
        if missing:
            raise SelfTestFailed(f"not written: {', '.join(missing)}; {errors[-1] if errors else ''}")
        if not np.array_equal(load_image(paths["image"]).rgb, win.doc.image):
            raise SelfTestFailed("exported image differs from the document")
        with Image.open(paths["image"]) as im:
            if im.text.get("model") != registry.DEFAULT_MODEL:
                raise SelfTestFailed(f"PNG metadata lacks the model: {dict(im.text)}")
        if not np.array_equal(load_image(paths["mask"]).rgb[..., 0] > 127, state["mask"]):
            raise SelfTestFailed("exported mask differs")
        if list(out_dir.glob("*.part")):
            raise SelfTestFailed("temporary files left behind")
        return f"image, mask, strip in {out_dir}"

    def step_close():
        win.close()
        if win.jobs._thread.isRunning():
            raise SelfTestFailed("worker thread still running after close")
        return "worker thread stopped"

    ok = True
    for name, step in (("open", step_open), ("paint mask", step_paint), ("fill", step_fill),
                       ("accept", step_accept), ("export", step_export), ("close", step_close)):
        try:
            detail = step()
            print(f"ok    {name}: {detail}", flush=True)
        except SelfTestFailed as exc:
            print(f"FAIL  {name}: {exc}", flush=True)
            ok = False
            break
        except Exception as exc:  # report, do not crash: the self-test is a diagnostic
            traceback.print_exc(file=sys.stderr)
            print(f"FAIL  {name}: {type(exc).__name__}: {exc}", flush=True)
            ok = False
            break
    if win.isVisible():
        win.jobs.shutdown()
    print("self-test passed" if ok else "self-test FAILED", flush=True)
    return 0 if ok else 1
