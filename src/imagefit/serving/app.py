"""The HTTP app: /predict, /explain, /health, /metadata, the page at /, and FastAPI's OpenAPI docs."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import io
import time
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from imagefit.data.decode import UNREADABLE, image_from_bytes, unreadable_reason
from imagefit.prediction.batches import decode_size, image_views
from imagefit.serving.backend import Backend, load_backend
from imagefit.serving.batcher import Batcher

MAX_REQUEST_BYTES = 20 * 2**20  # a request larger than this is refused with 413
MAX_IMAGES = 64  # pictures in one request
OPEN_PATHS = ("/", "/health")  # answered without the API key: the page (it asks for the key) and liveness
PAGE = Path(__file__).with_name("page.html")


class Refused(Exception):
    """A request the server will not answer: its status, the message and the file it concerns."""

    def __init__(self, status: int, message: str, file: str = ""):
        super().__init__(message)
        self.status, self.message, self.file = status, message, file


def create_app(
    model: str | Path,
    *,
    backend: str = "auto",
    max_batch: int = 32,
    max_wait_ms: float = 10,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    api_key: str | None = None,
) -> FastAPI:
    """The app serving MODEL (a run or ensemble folder, an .onnx file, an exported ensemble's JSON); batching of
    concurrent requests on (an ensemble: each member batches its own inputs, the answers are summed with the
    weights).

    With API_KEY, every path but OPEN_PATHS answers 401 unless the request carries it (`X-API-Key: KEY` or
    `Authorization: Bearer KEY`), compared in constant time.
    """
    from starlette.formparsers import MultiPartParser

    # Uploads stay in memory up to the request limit: the server never writes them to disk.
    MultiPartParser.spool_max_size = max_request_bytes
    loaded = load_backend(model, backend=backend)
    batchers = [Batcher(p.probabilities, max_batch=max_batch, max_wait_ms=max_wait_ms) for p, _ in loaded.parts]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        for batcher in batchers:
            await batcher.start()
        yield
        for batcher in batchers:
            await batcher.stop()

    app = FastAPI(title="imagefit", version=loaded.facts["imagefit_version"], lifespan=lifespan)
    app.state.backend, app.state.batcher, app.state.batchers = loaded, batchers[0], batchers

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"error": exc.message, "file": exc.file}, status_code=exc.status)

    _add_guards(app, api_key, max_request_bytes)
    _add_routes(app, loaded, batchers, max_request_bytes)
    return app


def _add_guards(app: FastAPI, api_key: str | None, max_request_bytes: int) -> None:
    """The API key (when given) and the request size limit, checked before any route runs."""

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if api_key and request.url.path not in OPEN_PATHS and not _has_key(request, api_key):
            message = "missing or wrong API key: send it as X-API-Key: KEY or Authorization: Bearer KEY"
            return JSONResponse({"error": message, "file": ""}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    @app.middleware("http")
    async def limit_size(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_request_bytes:
            message = f"request of {int(declared)} bytes is over the {max_request_bytes} byte limit"
            return JSONResponse({"error": message, "file": ""}, status_code=413)
        return await call_next(request)


def _has_key(request: Request, api_key: str) -> bool:
    """Whether the request carries API_KEY, compared in constant time (hmac.compare_digest)."""
    given = request.headers.get("x-api-key", "")
    bearer = request.headers.get("authorization", "")
    if not given and bearer.lower().startswith("bearer "):
        given = bearer[7:].strip()
    return hmac.compare_digest(given.encode("utf-8"), api_key.encode("utf-8"))


def _add_routes(app: FastAPI, loaded: Backend, batchers: list[Batcher], limit: int) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return PAGE.read_text(encoding="utf-8")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "backend": loaded.name}

    @app.get("/metadata")
    async def metadata() -> dict:
        return {**loaded.facts, "backend": loaded.name, "batches": dict(batchers[0].sizes)}

    @app.post("/predict")
    async def predict(request: Request, top_k: int = 3) -> dict:
        """Top-k labels with probabilities for each image (multipart files, or JSON with base64 data)."""
        started = time.perf_counter()
        uploads = await _uploads(request, limit)
        classes, parts = loaded.predictor.classes, loaded.parts
        models = [p for p, _ in parts]
        # Decoding in threads (PIL releases the GIL) overlaps other requests' decoding and the model's batches.
        pictures = await asyncio.gather(*(asyncio.to_thread(_views, name, data, models) for name, data in uploads))
        views = [(name, picture) for (name, _), picture in zip(uploads, pictures, strict=True)]
        decoded = time.perf_counter()
        results = await asyncio.gather(*(_weighted(batchers, parts, v) for _, v in views))  # one batch where they fit
        return {
            "predictions": [
                _answer(name, p, classes, top_k, getattr(loaded.predictor, "thresholds", None))
                for (name, _), p in zip(views, results, strict=True)
            ],
            "timing_ms": {
                "decode": round((decoded - started) * 1000, 2),
                "total": round((time.perf_counter() - started) * 1000, 2),
            },
            "backend": loaded.name,
        }

    @app.post("/explain")
    async def explain(request: Request) -> Response:
        """A Grad-CAM overlay (PNG) of the first image, for the predicted class (PyTorch)."""
        if loaded.run is None:
            raise Refused(400, "Grad-CAM needs one run folder: serve RUN, not its .onnx file nor an ensemble")
        (name, data), *_ = await _uploads(request, limit)
        return Response(await _overlay(loaded, name, data), media_type="image/png")


async def _uploads(request: Request, limit: int) -> list[tuple[str, bytes]]:
    """(name, bytes) of every picture in a multipart form (any file field) or JSON {"images": [...]}."""
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        form = await request.form(max_files=MAX_IMAGES, max_part_size=limit)
        files = [value for _, value in form.multi_items() if hasattr(value, "read")]
        uploads = [(f.filename or f"file{i}", await f.read()) for i, f in enumerate(files)]
    elif kind.startswith("application/json"):
        body = await request.body()
        if len(body) > limit:
            raise Refused(413, f"request of {len(body)} bytes is over the {limit} byte limit")
        try:
            items = (await request.json())["images"]
            uploads = [
                (item.get("name", f"image{i}"), base64.b64decode(item["data"], validate=True))
                for i, item in enumerate(items)
            ]
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise Refused(422, 'JSON must be {"images": [{"name": "a.jpg", "data": "<base64>"}, ...]}') from None
    else:
        raise Refused(415, "send images as multipart/form-data files or as JSON with base64 data")
    if not uploads:
        raise Refused(422, "no image in the request")
    if len(uploads) > MAX_IMAGES:
        raise Refused(413, f"{len(uploads)} images in one request; at most {MAX_IMAGES}")
    return uploads


def _views(name: str, data: bytes, predictors: list) -> list[np.ndarray]:
    """Each predictor's test-time views [V, 3, H, W] of one picture, decoded once for each size they need."""
    images, views = {}, []
    for predictor in predictors:
        size = decode_size(predictor.preprocess, predictor.tta_n)
        if size not in images:
            try:
                images[size] = image_from_bytes(data, min_size=size)
            except UNREADABLE as exc:
                reason = unreadable_reason(exc)
                raise Refused(413 if "pixels" in reason else 422, f"{name}: {reason}", name) from None
        views.append(np.stack(image_views(images[size], predictor.preprocess, predictor.tta_n)))
    return views


async def _weighted(batchers: list[Batcher], parts: list, views: list[np.ndarray]) -> np.ndarray:
    """One picture's probabilities: each model's (in its own batches), summed with the weights."""
    outputs = await asyncio.gather(*(b.predict(v) for b, v in zip(batchers, views, strict=True)))
    if len(outputs) == 1:
        return outputs[0]
    return sum(weight * output for (_, weight), output in zip(parts, outputs, strict=True)).astype(np.float32)


def _answer(name: str, probabilities: np.ndarray, classes: list[str], top_k: int, thresholds=None) -> dict:
    """The top-k labels; for a multi-label run also every label above its threshold."""
    order = np.argsort(-probabilities)[: max(1, top_k)]
    answer = {
        "name": name,
        "label": classes[int(order[0])],
        "top": [{"label": classes[int(i)], "probability": round(float(probabilities[i]), 6)} for i in order],
    }
    if thresholds is not None:
        answer["labels"] = [c for c, p, t in zip(classes, probabilities, thresholds, strict=True) if p >= t]
    return answer


async def _overlay(loaded: Backend, name: str, data: bytes) -> bytes:
    from PIL import Image

    from imagefit.models.trained import load_trained
    from imagefit.prediction.gradcam import gradcam
    from imagefit.runs import load_run

    try:
        picture = image_from_bytes(data)
    except UNREADABLE as exc:
        raise Refused(422, f"{name}: {unreadable_reason(exc)}", name) from None
    if loaded.explainer is None:  # the PyTorch model, loaded on the first /explain
        run = load_run(loaded.run)
        loaded.explainer = (load_trained(run), run.preprocess, run.classes)
    model, preprocess, classes = loaded.explainer

    def draw() -> bytes:
        ((overlay, _, _),) = gradcam(model, preprocess, [picture], classes)
        buffer = io.BytesIO()
        Image.fromarray(overlay).save(buffer, format="PNG")
        return buffer.getvalue()

    return await asyncio.to_thread(draw)
