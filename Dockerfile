# fulcrum container image.
#
#   docker build -t fulcrum .
#   docker run --rm -p 8080:8080 fulcrum                    # the demo, on 0.0.0.0:8080
#   docker run --rm -p 8080:8080 -v $PWD/my.yaml:/etc/fulcrum/fulcrum.yaml \
#       fulcrum -c /etc/fulcrum/fulcrum.yaml                 # your own config
#
# Stage 1 builds the release binary; pingora's zlib-ng build needs cmake.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin fulcrum \
 && strip target/release/fulcrum

# Stage 2: a slim runtime with the binary and the example configs.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin fulcrum
COPY --from=build /src/target/release/fulcrum /usr/local/bin/fulcrum
COPY conf/ /etc/fulcrum/
USER fulcrum
EXPOSE 8080
# Pingora treats SIGTERM as "stop accepting, finish in-flight requests, exit".
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/fulcrum"]
CMD ["-c", "/etc/fulcrum/docker.yaml"]
