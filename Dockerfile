# syntax=docker/dockerfile:1
#
# roster's container image: a release build with the toolchain Cargo.toml asks for, on a
# distroless runtime (glibc, CA certificates, no shell) as a non-root user.
#
#   docker build -t roster:0.1.0 .
#   docker run --rm -p 50051:50051 -p 9090:9090 \
#     -e ROSTER_DATABASE_URL=postgres://roster:...@db:5432/roster -e ROSTER_API_SECRETS=... \
#     roster:0.1.0
#
# Without ROSTER_DATABASE_URL the server uses an SQLite file in /data (the working directory):
# mount a volume there to keep it. Kubernetes: see helm/roster.

# The builder and the runtime must share a Debian release (the binary links the builder's glibc):
# rust:*-trixie pairs with distroless *-debian13.
ARG RUST_VERSION=1.95
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian13:nonroot

FROM rust:${RUST_VERSION}-slim-trixie AS build
WORKDIR /src
COPY . .
# Protobuf files are compiled by protox in build.rs (no protoc); SQLite and ring need only the
# C compiler the slim image already has.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin roster \
 && install -D -m 0755 target/release/roster /out/roster \
 && install -d -m 0750 /out/data

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="roster" \
      org.opencontainers.image.description="Self-hosted user-management service over gRPC" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/roster /usr/local/bin/roster
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
# distroless's `nonroot` user, numeric so that Kubernetes can verify runAsNonRoot.
USER 65532:65532
ENV ROSTER_LOG_FORMAT=json
# gRPC (ROSTER_LISTEN) and Prometheus metrics at /metrics (ROSTER_METRICS_LISTEN).
EXPOSE 50051 9090 3030
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/roster", "healthcheck", "--addr", "http://127.0.0.1:50051"]
ENTRYPOINT ["/usr/local/bin/roster"]
CMD ["serve"]
