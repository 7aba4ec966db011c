# The line's service: the stand-alone predictor behind HTTP, without torch or the search (222 MB of
# packages instead of a full install's 6 GB, measured in a venv). The model folder is mounted, not built in:
#   docker build -t defect-nas-serve .
#   docker run -p 8000:8000 -v "$PWD/results/neu-100m/winner:/model:ro" defect-nas-serve
#   curl -F file=@part.png http://localhost:8000/predict
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY defect_nas ./defect_nas
# --no-deps: the package's own dependencies are the search's (torch, optuna, ...); the predictor needs these
RUN pip install --no-cache-dir --no-deps . \
 && pip install --no-cache-dir numpy pillow onnxruntime fastapi uvicorn python-multipart
EXPOSE 8000
CMD ["python", "-m", "defect_nas.deploy", "/model", "--host", "0.0.0.0", "--port", "8000"]
