# The serving image: calsurr's base install (no torch) running `calsurr serve` on a mounted repository.
#   docker build -t calsurr .
#   docker run -p 8001:8001 -v $PWD/repository:/models:ro calsurr
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Built from a source folder that is removed after the install: run from it, `python -m calsurr...` would find
# the source's calsurr/ (which holds neither service/ nor training/: setuptools maps them in) before the install.
WORKDIR /opt/calsurr-src
COPY pyproject.toml README.md ./
COPY calsurr ./calsurr
COPY service ./service
COPY training ./training
RUN pip install . && cd / && rm -rf /opt/calsurr-src && useradd --create-home --uid 10001 calsurr

USER calsurr
WORKDIR /home/calsurr
# gRPC (Open Inference Protocol, health, reflection); Prometheus metrics at /metrics
EXPOSE 8001 8002
VOLUME ["/models"]
ENV CALSURR_REPO=/models CALSURR_HOST=0.0.0.0 CALSURR_PORT=8001
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s CMD ["python", "-m", "calsurr.service.healthcheck", "127.0.0.1:8001"]
ENTRYPOINT ["calsurr", "serve"]
