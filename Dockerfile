# syntax=docker/dockerfile:1
# pimgate: a release build on Debian 12 (bookworm), run on distroless cc-debian12 (same glibc), as uid 65532.
#
#   docker build -t pimgate:0.1.0 .
#
# The release build command appears here twice, identically (dependency layer, then the service), and is
# the command `scripts/bench-evaluate.sh` and README.md (Deploy) use: tests/deploy.rs keeps them equal.
# The builder's Rust version is the one CI tests with (tests/deploy.rs compares it with `rustc`).

FROM rust:1.95-bookworm AS build
WORKDIR /src

# 1. Dependencies only: this layer is rebuilt when Cargo.toml or Cargo.lock change, not when src/ does.
#    A stub crate with the same targets (the bench target must exist for the manifest to load).
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/fanout.rs \
    && cargo build --release --locked --bin pimgate \
    && rm -rf src

# 2. The service. `touch` makes the real sources newer than the stub's build outputs, whatever mtimes
#    COPY kept, so cargo cannot mistake the stub binary for an up-to-date one.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin pimgate

FROM gcr.io/distroless/cc-debian12:nonroot
# Distroless cc: glibc, libgcc and the CA certificates reqwest's rustls reads from the system store;
# no shell, no package manager. Nothing is written to the filesystem (audit to stdout, logs to stderr),
# so the root filesystem can be mounted read-only.
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
ENTRYPOINT ["/usr/local/bin/pimgate"]
CMD ["serve", "--config", "/etc/pimgate/config.toml"]
