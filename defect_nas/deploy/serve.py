"""``defect-nas serve``: the stand-alone predictor behind a small HTTP service for the line
(FastAPI on uvicorn: ``pip install 'defect-nas[serve]'``).

- ``POST /predict``: an image's bytes as the body, or a multipart form with a ``file`` field; JSON
  back: class, probability, every class's probability, the OK/NG decision, the model version, ms.
- ``GET /health``: the model, its version, the runtime and the operating point.

A bad upload gets a 4xx with a one-line reason; the service goes on. (No ``from __future__ import
annotations`` here: FastAPI reads the endpoint's annotations at run time to find the ``Request``.)"""

import hashlib
import time
from typing import Any

from defect_nas.core.errors import DataError, DefectNasError
from defect_nas.deploy.predictor import Predictor

MAX_UPLOAD_BYTES = 64 * 2**20  # a 16-bit 4k x 4k TIFF is 32 MB; beyond this is not an inspection image


def model_version(predictor: Predictor) -> str:
    """The first 12 hex digits of the model file's SHA-256: which weights answered, in every reply."""
    return hashlib.sha256(predictor.file.read_bytes()).hexdigest()[:12]


def create_app(predictor: Predictor) -> Any:
    """The FastAPI application around one loaded predictor."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse
        from starlette.concurrency import run_in_threadpool
    except ImportError:
        raise DefectNasError("serve needs FastAPI and uvicorn: pip install 'defect-nas[serve]'") from None
    from defect_nas import __version__

    version = model_version(predictor)
    app = FastAPI(title="defect-nas", version=__version__)

    def refuse(status: int, reason: str) -> JSONResponse:
        return JSONResponse(status_code=status, content={"error": reason})

    @app.get("/health")
    def health() -> dict:
        op = predictor.operating_point
        return {"status": "ok", "model": str(predictor.folder), "model_version": version, **predictor.ran,
                "labels": list(predictor.labels),
                "operating_point": None if op is None else {"mode": op.mode, "thresholds": op.thresholds}}

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        start = time.perf_counter()
        if int(request.headers.get("content-length") or 0) > MAX_UPLOAD_BYTES:
            return refuse(413, f"upload larger than {MAX_UPLOAD_BYTES // 2**20} MB: send one image")
        name = "upload"
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form()
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                return refuse(400, "multipart upload without a 'file' field: send the image as file=@IMAGE")
            name, data = upload.filename or name, await upload.read()
        else:
            data = await request.body()
        if not data:
            return refuse(400, "empty body: POST the image's bytes, or a multipart form with a 'file' field")
        try:
            x = predictor.read(data, name)
        except DataError as e:
            return refuse(415, str(e))
        p = (await run_in_threadpool(predictor.classify, x, [name]))[0]
        return {"label": p.label, "probability": p.probability, "probabilities": p.probabilities,
                "decision": p.decision, "model_version": version, "runtime": predictor.ran["runtime"],
                "ms": 1000 * (time.perf_counter() - start)}

    return app


def run_server(predictor: Predictor, host: str, port: int) -> None:
    """Serve until stopped (Ctrl-C or SIGTERM: uvicorn closes the port cleanly)."""
    app = create_app(predictor)
    import uvicorn

    print(f"serving {predictor.folder} ({predictor.ran['file']}, {predictor.ran['runtime']}) on "
          f"http://{host}:{port}  (POST /predict, GET /health)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
