# Image for the API and the writers (docker-compose.yml runs both from it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer: a code change does not reinstall them. The throwaway
# package skeleton lets pip resolve pyproject.toml before the sources are copied.
COPY pyproject.toml ./
RUN mkdir -p engine geo api writers stores loadtest lua \
    && pip install . \
    && pip uninstall -y fulfillment \
    && rm -rf build *.egg-info engine geo api writers stores loadtest lua

COPY . .
# Editable install: the code runs from /app, so lua/*.lua stay where engine/ expects them.
RUN pip install --no-deps -e . \
    && useradd --system --uid 10001 app
USER app

EXPOSE 8000
# Shell form so API_WORKERS can be set at run time.
CMD granian --interface asgi --host 0.0.0.0 --port 8000 --workers "${API_WORKERS:-1}" --loop uvloop api.app:app
