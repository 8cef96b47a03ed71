# Open Clanker container image: one static binary in an empty (`scratch`) image.
#
# Two ways to build it (docs/DEPLOY.md has the details):
#
#  1. Compile inside a Rust image (needs access to a container registry and crates.io):
#       docker build -t open-clanker .
#
#  2. Package a static binary built on the host; nothing is pulled (this is what CI does):
#       RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
#         cargo build --release --locked --target x86_64-unknown-linux-gnu -p open-clanker
#       podman build --format docker --build-arg BINARY_FROM=prebuilt -t open-clanker .
#     (`docker build --build-arg BINARY_FROM=prebuilt ...` works the same way.)
#     `--format docker` keeps the HEALTHCHECK: the OCI image format has no field for it.
#
# Only the stage named by BINARY_FROM is built: BuildKit and buildah (podman) skip stages the
# final image does not use, so with BINARY_FROM=prebuilt the Rust image is never pulled.
#
# TLS: the binary carries its own CA roots (reqwest with rustls + webpki-roots) and resolves names
# itself (hickory-dns), so the image needs no /etc/ssl, no libc resolver and no shell.

# "compile" (default) or "prebuilt".
ARG BINARY_FROM=compile
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm

# --- path 1: compile a static binary in a Rust image ----------------------------------------
FROM ${RUST_IMAGE} AS compile
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY . .
# crt-static links glibc statically; the host's own target triple keeps this working on arm64.
RUN set -eux; \
    target="$(rustc -vV | sed -n 's/^host: //p')"; \
    RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
        cargo build --release --locked --target "$target" -p open-clanker; \
    mkdir -p /out; \
    cp "target/$target/release/open-clanker" /out/open-clanker; \
    /out/open-clanker --version

# --- path 2: a binary already built on the host ---------------------------------------------
FROM scratch AS prebuilt
# Relative to the build context; .dockerignore lets only this file of target/ through.
ARG OPEN_CLANKER_BIN=target/x86_64-unknown-linux-gnu/release/open-clanker
COPY ${OPEN_CLANKER_BIN} /out/open-clanker

# --- the binary, from whichever path was chosen ---------------------------------------------
FROM ${BINARY_FROM} AS binary

# An empty stage: copying its root creates empty directories with a chosen owner, which a
# scratch image cannot otherwise do (it has no shell for `mkdir`).
FROM scratch AS empty

# --- the runtime image ----------------------------------------------------------------------
FROM scratch
COPY --from=binary /out/open-clanker /open-clanker
# /data holds the SQLite database (open-clanker.db and its -wal/-shm files). It must exist in the
# image, owned by the runtime user, so that a fresh Docker volume mounted there is writable.
COPY --from=empty --chown=10001:10001 / /data/
# SQLite's temporary files (large sorts, VACUUM); Kubernetes mounts an emptyDir here because the
# root filesystem is read-only there.
COPY --from=empty --chown=10001:10001 / /tmp/

ENV OPEN_CLANKER_LISTEN=0.0.0.0:18789 \
    OPEN_CLANKER_DATA_DIR=/data \
    OPEN_CLANKER_LOG_FORMAT=json \
    OPEN_CLANKER_ADDR=http://127.0.0.1:18789

# A numeric user: there is no /etc/passwd in the image, and Kubernetes' runAsNonRoot can only
# check a numeric one.
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 18789

# `open-clanker health` asks the gRPC health service (OPEN_CLANKER_ADDR) and exits 0 when it
# answers SERVING; it gives up after 6 s.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["/open-clanker", "health"]

# The gateway drains open streams on SIGTERM (gateway.shutdown_grace_secs, default 10 s), so give
# `docker stop` more than that: `docker stop -t 15` / terminationGracePeriodSeconds.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/open-clanker"]
CMD ["gateway"]
