"""The editor as a client of a real ``main.py serve`` on the loopback address (a subprocess): Fill > Compute on...
lists the server's models, fills run there with previews and history as locally, cancel stops the server's job,
a wrong token or a stopped server is one clear message and the document keeps everything."""
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PySide6.QtCore import QSettings

from editor.compute import ComputeSetting
from engine import registry
from tests.editor.conftest import ROOT
from tests.editor.helpers import paint_mask, screenshot, select_model

TOKEN = "editor-test-token"
JOB_TIMEOUT_MS = 30_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.editor.fake_server", "--port", str(port), "--token",
                             TOKEN], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > end:
                proc.kill()
                pytest.fail(f"the server did not start: {proc.stdout.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.2)
    yield url, proc
    proc.kill()
    proc.wait(timeout=10)


def _connect(window, url: str, token: str):
    dlg = window.compute.dialog()
    dlg.remote.setChecked(True)
    dlg.address.setText(url)
    dlg.token.setText(token)
    dlg.buttons.button(dlg.buttons.StandardButton.Ok).click()
    return dlg


def test_the_editor_fills_on_a_server_and_survives_losing_it(window, qtbot, server, dialogs, artifacts):
    url, proc = server
    doc = window.doc
    local = set(window.model_panel.picker.names())

    dlg = _connect(window, url, "wrong")
    assert dlg.isVisible() or dlg.result() == 0, "a refused token keeps the dialog open"
    assert "token" in dlg.problem.text() and registry.server() is None

    dlg = _connect(window, url, TOKEN)
    assert dlg.problem.text() == "" and registry.server() is not None
    served = [m.name for m in registry.server().models()]
    assert sorted(window.model_panel.picker.names()) == sorted(served), "the picker lists the server's models"
    assert "telea" in served and "test-slow" in served and local != set(served)
    assert "server 127.0.0.1" in window.device.label.text() and not window.device.action.isEnabled()

    # a fill runs on the server: history, pixels outside the mask unchanged, same pixels as this computer's
    select_model(window, "telea")
    paint_mask(window, (200, 180, 320, 260))
    mask = doc.mask > 0
    before = doc.image.copy()
    with qtbot.waitSignal(window.jobs.finished, timeout=JOB_TIMEOUT_MS):
        window.fill()
    item = doc.results[-1]
    assert item.model == "telea" and np.array_equal(item.image[~mask], before[~mask])
    assert not np.array_equal(item.image[mask], before[mask])
    from engine.api import Request
    from engine.runner import run_to_end

    registry.use_server(None)
    here = run_to_end(registry.load("telea"), Request(before, doc.mask, seed=item.seed, params=item.params))
    window.compute.connect(url, TOKEN)
    assert np.array_equal(item.image, here.image), "the server's fill is this computer's fill"

    # previews stream and cancel stops the job on the server
    select_model(window, "test-slow")
    window.model_panel.fields["steps"].editor.setValue(400)
    previews = []
    window.jobs.preview_tick.connect(previews.append)
    with qtbot.waitSignal(window.jobs.preview_tick, timeout=JOB_TIMEOUT_MS):
        window.fill()
    screenshot(window, artifacts, "remote_preview")
    with qtbot.waitSignal(window.jobs.cancelled, timeout=JOB_TIMEOUT_MS):
        window.session.cancel()
    assert previews and previews[0].image is not None and len(doc.results) == 1

    # the server goes away: one clear message, the job over, the document as it was
    proc.kill()
    proc.wait(timeout=10)
    select_model(window, "telea")
    with qtbot.waitSignal(window.jobs.failed, timeout=JOB_TIMEOUT_MS):
        window.fill()
    assert any("lost the connection to the server" in m for m in dialogs.errors()), dialogs.shown
    assert len(doc.results) == 1 and np.array_equal(doc.image, before) and np.array_equal(doc.mask > 0, mask)
    assert not window.jobs.busy

    # back to this computer: the local models again
    dlg = window.compute.dialog()
    dlg.local.setChecked(True)
    dlg.buttons.button(dlg.buttons.StandardButton.Ok).click()
    assert registry.server() is None and set(window.model_panel.picker.names()) == local
    assert window.device.action.isEnabled()


def test_a_remembered_server_that_is_gone_falls_back_to_this_computer(window, dialogs):
    settings = QSettings()
    settings.setValue("compute/mode", "server")
    settings.setValue("compute/server", f"http://127.0.0.1:{_free_port()}")
    setting = ComputeSetting(window, settings)
    setting.apply_saved()
    assert registry.server() is None and "lost the connection" in setting.problem
    setting.report()
    assert dialogs.shown and "this computer" in dialogs.shown[-1][2]
