# Image for the API, the writers and the notice worker (docker-compose.yml runs each from it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer: a code change does not reinstall them. The list is read
# from pyproject.toml itself ([project] dependencies), so nothing here names a package or a
# dependency that could drift from it (a hand-made package skeleton once missed notify/ and
# telemetry/, and `pip install .` failed). Versions are those of ops/constraints.txt, the ones the
# tests ran on. tests/test_docker.py replays these steps.
COPY pyproject.toml ops/constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && pip install -c constraints.txt -r requirements.txt \
    && rm requirements.txt constraints.txt

COPY . .
# Editable install: the code runs from /app, so lua/*.lua stay where engine/ expects them.
# --no-deps: they are above; pip check fails the build if that layer does not satisfy them.
RUN pip install --no-deps -e . \
    && pip check
# Not replayed by the test (it would add a user to the machine running it).
RUN useradd --system --uid 10001 app
USER app

EXPOSE 8000
# Shell form so API_WORKERS can be set at run time; `exec` so the server, not the shell, is the
# container's first process and gets `docker stop`'s SIGTERM (a shell would drop it). Compose keeps
# API_WORKERS at 1: each API process must be its own Prometheus target (README, "Metrics and alerts").
CMD exec python -m api --host 0.0.0.0 --port 8000 --workers "${API_WORKERS:-1}"
