# Eventide: one static-ish binary. Build: docker build -t eventide .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p eventide && strip target/release/eventide

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/eventide /usr/local/bin/eventide
ENV EVENTIDE_DATA_DIR=/data EVENTIDE_HTTP=0.0.0.0:4080
VOLUME /data
EXPOSE 4080
HEALTHCHECK --interval=5s --timeout=3s CMD curl -sf http://127.0.0.1:4080/healthz || exit 1
ENTRYPOINT ["eventide"]
CMD ["serve"]
