# pulse: one image for pulsed (the default command), pulse-web, pulse-ops
# and pulse-worker. Build: docker build -t pulse .
# Pinned base; bump deliberately.
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml setup.py setup.cfg README.md LICENSE ./
COPY migrations migrations
COPY pulsed pulsed
COPY pulse_client pulse_client
COPY pulse_ops pulse_ops
COPY pulse_web pulse_web
RUN python -m venv /opt/pulse \
 && /opt/pulse/bin/pip install --no-cache-dir --no-compile . \
 && /opt/pulse/bin/python -m compileall -q /opt/pulse/lib

FROM python:3.11.11-slim-bookworm
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin pulse
COPY --from=build /opt/pulse /opt/pulse
ENV PATH=/opt/pulse/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PULSE_GRPC_ADDR=0.0.0.0:50051 \
    PULSE_UI_HOST=0.0.0.0
USER pulse
EXPOSE 50051 8080
# SERVING only once migrations ran and the database answers.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "pulsed.healthcheck"]
STOPSIGNAL SIGTERM
CMD ["pulsed"]
