# syntax=docker/dockerfile:1
# One image for all five services; the pod's command picks the service:
#   eventmgr serve api|ingest|matcher|dispatcher|scheduler   (and `eventmgr migrate` as a Job)
# Dependencies are exactly uv.lock's runtime set (hash-checked): no dev tools, no embedded
# PostgreSQL or broker (the `embedded` extra), so the image needs EM_DATABASE_URL and
# EM_KAFKA_BOOTSTRAP. Build: docker build -t event-manager .

# --- builder: every wheel the runtime needs, and the project's own wheel ------------------------
FROM python:3.11-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# uv at the version uv.lock pins (the Makefile's UV_VERSION); it only turns the lock into a
# hashed requirements file. Every runtime dependency ships wheels for linux x86_64 and aarch64,
# so no compiler is needed even here.
RUN pip install --no-cache-dir uv==0.13.9
COPY pyproject.toml uv.lock README.md ./
RUN uv export --frozen --no-dev --no-emit-project --format requirements-txt --output-file requirements.txt \
 && pip wheel --no-cache-dir --require-hashes --requirement requirements.txt --wheel-dir /wheels
COPY shared ./shared
COPY services ./services
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /project .

# --- runtime: slim, non-root, nothing to build with ----------------------------------------------
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    EM_HOST=0.0.0.0 EM_DATA_DIR=/var/lib/eventmgr
# The wheels are bind-mounted from the builder, never copied into a layer. pip, setuptools and
# wheel leave afterwards: nothing installs at run time.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    --mount=type=bind,from=builder,source=/project,target=/project \
    --mount=type=bind,from=builder,source=/src/requirements.txt,target=/tmp/requirements.txt \
    pip install --no-cache-dir --no-index --find-links=/wheels --require-hashes --requirement /tmp/requirements.txt \
 && pip install --no-cache-dir --no-index --no-deps /project/*.whl \
 && pip uninstall --yes pip setuptools wheel \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin eventmgr \
 && install -d -o 10001 -g 10001 /var/lib/eventmgr
WORKDIR /var/lib/eventmgr
USER 10001:10001
EXPOSE 8000 8001 8002 8003 8004
ENTRYPOINT ["eventmgr"]
CMD ["serve", "api"]
