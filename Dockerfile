# syntax=docker/dockerfile:1
# grambot in a container (docs/deploy.md):
#   docker build -t grambot .                       every built-in's SDK (EXTRAS=all)
#   docker build --build-arg EXTRAS=telegram,anthropic -t grambot .
# The workspace (.scout/: settings, state, plugin data) is the volume /workspace. Secrets are
# never in the image: mount them as files (GRAMBOT_SECRETS_DIR, see compose.yaml) or pass
# GRAMBOT_SECRET__<instanceId>__<key> variables at run time.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/grambot
WORKDIR /src
COPY pyproject.toml README.md ./
COPY grambot ./grambot
COPY builtin_plugins ./builtin_plugins
# Which optional dependency groups (the built-in plugins' SDKs) to install; empty for none.
ARG EXTRAS=all
RUN python -m venv "$VIRTUAL_ENV" \
 && "$VIRTUAL_ENV/bin/pip" install ".${EXTRAS:+[$EXTRAS]}"

FROM python:${PYTHON_VERSION}-slim
ENV VIRTUAL_ENV=/opt/grambot \
    PATH=/opt/grambot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GRAMBOT_WORKSPACE=/workspace
RUN useradd --system --uid 10001 --user-group --home-dir /workspace --no-create-home grambot \
 && mkdir /workspace \
 && chown grambot:grambot /workspace \
 && chmod 0700 /workspace
COPY --from=build /opt/grambot /opt/grambot
USER 10001:10001
WORKDIR /workspace
VOLUME /workspace
# grambot shuts down in order on SIGTERM within --shutdown-timeout; give it that plus 15 s
# (docker stop -t 75, compose's stop_grace_period) before SIGKILL.
STOPSIGNAL SIGTERM
# Liveness (docs/health.md): 0 while the engine runs and its event loop is not frozen.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD grambot status --check >/dev/null || exit 1
ENTRYPOINT ["grambot"]
CMD ["run", "--shutdown-timeout", "60"]
