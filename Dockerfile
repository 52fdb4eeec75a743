# The bidder's container image. Build from the project root:
#   docker build -t bidder .
#   docker run --rm -p 8000:8000 bidder        (or the whole local stack: docker/compose.yaml)
# Settings come from BIDDER_* variables (README, "Configuration"), e.g. -e BIDDER_WORKERS=4.

# Both stages start from the same interpreter, so the virtualenv built in the first one runs
# unchanged in the second.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# gcc compiles the default model's trees once, here; the final image ships the compiled
# library and no compiler.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY requirements/ ./requirements/
# Only the locked pins, each checked against its hashes, and only wheels: nothing is built
# from a source distribution whose build could run arbitrary code.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: \
        -r requirements/runtime.lock \
    && python -m pip install --no-cache-dir --require-hashes --only-binary=:all: \
        -r requirements/build.lock
COPY pyproject.toml setup.py README.md ./
COPY src ./src
# The project's own wheel, built with the locked setuptools, its C modules compiled by the
# gcc above (the build fails if they are not there); its dependencies are all in the lock
# already, and `pip check` fails the build if one is missing.
RUN python -m pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps /wheels/*.whl \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/python -c "import bidder.recording._speedups, bidder.scoring._rowwise"
# The same settings as the final stage's, so the library lands under the name the bidder
# looks for (the model's hash); a model mounted later without one is scored by GTIL.
ENV BIDDER_COMPILE_CACHE_DIR=/opt/bidder/compiled
RUN /opt/venv/bin/python -c "from bidder.scoring import EmbeddedScorer; from bidder.settings import load_settings; settings = load_settings(); scorer = EmbeddedScorer.from_path(settings.model_path, compile_cache=settings.compile_cache_dir); assert scorer.backend == 'compiled', scorer.backend"

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin bidder
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/bidder/compiled /opt/bidder/compiled
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BIDDER_HOST=0.0.0.0 \
    BIDDER_PORT=8000 \
    BIDDER_WORKERS=1 \
    BIDDER_METRICS_PORT=9100 \
    BIDDER_COMPILE_CACHE_DIR=/opt/bidder/compiled
USER bidder
# Bids and health on 8000; /metrics on its own port (the containers' convention, which
# docker/compose.yaml's Prometheus scrapes), so scrapes never queue behind bids.
EXPOSE 8000 9100
# The slim image has no curl; urlopen raises on a refused connection or a non-2xx answer,
# and an uncaught exception exits 1, which is what Docker reads as unhealthy.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('BIDDER_PORT', '8000') + '/healthz', timeout=2)"]
# Exec form: the server is PID 1 and gets SIGTERM itself, so it drains before exiting.
ENTRYPOINT ["bidder", "serve"]
