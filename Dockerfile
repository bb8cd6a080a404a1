# diaproto: the Dia streaming service (synthetic voice by default; see docs/operations.md).
#   docker build -t diaproto .
#   docker run --rm -p 8000:8000 diaproto
# Configure with DIAPROTO_* variables (docker run -e DIAPROTO_LOG_FORMAT=json ...) or a TOML
# file (-e DIAPROTO_CONFIG=/etc/diaproto.toml); secrets through *_FILE variables, e.g.
# DIAPROTO_MCP_TOKEN_FILE=/run/secrets/mcp_token.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
RUN pip install ".[serve]" \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin diaproto \
    && cd / && rm -rf /src

WORKDIR /
USER 10001:10001
EXPOSE 8000

# No curl in the slim image: the standard library asks /healthz (on DIAPROTO_PORT if set;
# urlopen raises on any status but 2xx, and the check fails).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; p = os.environ.get('DIAPROTO_PORT', ''); urllib.request.urlopen('http://127.0.0.1:' + (p if p.isdigit() else '8000') + '/healthz', timeout=4)"]

CMD ["diaproto", "serve", "--host", "0.0.0.0"]
