# The one image for every role: `chatgptes worker` (default), `chatgptes sim`, the producer CLI.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies and code first, examples last: editing a prompt file does not reinstall.
COPY pyproject.toml README.md ./
COPY contract ./contract
COPY producer ./producer
COPY worker ./worker
COPY simulator ./simulator
COPY chatgptes ./chatgptes
RUN pip install . && chatgptes --help >/dev/null
COPY examples ./examples

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin chatgptes
USER chatgptes

# No ENTRYPOINT: compose and `docker run IMAGE chatgptes ...` name the whole command.
CMD ["chatgptes", "worker"]
