# LabelHub: one image for both commands, `labelhub backend` (the default) and `labelhub sync`.
#   docker build -t labelhub .
#   docker run -p 9090:9090 -e LABEL_STUDIO_URL=... -e LABEL_STUDIO_API_KEY=... labelhub
#   docker run -e LABELHUB_REPO=owner/dataset -e LABELHUB_PROJECT=1 ... labelhub sync
# See docker-compose.yml for the whole stack beside Label Studio, and README.md "Docker".
FROM python:3.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_DISABLE_TELEMETRY=1

# git: `labelhub sync --repo <local path>` reads and writes local repositories with it
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

# The CPU build of torch first, from PyTorch's CPU index: the default index has CUDA builds (GBs).
# Its version satisfies pyproject.toml's torch pin, so the next step keeps it.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

WORKDIR /app
COPY pyproject.toml README.md ./
COPY backend ./backend
COPY sync ./sync
COPY labelhub ./labelhub
# Everything pyproject.toml declares in [project] dependencies (the embedders ship inside their packages)
RUN pip install . && python -c "import labelhub.cli, labelhub.backend.app"

RUN useradd --create-home --uid 10001 --user-group labelhub \
    && mkdir -p /data/models /data/sync /data/hf /data/repos /data/cache \
    && chown -R labelhub:labelhub /data
USER labelhub

ENV MODEL_DIR=/data/models \
    LABELHUB_STATE=/data/sync/sync.sqlite3 \
    HF_HOME=/data/hf \
    LABELHUB_CACHE=/data/cache \
    LABELHUB_HOST=0.0.0.0 \
    LABELHUB_WEBHOOK_HOST=0.0.0.0 \
    LABELHUB_HEALTH_URL=http://127.0.0.1:9090/health

EXPOSE 9090 9091

# The backend answers /health on 9090; the sync's webhook receiver answers /health on 9091
# (set LABELHUB_HEALTH_URL=http://127.0.0.1:9091/health for the sync container).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['LABELHUB_HEALTH_URL'], timeout=4)"]

ENTRYPOINT ["labelhub"]
CMD ["backend"]
