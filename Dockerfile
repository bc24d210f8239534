# Build stage: the same scripts/build.sh that CI runs (CGO_ENABLED=0,
# -trimpath, version ldflags from prometheus/common/version).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION
ARG REVISION=unknown
ARG BRANCH=unknown
RUN VERSION="${VERSION:-$(cat VERSION)}" REVISION="${REVISION}" BRANCH="${BRANCH}" \
    ./scripts/build.sh /out/authbroker_exporter

# Final stage: static, non-root, nothing but the binary. It runs as
# 65532:65532 unless `docker run --user` says otherwise: an ordinary 0600
# broker token file is readable by its owner only, so README's docker run
# runs as the file's owner (see "Install").
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="authbroker_exporter" \
      org.opencontainers.image.description="Prometheus exporter and health monitor for the oh-my-pi auth-broker" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/authbroker_exporter /bin/authbroker_exporter
USER nonroot:nonroot
EXPOSE 8766
ENTRYPOINT ["/bin/authbroker_exporter"]
