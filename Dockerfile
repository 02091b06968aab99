# One image for all five services; the pod's command picks the service:
#   eventmgr serve api|ingest|matcher|dispatcher|scheduler   (and `eventmgr migrate` as a Job)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 EM_HOST=0.0.0.0
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir . && useradd --system --uid 10001 eventmgr
USER 10001
EXPOSE 8000 8001 8002 8003 8004
ENTRYPOINT ["eventmgr"]
CMD ["serve", "api"]
