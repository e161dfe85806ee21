# agent-exporter, the agent that runs next to an EMQX cluster, as a
# container image.
#
#   docker build -f deploy/docker/agent-exporter.Dockerfile -t agent-exporter:dev .   (from the repository root)
#
# Run it beside EMQX with EMQX's log directory mounted read-only at
# /opt/emqx/log (for --emqx-log-collection-dir) and a volume for
# /var/lib/agent-exporter (credential and read offsets). It runs as uid/gid
# 1000, the emqx user of the official EMQX image, so it can read EMQX's log
# files. Register with:
#
#   docker exec -it <agent container> agent-exporter register --ecp-url … --token … \
#     --username … --dashboard-url … --api-url http://<emqx>:18083
#
# (the password prompt needs -it; or use --password-file). The daemon logs
# to standard error, as containers do; --log.file in CMD changes that.

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
ARG TARGETARCH
ENV CGO_ENABLED=0
RUN GOARCH=${TARGETARCH} GOARM=7 go build -trimpath \
      -ldflags "-s -w -X github.com/ecpio/ecp/internal/version.Version=${VERSION} -X github.com/ecpio/ecp/internal/version.Revision=${REVISION}" \
      -o /out/usr/local/bin/agent-exporter ./agent-exporter \
 && mkdir -p /out/var/lib/agent-exporter /out/tmp \
 && chmod 0700 /out/var/lib/agent-exporter \
 && chmod 1777 /out/tmp \
 && printf 'emqx:x:1000:1000:emqx:/nonexistent:/sbin/nologin\n' > /out/etc-passwd \
 && printf 'emqx:x:1000:\n' > /out/etc-group

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/etc-passwd /etc/passwd
COPY --from=build /out/etc-group /etc/group
COPY --from=build /out/tmp /tmp
COPY --from=build /out/usr /usr
COPY --from=build --chown=1000:1000 /out/var/lib/agent-exporter /var/lib/agent-exporter
USER 1000:1000
VOLUME ["/var/lib/agent-exporter"]
ENTRYPOINT ["/usr/local/bin/agent-exporter"]
CMD ["run", "--web.listen-address=127.0.0.1:9733", "--state.dir=/var/lib/agent-exporter", "--log.file=-"]
