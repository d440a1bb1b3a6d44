# Atelier in a container: a release build, then a small non-root runtime image.
#   docker build -t atelier .
#   docker run -p 8787:8787 -v atelier-data:/data atelier
# Configure with ATELIER_* environment variables or mount a config file and pass
# `--config /etc/atelier/config.toml serve`.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock schema.sql ./
COPY src ./src
COPY prompts ./prompts
COPY benches ./benches
RUN cargo build --release --locked --bin atelier

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin atelier \
    && mkdir -p /data \
    && chown atelier:atelier /data
COPY --from=build /src/target/release/atelier /usr/local/bin/atelier
USER atelier
WORKDIR /data
ENV ATELIER_DATA_DIR=/data \
    ATELIER_SERVER_BIND=0.0.0.0:8787
VOLUME ["/data"]
EXPOSE 8787
# Docker sends SIGTERM: running units get queue.shutdown_grace_secs to finish.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD curl -fsS http://127.0.0.1:8787/healthz || exit 1
ENTRYPOINT ["atelier"]
CMD ["serve"]
