# syntax=docker/dockerfile:1.7
# Ferrum's images, one target each: broker, namesrv, operator, tools (ferrumctl).
#
#   docker build --target broker -t ferrum/broker:dev .
#
# The base images are build arguments so machines without a registry can pass locally made
# ones (hack/images/bases.sh; `make images` does this with podman). The runtime base must
# provide glibc and libgcc_s and run as 65532; every binary writes only below the volumes
# the operator mounts (/data, and /etc/ferrum read-only), so a read-only root filesystem
# works.
#
# BINARIES picks where the four binaries come from:
#   source    (default) the `build` stage compiles them with cargo inside the builder image
#   prebuilt  the context's prebuilt/ directory holds ferrum-broker, ferrum-namesrv,
#             ferrum-operator and ferrumctl, built on a glibc host no newer than the runtime
#             base's (hack/images/build.sh does this with a cargo target dir kept between
#             runs, so a rebuild compiles only what changed); the build stage is skipped
# buildah 1.28 resolves `FROM binaries-${BINARIES}` only when BINARIES is passed with
# --build-arg, so hack/images/build.sh always passes it.
ARG BUILDER_IMAGE=docker.io/library/rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARIES=source

FROM ${BUILDER_IMAGE} AS build
# Lets hack/images/build.sh find and prune superseded build-stage images.
LABEL dev.ferrum.stage=build
WORKDIR /src
COPY . .
# One cargo invocation for all four binaries: the dependency graph is compiled once. The
# registry and target directory are cache mounts, so a rebuild only recompiles what changed;
# the binaries are copied out of the cache mount because it is not part of the layer.
RUN --mount=type=cache,id=ferrum-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=ferrum-cargo-target,target=/src/target \
    cargo build --release --locked \
      -p ferrum-broker -p ferrum-namesrv -p ferrum-operator -p ferrum-client --bins \
 && mkdir -p /out \
 && for b in ferrum-broker ferrum-namesrv ferrum-operator ferrumctl; do \
      cp "target/release/$b" /out/ && strip --strip-debug "/out/$b"; \
    done

FROM build AS binaries-source

FROM scratch AS binaries-prebuilt
COPY prebuilt/ferrum-broker prebuilt/ferrum-namesrv prebuilt/ferrum-operator prebuilt/ferrumctl /out/

FROM binaries-${BINARIES} AS binaries

FROM ${RUNTIME_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.vendor="Ferrum" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/ferrum-mq/ferrum" \
      org.opencontainers.image.url="https://github.com/ferrum-mq/ferrum"
USER 65532:65532

FROM runtime AS broker
LABEL org.opencontainers.image.title="ferrum-broker" \
      org.opencontainers.image.description="Ferrum broker: RocketMQ-compatible message store and remoting server"
COPY --from=binaries /out/ferrum-broker /usr/local/bin/ferrum-broker
EXPOSE 10911 10909 10912
ENTRYPOINT ["/usr/local/bin/ferrum-broker"]

FROM runtime AS namesrv
LABEL org.opencontainers.image.title="ferrum-namesrv" \
      org.opencontainers.image.description="Ferrum NameServer: RocketMQ-compatible route registry"
COPY --from=binaries /out/ferrum-namesrv /usr/local/bin/ferrum-namesrv
EXPOSE 9876
ENTRYPOINT ["/usr/local/bin/ferrum-namesrv"]

FROM runtime AS operator
LABEL org.opencontainers.image.title="ferrum-operator" \
      org.opencontainers.image.description="Ferrum Kubernetes operator (BrokerGroup, Topic)"
COPY --from=binaries /out/ferrum-operator /usr/local/bin/ferrum-operator
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ferrum-operator"]
CMD ["run"]

FROM runtime AS tools
LABEL org.opencontainers.image.title="ferrumctl" \
      org.opencontainers.image.description="ferrumctl: admin, produce/consume and bench CLI for Ferrum"
COPY --from=binaries /out/ferrumctl /usr/local/bin/ferrumctl
ENTRYPOINT ["/usr/local/bin/ferrumctl"]
