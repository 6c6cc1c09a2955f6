"""imagefit serve: the app in-process (predictions, batching, limits, metadata) and the page in a real browser."""

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import COLOURS, colour_image
from fastapi.testclient import TestClient
from PIL import Image

from imagefit.prediction.loading import predict

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _png(colour, seed=0) -> bytes:
    buffer = io.BytesIO()
    colour_image(colour, seed=seed).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module", params=["onnx", "torch"])
def client(tiny_run, request, tmp_path_factory):
    from imagefit.serving import create_app

    run = tmp_path_factory.mktemp("serve") / "run"
    shutil.copytree(tiny_run, run)
    with TestClient(create_app(run, backend=request.param, max_wait_ms=200)) as test_client:
        test_client.run = run
        yield test_client


def test_predictions_equal_imagefit_predict(client, tmp_path):
    images = {name: _png(colour, seed=i) for i, (name, colour) in enumerate(COLOURS.items()) if name != "green"}
    for name, data in images.items():
        (tmp_path / f"{name}.png").write_bytes(data)
    answer = client.post("/predict", files=[("files", (f"{n}.png", d, "image/png")) for n, d in images.items()])
    assert answer.status_code == 200, answer.text
    served = {p["name"]: {t["label"]: t["probability"] for t in p["top"]} for p in answer.json()["predictions"]}
    offline = predict(client.run, [tmp_path / f"{name}.png" for name in images])
    for path, row in zip(offline.paths, offline.probabilities, strict=True):
        name = path.rsplit("/", 1)[-1]
        for label, probability in zip(offline.classes, row, strict=True):
            assert served[name][label] == pytest.approx(float(probability), abs=2e-5)


def test_json_with_base64_is_answered_too(client):
    payload = {"images": [{"name": "r.png", "data": base64.b64encode(_png(COLOURS["red"])).decode()}]}
    answer = client.post("/predict", json=payload)
    assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] == "red"


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_requests_that_wait_for_a_running_batch_go_together_and_each_gets_its_own_answer(tiny_run, backend, tmp_path):
    from imagefit.serving import create_app

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)  # the ONNX backend exports into the run folder: not into the shared one
    wanted = ["red", "blue"] * 4
    app = create_app(run, backend=backend, max_batch=len(wanted) - 1, max_wait_ms=60_000)
    answers = [None] * len(wanted)
    started, release = threading.Event(), threading.Event()
    with TestClient(app) as batched:
        batcher = app.state.batcher
        model_fn = batcher.model_fn

        def held_first(batch):  # the first batch holds the model until the others are waiting
            if not started.is_set():
                started.set()
                release.wait(timeout=300)
            return model_fn(batch)

        batcher.model_fn = held_first

        def ask(index):
            data = _png(COLOURS[wanted[index]], seed=50 + index)
            answers[index] = batched.post("/predict", files={"files": (f"{index}.png", data, "image/png")}).json()

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(wanted))]
        threads[0].start()
        assert started.wait(timeout=300), "the first picture runs at once, alone"
        for thread in threads[1:]:
            thread.start()
        deadline = time.monotonic() + 300
        while batcher._queue.qsize() < len(wanted) - 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # until the other 7 pictures wait (an event, the deadline a guard)
        release.set()
        for thread in threads:
            thread.join()
        batches = {int(k): v for k, v in batched.get("/metadata").json()["batches"].items()}
    assert [a["predictions"][0]["name"] for a in answers] == [f"{i}.png" for i in range(len(wanted))]
    assert [a["predictions"][0]["label"] for a in answers] == wanted, "no answer went to another caller"
    assert batches == {1: 1, len(wanted) - 1: 1}, "the pictures that waited ran as one batch"


def test_a_picture_that_finds_the_model_idle_runs_without_waiting_for_a_batch():
    import asyncio

    from imagefit.serving.batcher import Batcher

    async def ask():
        batcher = Batcher(lambda batch: np.ones((len(batch), 2)) / 2, max_batch=32, max_wait_ms=600_000)
        answer = await asyncio.wait_for(batcher.predict(np.zeros((1, 3, 4, 4), np.float32)), timeout=60)
        await batcher.stop()
        return answer, dict(batcher.sizes)

    answer, sizes = asyncio.run(ask())
    assert answer.tolist() == [0.5, 0.5] and sizes == {1: 1}, "a 10-minute batch wait was not waited"


def test_bad_uploads_get_a_4xx_json_error_naming_the_file(client):
    corrupt = client.post("/predict", files={"files": ("broken.jpg", b"\xff\xd8\xff not a jpeg", "image/jpeg")})
    assert corrupt.status_code == 422 and corrupt.json()["file"] == "broken.jpg"
    buffer = io.BytesIO()
    Image.new("L", (20000, 10000)).save(buffer, format="PNG")  # over twice PIL's pixel limit
    bomb = client.post("/predict", files={"files": ("bomb.png", buffer.getvalue(), "image/png")})
    assert bomb.status_code == 413 and "decompression-bomb" in bomb.json()["error"]
    huge = client.post("/predict", files={"files": ("huge.png", b"0" * (21 * 2**20), "image/png")})
    assert huge.status_code == 413 and "limit" in huge.json()["error"]
    plain = client.post("/predict", content=b"hello", headers={"content-type": "text/plain"})
    assert plain.status_code == 415


def test_metadata_matches_the_run_folder(client):
    facts = client.get("/metadata").json()
    config = json.loads((client.run / "config.json").read_text())
    assert facts["labels"] == json.loads((client.run / "labels.json").read_text())
    assert facts["input_size"] == config["inference"]["preprocess"]["size"]
    assert facts["model"] == config["recipe"]["model"]["model"] and facts["run"] == "run"
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/openapi.json").json()["paths"].keys() >= {"/predict", "/explain", "/health", "/metadata"}


def test_explain_returns_a_png_overlay(client):
    answer = client.post("/explain", files={"files": ("r.png", _png(COLOURS["red"]), "image/png")})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(answer.content)).size[0] > 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)")
@pytest.mark.parametrize("key", ["", "s3cret-key"])
def test_the_page_shows_the_label_and_the_overlay_in_a_real_browser(tiny_run, tmp_path, key):
    from playwright.sync_api import sync_playwright

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "imagefit.cli", "serve", str(tiny_run), "--port", str(port), "--backend", "torch"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "IMAGEFIT_API_KEY": key},
    )
    picture = tmp_path / "blue.png"
    picture.write_bytes(_png(COLOURS["blue"], seed=7))
    try:
        _wait_for(port, server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
            )
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            if key:  # the page asks for the key, then sends it with every call
                page.wait_for_selector("#keybox:not([hidden])")
                page.fill("#key", key)
                page.click("#keybox button")
            page.wait_for_function("document.getElementById('summary').textContent.includes('classes')")
            page.set_input_files("#pick", str(picture))
            page.wait_for_selector(".card .label", timeout=60_000)
            assert page.inner_text(".card .label") == "blue"
            page.wait_for_selector(".card img.overlay", timeout=60_000)
            width = page.eval_on_selector(".card img.overlay", "img => img.naturalWidth")
            page.screenshot(path=str(tmp_path / "page.png"))
            browser.close()
        assert width > 0, "the Grad-CAM overlay decoded in the page"
    finally:
        server.terminate()
        server.wait(timeout=30)
    said = server.stderr.read().decode()
    assert ("API key required" in said) == bool(key)
    assert not key or key not in said, "the key is never printed or logged"


def test_a_key_guards_every_call_but_the_page_and_health(tiny_run, tmp_path):
    from imagefit.serving import create_app

    run = shutil.copytree(tiny_run, tmp_path / "run")
    with TestClient(create_app(run, backend="onnx", api_key="s3cret")) as client:
        assert client.get("/").status_code == 200 and client.get("/health").status_code == 200
        refused = client.get("/metadata")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert "API key" in refused.json()["error"]
        assert client.get("/metadata", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/metadata", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/metadata", headers={"X-API-Key": "s3cret!"}).status_code == 401
        files = [("files", ("r.png", _png(COLOURS["red"]), "image/png"))]
        assert client.post("/predict", files=files).status_code == 401
        answered = client.post("/predict", files=files, headers={"X-API-Key": "s3cret"})
        assert answered.status_code == 200 and answered.json()["predictions"][0]["label"] == "red"


def test_serving_beyond_loopback_needs_a_key(tiny_run):
    from imagefit.errors import UserError
    from imagefit.serving import check_exposure

    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert "loopback only" in check_exposure(host, None)
    assert "API key required" in check_exposure("0.0.0.0", "k")
    for host in ("0.0.0.0", "192.168.1.20", "my-host.example"):
        with pytest.raises(UserError, match="--api-key"):
            check_exposure(host, None)
    refused = subprocess.run(
        [sys.executable, "-m", "imagefit.cli", "serve", str(tiny_run), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "IMAGEFIT_API_KEY"},
    )
    assert refused.returncode == 2 and "--api-key" in refused.stderr and "Traceback" not in refused.stderr


def _wait_for(port: int, server, seconds: float = 120) -> None:
    """Until the server answers /health (it is an event, not a sleep: the loop polls the socket)."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server stopped: {server.stderr.read().decode()[-1500:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("the server did not come up")


def test_served_probabilities_sum_to_one(client):
    answer = client.post(
        "/predict", files={"files": ("g.png", _png(COLOURS["green"]), "image/png")}, params={"top_k": 5}
    )
    total = sum(t["probability"] for t in answer.json()["predictions"][0]["top"])
    assert np.isclose(total, 1.0, atol=1e-4)


def test_a_taken_port_is_one_line_before_the_model_loads(tiny_run):
    import socket

    from imagefit.errors import UserError
    from imagefit.serving import check_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} on 127.0.0.1 is in use"):
            check_port("127.0.0.1", port)
        refused = subprocess.run(
            [sys.executable, "-m", "imagefit.cli", "serve", str(tiny_run), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert refused.returncode == 2 and "is in use" in refused.stderr and "Traceback" not in refused.stderr
    with pytest.raises(UserError, match="not a port"):
        check_port("127.0.0.1", 70000)
