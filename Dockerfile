# syntax=docker/dockerfile:1
# snapsweep's container: a static binary on distroless, run as non-root.
# Build: docker build --build-arg VERSION=$(git describe --always --dirty) -t IMAGE .
# (deploy/cloudbuild.yaml does this on Cloud Build; scripts/container-check.sh
# checks the same binary locally, without a Docker engine.)

FROM golang:1.26 AS builder
ARG VERSION=dev
WORKDIR /src
# Modules first: this layer is reused while go.mod and go.sum do not change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /snapsweep ./cmd/snapsweep

# distroless/static has CA certificates and tzdata, no shell; :nonroot runs
# as uid/gid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="snapsweep" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder /snapsweep /snapsweep
USER nonroot
# Cloud Run sets PORT; 8080 is the default the service listens on.
EXPOSE 8080
ENTRYPOINT ["/snapsweep"]
CMD ["serve"]
