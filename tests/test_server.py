"""The engine served over HTTP + WebSocket: the API through Starlette's test client, a real uvicorn server on the
loopback address (started and stopped here), bad requests, and a bounded load test."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from engine import registry
from engine.api import Cancelled, CancelToken, InpaintError, Request, drive
from engine.registry import ModelSpec
from engine.runner import run_to_end
from engine.server import wire
from engine.server.app import create_app
from engine.server.jobs import JobQueue
from tests.fake_models import SLOW_PARAMS, _info

TOKEN = "s3cret"


def _image(seed: int = 0, h: int = 48, w: int = 64):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    mask[10:30, 20:44] = True
    return img, mask


def _files(img, mask, **extra):
    files = {"image": ("photo.png", wire.png_bytes(img)), "mask": ("mask.png", wire.mask_png(mask))}
    files.update(extra)
    return files


@pytest.fixture
def slow_model():
    """A model that takes 40 ms a step, for queueing and cancelling (registered for this test only)."""
    registry.register(ModelSpec(_info("test-slow", params=SLOW_PARAMS), "tests.fake_models:SlowInpainter"))
    yield "test-slow"
    registry.unregister("test-slow")


@pytest.fixture
def api():
    from fastapi.testclient import TestClient

    queue = JobQueue(max_backlog=2)
    with TestClient(create_app(queue, TOKEN, max_upload=2 << 20),
                    headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client, queue
    queue.stop()


def _submit(client, img, mask, model="telea", **data):
    return client.post(f"{wire.API}/jobs", files=_files(img, mask), data={"model": model, **data})


def _wait_done(client, job, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st = client.get(f"{wire.API}/jobs/{job['id']}", headers={"X-Job-Key": job["key"]}).json()
        if st["state"] in ("done", "failed", "cancelled"):
            return st
        time.sleep(0.02)
    raise AssertionError(f"job still {st['state']}")


def test_models_are_listed_with_their_schemas_and_no_model_that_reads_server_folders(api):
    client, _ = api
    listed = {m["name"]: m for m in client.get(f"{wire.API}/models").json()}
    assert {"telea", "patch", "frugal"} <= set(listed)
    assert "repaint-ddpm-folder" not in listed and "sd-sketch" not in listed, "they name a folder on the server"
    telea = wire.model_from_json(listed["telea"])
    assert telea == registry.get_info("telea").__class__(**{**registry.get_info("telea").__dict__, "weights": None})
    patch = wire.model_from_json(listed["patch"])
    assert [p.advanced for p in patch.params] == [p.advanced for p in registry.get_info("patch").params]
    assert any(p.advanced for p in patch.params)


def test_a_newer_servers_unknown_fields_are_ignored():
    """A server one version ahead may describe models with fields this client does not have yet."""
    d = wire.model_to_json(registry.get_info("patch"))
    d["future_flag"] = True
    d["geometry"]["future_geometry"] = 1
    for p in d["params"]:
        p["future_param_field"] = "x"
    info = wire.model_from_json(d)
    assert [p.name for p in info.params] == [p.name for p in registry.get_info("patch").params]


def test_a_job_streams_progress_and_previews_and_returns_the_cli_result(api):
    client, _ = api
    img, mask = _image()
    job = _submit(client, img, mask, params=json.dumps({"radius": 3}), seed="4").json()
    with client.websocket_connect(f"{wire.API}/jobs/{job['id']}/events?key={job['key']}&token={TOKEN}") as ws:
        events = []
        while not events or events[-1].get("state") not in ("done", "failed", "cancelled"):
            events.append(ws.receive_json())
    assert events[-1]["state"] == "done" and events[-1]["result"]["params"] == {"radius": 3}
    r = client.get(f"{wire.API}/jobs/{job['id']}/result", headers={"X-Job-Key": job["key"]})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    from PIL import Image
    import io

    png = Image.open(io.BytesIO(r.content))
    assert png.text["model"] == "telea" and json.loads(png.text["params"]) == {"radius": 3}
    assert png.text["source"] == "photo.png" and png.text["seed"] == "4"
    here = run_to_end(registry.load("telea"), Request(img, mask, seed=4, params={"radius": 3})).image
    assert np.array_equal(np.asarray(png.convert("RGB")), here), "the same fill as on this machine"


@pytest.mark.parametrize("data, files, status, said", [
    ({"model": "nope"}, None, 404, "unknown model 'nope'"),
    ({"model": "telea", "seed": "abc"}, None, 400, "seed"),
    ({"model": "telea", "params": "{oops"}, None, 400, "params: not JSON"),
    ({"model": "telea", "params": json.dumps({"radius": "wide"})}, None, 400, "parameter radius='wide'"),
    ({"model": "telea", "params": json.dumps({"zz": 1})}, None, 400, "no parameter 'zz'"),
    ({"model": "repaint-ddpm-folder", "params": json.dumps({"checkpoint": "/etc"})}, None, 403, "folder"),
    ({"model": "frugal", "params": json.dumps({"folder": "/home"})}, None, 403, "names a folder on the server"),
    ({"model": "telea"}, {"image": ("x.png", b"not an image")}, 400, "x.png: not an image"),
    ({"model": "telea"}, {"sketch": ("s.png", b"")}, 400, "takes no sketch"),
    ({"model": "telea", "region": "[1, 2]"}, None, 400, "region"),
])
def test_bad_requests_are_one_json_error_line(api, data, files, status, said):
    client, _ = api
    img, mask = _image()
    r = client.post(f"{wire.API}/jobs", files=_files(img, mask, **(files or {})), data=data)
    assert r.status_code == status and said in r.json()["error"], r.json()
    assert "Traceback" not in r.text and set(r.json()) == {"error"}


def test_tokens_sizes_and_other_clients_jobs_are_refused(api):
    client, _ = api
    img, mask = _image()
    r = client.get(f"{wire.API}/models", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and "token" in r.json()["error"]
    big = np.random.default_rng(0).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)  # > 2 MB as PNG
    r = client.post(f"{wire.API}/jobs", files={"image": ("big.png", wire.png_bytes(big)),
                                                "mask": ("m.png", wire.mask_png(np.ones((1200, 1200), bool)))},
                    data={"model": "telea"})
    assert r.status_code == 413 and "MB" in r.json()["error"]
    job = _submit(client, img, mask).json()
    assert client.post(f"{wire.API}/jobs/{job['id']}/cancel", headers={"X-Job-Key": "guess"}).status_code == 403
    assert client.get(f"{wire.API}/jobs/nope", headers={"X-Job-Key": job["key"]}).status_code == 404
    with pytest.raises(Exception):  # the WebSocket is closed before it is accepted
        with client.websocket_connect(f"{wire.API}/jobs/{job['id']}/events?key=guess&token={TOKEN}") as ws:
            ws.receive_json()
    assert _wait_done(client, job)["state"] == "done", "the owner's job was not disturbed"


def test_the_backlog_is_bounded_and_a_queued_job_cancels_at_once(api, slow_model):
    client, queue = api
    img, mask = _image()
    params = json.dumps({"steps": 50, "step_ms": 40.0})
    jobs = [_submit(client, img, mask, model=slow_model, params=params) for _ in range(4)]
    codes = [r.status_code for r in jobs]
    assert codes[:3] == [200, 200, 200] and codes[3] == 503, codes  # one running + max_backlog 2 waiting
    assert "busy" in jobs[3].json()["error"]
    first, _, last = (r.json() for r in jobs[:3])
    assert last["position"] == 2
    st = client.post(f"{wire.API}/jobs/{last['id']}/cancel", headers={"X-Job-Key": last["key"]}).json()
    assert st["state"] == "cancelled", "a queued job is cancelled before it runs"
    client.post(f"{wire.API}/jobs/{first['id']}/cancel", headers={"X-Job-Key": first["key"]})
    assert _wait_done(client, first)["state"] == "cancelled", "a running job stops at its next step"
    assert client.get(f"{wire.API}/jobs/{first['id']}/result",
                      headers={"X-Job-Key": first["key"]}).status_code == 409


# ----- a real server on the loopback address ------------------------------------------------------------------
@pytest.fixture
def server():
    import uvicorn

    queue = JobQueue(max_backlog=8)
    app = create_app(queue, TOKEN)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="websockets-sansio"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    end = time.monotonic() + 20
    while not srv.started and time.monotonic() < end:
        time.sleep(0.02)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", queue
    srv.should_exit = True
    thread.join(timeout=10)
    queue.stop()


def test_the_client_runs_a_job_on_a_real_server_like_a_local_one(server, slow_model):
    from engine.server.client import Client

    url, _ = server
    client = Client(url, TOKEN)
    try:
        assert "telea" in [m.name for m in client.models()]
        img, mask = _image(1)
        previews = []
        res = drive(client.run_job("telea", Request(img, mask, seed=2)), previews.append)
        local = run_to_end(registry.load("telea"), Request(img, mask, seed=2))
        assert np.array_equal(res.image, local.image) and res.model == "telea" and res.seed == 2
        assert previews and previews[-1].box is not None
        # cancel: the remote job stops and the caller gets Cancelled
        cancel = CancelToken()
        gen = client.run_job(slow_model, Request(img, mask, params={"steps": 200, "step_ms": 30.0}), cancel)
        next(gen)
        cancel.cancel()
        with pytest.raises(Cancelled):
            while True:
                next(gen)
        with pytest.raises(InpaintError, match="unknown model"):
            drive(client.run_job("nope", Request(img, mask)))
    finally:
        client.close()
    with pytest.raises(InpaintError, match="lost the connection to the server"):
        Client("http://127.0.0.1:9", TOKEN).models()  # nothing listens on the discard port


def test_eight_clients_times_ten_jobs_all_come_back_right(server):
    """A bounded load test: every result equals the local fill, nothing is lost, the queue stays bounded."""
    from engine.server.client import Client

    url, queue = server
    errors: list[str] = []
    seen_backlog = [0]

    def one_client(k: int) -> None:
        client = Client(url, TOKEN)
        try:
            for j in range(10):
                img, mask = _image(k * 10 + j, 32, 40)
                res = drive(client.run_job("telea", Request(img, mask, seed=j)))
                seen_backlog[0] = max(seen_backlog[0], queue.backlog)
                local = run_to_end(registry.load("telea"), Request(img, mask, seed=j)).image
                if not np.array_equal(res.image, local):
                    errors.append(f"client {k} job {j}: a different fill")
        except Exception as exc:  # noqa: BLE001 (collected and asserted below)
            errors.append(f"client {k}: {type(exc).__name__}: {exc}")
        finally:
            client.close()

    threads = [threading.Thread(target=one_client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert seen_backlog[0] <= queue.max_backlog
