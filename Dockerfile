# syntax=docker/dockerfile:1
# The oauthimap service as a container image (docs/packaging.md). Build and run:
#
#   docker build -t oauthimap .
#   docker run -d --name oauthimap -p 127.0.0.1:8080:8080 -v oauthimap-data:/var/lib/oauthimap \
#       -e OAUTHIMAP_EXTERNAL_BASE_URL=https://oauthimap.example.com oauthimap
#   docker exec oauthimap oauthimap admin create admin      # any CLI command, as the service user
#
# Configuration: OAUTHIMAP_* environment variables (docs/configuration.md), or a TOML file
# mounted at /etc/oauthimap/oauthimap.toml. Secrets from files (Docker/Kubernetes secrets):
# OAUTHIMAP_DATABASE_URL_FILE and OAUTHIMAP_MASTER_KEY_FILE; /metrics' token:
# OAUTHIMAP_METRICS__TOKEN_FILE. The data (SQLite database and master.key) is in the volume
# /var/lib/oauthimap: back it up whole. The debug info of the binary, which the image leaves out:
#
#   docker build --target debug-info --output type=local,dest=debug-info .

ARG RUST_VERSION=1.95.0

# --- Build --------------------------------------------------------------------------------------
# The image's toolchain is the one rust-toolchain.toml pins (keep RUST_VERSION equal to it); that
# file is not copied in, so rustup does not fetch clippy and rustfmt, which a build does not need.
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# bench/ is a workspace member: cargo needs its manifest and sources to load the workspace.
COPY bench/Cargo.toml ./bench/
COPY bench/src ./bench/src
# Two binaries: the small front `oauthimap` (answers `oauthimap token` from the service) and the
# main program `oauthimap-main` beside it, which the front becomes for everything else. The
# release profile keeps line tables (debug = "line-tables-only"); they are split into
# NAME.debug (zlib-compressed, found through .gnu_debuglink) and the binaries are stripped.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p oauthimap \
    && mkdir -p /out \
    && for bin in oauthimap oauthimap-main; do \
        objcopy --only-keep-debug --compress-debug-sections=zlib target/release/$bin /out/$bin.debug \
        && objcopy --strip-debug --strip-unneeded --add-gnu-debuglink=/out/$bin.debug \
            target/release/$bin /out/$bin || exit 1; \
    done \
    && /out/oauthimap --version

# `docker build --target debug-info --output type=local,dest=DIR .` writes DIR/*.debug.
FROM scratch AS debug-info
COPY --from=build /out/oauthimap.debug /out/oauthimap-main.debug /

# --- Runtime ------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# ca-certificates: TLS to the providers and IMAP servers. curl: the health check (oauthimap has no
# subcommand for it). tini: PID 1, forwarding signals and reaping what command sinks leave behind.
# Not pinned: a rebuild picks up Debian's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl tini \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid, so a bind-mounted data folder can be prepared: chown 10001:10001 DIR.
RUN groupadd --system --gid 10001 oauthimap \
    && useradd --system --uid 10001 --gid oauthimap --home-dir /var/lib/oauthimap \
        --no-create-home --shell /usr/sbin/nologin oauthimap \
    && install -d -m 0700 -o oauthimap -g oauthimap /var/lib/oauthimap
COPY --from=build /out/oauthimap /out/oauthimap-main /usr/bin/

# Listening on all addresses needs OAUTHIMAP_EXTERNAL_BASE_URL, the URL users reach the service
# at (the OAuth redirect URL derives from it): `serve` refuses to start without it.
ENV OAUTHIMAP_DATA_DIR=/var/lib/oauthimap \
    OAUTHIMAP_LISTEN=0.0.0.0:8080
VOLUME ["/var/lib/oauthimap"]
WORKDIR /var/lib/oauthimap
USER 10001:10001
EXPOSE 8080

# /healthz on the port of OAUTHIMAP_LISTEN (so it follows a changed port), over loopback.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["sh", "-c", "curl -fsS --max-time 4 -o /dev/null \"http://127.0.0.1:${OAUTHIMAP_LISTEN##*:}/healthz\""]

ENTRYPOINT ["/usr/bin/tini", "--", "/usr/bin/oauthimap"]
CMD ["serve"]
