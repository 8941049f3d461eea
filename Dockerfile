# fulcrum container image.
#
#   docker build -t fulcrum .
#   docker run --rm -p 8080:8080 fulcrum                     # the demo, on 0.0.0.0:8080
#   docker run -d --name edge -p 8080:8080 \
#       -v $PWD/my.yaml:/etc/fulcrum/fulcrum.yaml:ro fulcrum # your own config
#   docker kill -s HUP edge                                  # zero-downtime reload of my.yaml
#   docker stop -t 30 edge                                   # drain, then stop
#
# PID 1 is `fulcrum supervise`: it runs fulcrum in the background and outlives the process
# swap of a reload (docs/operations.md, "Docker").

# Stage 1: the release binary, built with the `dist` profile (fat LTO). Pingora's zlib-ng
# build needs cmake.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# Dependencies first, on stand-in sources: this layer is rebuilt only when Cargo.toml or
# Cargo.lock change, not at every change to src/. Every target Cargo.toml names needs a file.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches bench \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && for f in benches/selection.rs benches/twins.rs bench/select_count.rs \
             bench/bare_pingora.rs bench/grpc_backend.rs; do echo 'fn main() {}' > "$f"; done \
 && cargo build --profile dist --locked --bin fulcrum \
 && rm -rf src target/dist/fulcrum target/dist/deps/fulcrum-* target/dist/deps/libfulcrum-* target/dist/.fingerprint/fulcrum-*

# Then fulcrum itself.
COPY src src
RUN cargo build --profile dist --locked --bin fulcrum \
 && strip target/dist/fulcrum

# Stage 2: a slim runtime with the binary and the example configs, run as an unprivileged
# user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin fulcrum
COPY --from=build /src/target/dist/fulcrum /usr/local/bin/fulcrum
COPY conf/ /etc/fulcrum/
RUN cp /etc/fulcrum/docker.yaml /etc/fulcrum/fulcrum.yaml
USER fulcrum
EXPOSE 8080
# The admin listener's /health, asked by fulcrum itself (no curl in the image): 200 once
# fulcrum serves and every upstream group has a backend that can take traffic.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/fulcrum", "health", "-c", "/etc/fulcrum/fulcrum.yaml"]
# The supervisor passes SIGTERM on: fulcrum stops accepting, finishes in-flight requests
# (grace_period_seconds), then exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/fulcrum", "supervise"]
CMD ["-c", "/etc/fulcrum/fulcrum.yaml"]
