# sigil's container image. Build at the repository root:
#   docker build -t sigil:0.1.0 --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#   buildah bud --isolation chroot -t sigil:0.1.0 .        (scripts/test-image.sh builds and tests it)
#
# Stage "build" (Debian 12): the project's own scripts install the build dependencies
# (scripts/deps.sh build) and build the `sigil` target alone, tests off (scripts/build.sh), with
# the same flags as CI; scripts/image-rootfs.sh then lays out the runtime root in /rootfs.
# Last stage (scratch, distroless-style): that root and nothing else: the stripped binary, the
# shared libraries it loads and the loader, Debian's CA bundle, /etc/passwd and /etc/group with
# user sigil (65532). No shell, no package manager, no libc tools: nothing for an intruder to
# use, and the image is only as large as sigil itself (8.5 MiB compressed, 19.6 MiB unpacked). A Debian slim
# runtime would add some 75 MiB of files sigil never opens.
ARG DEBIAN_IMAGE=docker.io/library/debian:bookworm

FROM ${DEBIAN_IMAGE} AS build
WORKDIR /src
# The dependencies first, so this layer is reused until scripts/deps.sh changes; downloaded
# packages are kept in a build cache between builds.
COPY scripts/deps.sh scripts/deps.sh
RUN --mount=type=cache,target=/var/cache/apt/archives,sharing=locked \
    scripts/deps.sh build && rm -rf /var/lib/apt/lists/*
COPY . .
# ccache (installed by deps.sh build) keeps objects in a build cache between builds.
RUN --mount=type=cache,target=/root/.cache/ccache \
    BUILD_DIR=/build TARGETS=sigil scripts/build.sh -DSIGIL_TESTS=OFF -DSIGIL_WERROR=ON \
    && scripts/image-rootfs.sh /build/sigil /rootfs

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
COPY --from=build /rootfs/ /
ENV PATH=/usr/local/bin
# sigil (65532:65532) from the image's /etc/passwd: never root. The Helm chart runs it with the
# same ids, a read-only root filesystem and an emptyDir on /tmp.
USER 65532:65532
ENTRYPOINT ["sigil"]
CMD ["serve", "--config", "/etc/sigil/config.yaml"]
EXPOSE 8443
LABEL org.opencontainers.image.title="sigil" \
      org.opencontainers.image.description="Kubernetes admission webhook that admits a pod only if every image carries a cosign signature the cluster's policies trust" \
      org.opencontainers.image.source="https://github.com/sigil-dev/sigil" \
      org.opencontainers.image.url="https://github.com/sigil-dev/sigil" \
      org.opencontainers.image.documentation="https://github.com/sigil-dev/sigil#install" \
      org.opencontainers.image.vendor="sigil" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="scratch"
