# The outroute image: the CLI, the workers and the SDK (for one-off jobs such as backfills).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY producer_sdk ./producer_sdk
COPY stream_workers ./stream_workers
RUN pip install --no-cache-dir . && useradd --system outroute
USER outroute
ENTRYPOINT ["outroute"]
CMD ["--help"]
