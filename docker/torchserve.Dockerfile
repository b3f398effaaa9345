# TorchServe with the detector's archive (ONNX Runtime in the worker), Java 17, CPU-only torch.
#   make archive                                   # model_store/detector.mar
#   docker build -f docker/torchserve.Dockerfile -t real-vs-ai-torchserve .
#   docker run --rm -p 127.0.0.1:8080:8080 -p 127.0.0.1:7070:7070 real-vs-ai-torchserve
#   docker exec <container> cat /srv/torchserve/key_file.json   # the tokens
# Inference (REST 8080, gRPC 7070) listens on every interface inside the container; management and
# metrics stay on the container's loopback: use them with `docker exec`, or change TS_* below on purpose.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /srv/torchserve
COPY requirements-serve.txt requirements-nodeps.txt requirements-torchserve.txt ./
# TorchServe's BaseHandler imports torch: take the CPU build, not PyPI's CUDA one (several GB).
RUN pip install torch==2.14.1 --index-url https://download.pytorch.org/whl/cpu \
 && pip install -r requirements-serve.txt -r requirements-torchserve.txt \
 && pip install --no-deps -r requirements-nodeps.txt

COPY torchserve/ torchserve/
COPY model_store/detector.mar model_store/detector.mar

RUN useradd --system --uid 10001 --home-dir /srv/torchserve torchserve \
 && chown -R torchserve /srv/torchserve
USER 10001

ENV TS_INFERENCE_ADDRESS=http://0.0.0.0:8080 \
    TS_GRPC_INFERENCE_ADDRESS=0.0.0.0
EXPOSE 8080 7070
CMD ["torchserve", "--start", "--foreground", "--ts-config", "torchserve/config.properties", \
     "--model-store", "model_store", "--ncs"]
