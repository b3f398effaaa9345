# The web app (FastAPI + upload page) on ONNX Runtime: no torch, no Java.
#   make export                                    # model_store/detector.onnx from the default model
#   docker build -f docker/web.Dockerfile -t real-vs-ai-web .
#   docker run --rm -p 8000:8000 --read-only --tmpfs /tmp real-vs-ai-web
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY requirements-serve.txt requirements-nodeps.txt ./
RUN pip install -r requirements-serve.txt \
 && pip install --no-deps -r requirements-nodeps.txt

COPY detector/ detector/
COPY provenance/ provenance/
COPY serving/ serving/
COPY model_store/detector.onnx model_store/detector.onnx

RUN useradd --system --uid 10001 --no-create-home detector
USER 10001

# Listen on every interface inside the container; publish the port only where it should be reached.
ENV DETECTOR_SERVE_MODEL=/app/model_store/detector.onnx \
    DETECTOR_SERVE_HOST=0.0.0.0 \
    DETECTOR_SERVE_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["python", "-m", "serving"]
