# syntax=docker/dockerfile:1
# pimgate: a release build on Debian 12 (bookworm), run on distroless cc-debian12 (same glibc), as uid 65532.
#
#   docker build -t pimgate:0.1.0 .        (scripts/image.sh builds, runs and checks it)
#
# The dependency layer is cargo-chef's (recipe -> cook -> build). A hand-written stub crate has to
# repeat every target the manifest declares, and it silently fell behind (three benches were added to
# Cargo.toml, not to the stub, and the build stopped at once); cargo-chef derives the skeleton (every
# manifest, the lock, a stub per declared target) from the manifest itself, so it cannot fall behind.
# `planner` computes recipe.json from the manifests; `build` cooks the dependencies from it (a layer
# rebuilt only when the recipe changes, i.e. when Cargo.toml or Cargo.lock do, not when src/ does), then
# builds the service. cargo-chef masks the crate's own version in the skeleton, so the cooked stub is
# never mistaken for the service.
#
# The service build command is the one `scripts/bench-evaluate.sh` and README.md (Deploy) use, and the
# cook uses the same flags: tests/deploy.rs keeps them equal. The builder's Rust version is the one CI
# tests with (tests/deploy.rs compares it with `rustc`). tests/image_context replays these stages in the
# build context .dockerignore lets through, without a container engine.

FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
# 1. Dependencies only: cached as long as recipe.json is unchanged.
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --bin pimgate --recipe-path recipe.json
# 2. The service (the manifest declares the benches, so they must be there for it to load; the
#    console's askama templates are compiled into the binary).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY templates ./templates
COPY benches ./benches
RUN cargo build --release --locked --bin pimgate

FROM gcr.io/distroless/cc-debian12:nonroot
# Distroless cc: glibc, libgcc and the CA certificates reqwest's rustls reads from the system store;
# no shell, no package manager. Nothing is written to the filesystem (audit to stdout, logs to stderr),
# so the root filesystem can be mounted read-only. The binary is stripped (Cargo.toml, profile.release).
COPY --from=build /src/target/release/pimgate /usr/local/bin/pimgate
# The baked-in configuration is a starting point: mount a ConfigMap over /etc/pimgate/config.toml and
# /etc/pimgate/rules, or override keys with PIMGATE__SECTION__KEY variables. The shipped rules are
# examples: two of them read HR and on-call files that only config/example.toml configures, so here
# they load with warnings and those checks count as "could not be evaluated". Replace them.
COPY config/production.toml /etc/pimgate/config.toml
COPY rules/ /etc/pimgate/rules/
ENV PIMGATE__RULES__PATH=/etc/pimgate/rules
USER 65532:65532
EXPOSE 8080
# admin.listen (config/production.toml): /healthz, /readyz, /metrics; never published to PIM
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/pimgate"]
CMD ["serve", "--config", "/etc/pimgate/config.toml"]
