/**
 * `mcpgw serve --role all`: the whole product in one process (native mode and containers): the
 * state store, authz (gRPC, loopback), the gateway (/mcp aggregator + admin API, loopback) and the
 * front on the public port — the real Envoy when it is installed, else the built-in front, which
 * calls authz's Check handler in process rather than over gRPC.
 */
import { writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { overlayServiceStates, recordPolicyRevision } from '../admin/index.js';
import { ServiceStateStore } from '../admin/services.js';
import { followPolicyRevisions } from '../authz/policy-follower.js';
import { createAuthzRuntime } from '../authz/runtime.js';
import { startAuthzServer, type AuthzServer } from '../authz/server.js';
import { homePaths } from '../config/home.js';
import { startBuiltinFront } from '../front/builtin.js';
import { superviseEnvoy } from '../front/envoy-supervisor.js';
import type { Logger } from '../log.js';
import { openStore, type Layer2Store } from '../state/index.js';
import type { SecretsConfig } from '../vault/index.js';
import { shutdownSteps, singleService, startGatewayRole } from './gateway-role.js';

export interface ServeAllOptions {
  home: string;
  policyFile: string;
  listen: { host: string; port: number };
  authzPort: number;
  gatewayPort: number;
  /** auto: Envoy when `envoyBin` is given, else the built-in front. */
  front: { kind: 'envoy'; envoyBin: string } | { kind: 'builtin' };
  logger: Logger;
  drainSeconds: number;
  /** No-prefix mode: the policy must name exactly one service; tool names travel unchanged. */
  noPrefix?: boolean;
  /** Where backend credentials live (default: builtin, encrypted in the state store). */
  secrets?: SecretsConfig;
}

export interface RunningGateway {
  readonly url: string;
  readonly ports: { front: number; authz: number; gateway: number };
  readonly frontKind: 'envoy' | 'builtin';
  readonly store: Layer2Store;
  /** Re-reads the policy file; a broken file keeps the running policy. */
  reloadPolicy(): ReturnType<Awaited<ReturnType<typeof createAuthzRuntime>>['reloadPolicy']>;
  close(): Promise<void>;
}

export async function serveAll(o: ServeAllOptions): Promise<RunningGateway> {
  const log = o.logger;
  const paths = homePaths(o.home);
  await mkdir(paths.run, { recursive: true, mode: 0o700 });
  const { closers, closeAll } = shutdownSteps(log);
  // Envoy takes about a second to start: with fixed ports it needs nothing from the steps below,
  // so it starts alongside them (it answers 503 until authz and the gateway listen, and the ready
  // file is written only after everything is up).
  const fixedPorts = o.authzPort !== 0 && o.gatewayPort !== 0;
  const earlyEnvoy =
    o.front.kind === 'envoy' && fixedPorts
      ? superviseEnvoy({
          envoyBin: o.front.envoyBin,
          runDir: paths.run,
          config: {
            listen: o.listen,
            authz: { host: '127.0.0.1', port: o.authzPort },
            gateway: { host: '127.0.0.1', port: o.gatewayPort },
          },
          logger: log,
        })
      : null;
  const closeEarlyEnvoy = async (): Promise<void> => {
    const front = await earlyEnvoy?.catch(() => null);
    await front?.close();
  };
  if (earlyEnvoy) {
    // A failure is reported where it is awaited; a failed start closes it.
    earlyEnvoy.catch(() => undefined);
    closers.push(closeEarlyEnvoy);
  }
  try {
    const store = await openStore({ home: o.home, logger: log });
    closers.push(() => store.close());
    const services = new ServiceStateStore(store.db);
    const noPrefixService = o.noPrefix ? await singleService(o.policyFile) : null;
    const runtime = await createAuthzRuntime({
      noPrefixService,
      home: o.home,
      store,
      policyFile: o.policyFile,
      logger: log,
      overlay: async (data) => overlayServiceStates(data, await services.list()),
    });
    closers.push(() => runtime.close());
    const active = runtime.policy.active;
    if (noPrefixService !== null && Object.keys(active.policy.services ?? {}).join() !== noPrefixService) {
      throw new Error('no-prefix mode needs a policy with exactly one service');
    }
    await recordPolicyRevision(store, {
      source: active.text,
      file: o.policyFile,
      compiled: active.compiled,
      createdBy: null,
    });

    const authz: AuthzServer = await startAuthzServer({
      address: `127.0.0.1:${o.authzPort}`,
      check: (v) => runtime.check(v),
      logger: log,
      drainSeconds: o.drainSeconds,
    });
    closers.push(() => authz.drain());

    const gateway = await startGatewayRole({
      host: '127.0.0.1',
      port: o.gatewayPort,
      policy: runtime.policy,
      store,
      identities: store.identity,
      keys: { sessionKey: runtime.sessionKey, requestMacKey: runtime.requestMacKey, keyRing: runtime.keyRing },
      keyDir: paths.keys,
      logger: log,
      noPrefix: noPrefixService !== null,
      ...(o.secrets ? { secrets: o.secrets } : {}),
      services,
      refreshOverlay: () => runtime.policy.refreshOverlay(),
      closers,
    });
    // Calls are answered by this process's gateway: audit rows written behind wait for a moment
    // with none in flight (within their bound) instead of holding the thread during one.
    store.setBusyProbe(() => gateway.postsInFlight > 0);
    // Another replica (or the admin API here) switched a service: re-apply the overlay.
    const stopWatch = await services.watch(() => void runtime.policy.refreshOverlay());
    closers.push(stopWatch);
    // Another replica applied a policy; this process's own apply is already in force (a no-op).
    closers.push(await followPolicyRevisions({ store, holder: runtime.policy, logger: log }));

    const frontConfig = {
      listen: o.listen,
      authz: { host: '127.0.0.1', port: authz.port },
      gateway: { host: '127.0.0.1', port: gateway.port },
    };
    let front: { port: number; close(): Promise<void> };
    if (earlyEnvoy) {
      front = await earlyEnvoy;
      // From here it closes first, like a front started last: no new requests during the drain.
      closers.splice(closers.indexOf(closeEarlyEnvoy), 1);
    } else if (o.front.kind === 'envoy') {
      front = await superviseEnvoy({ envoyBin: o.front.envoyBin, runDir: paths.run, config: frontConfig, logger: log });
    } else {
      // authz and the gateway run in this process: the front's Checks are function calls (no
      // grpc-js client and server, no protobuf per request) and its requests to the gateway go
      // over in-memory sockets; the gRPC service and the gateway's port stay up for health checks
      // and any other caller.
      front = await startBuiltinFront(frontConfig, {
        check: (req) => authz.check(req),
        connectGateway: () => gateway.connectInProcess(),
      });
    }
    closers.push(() => front.close());

    const url = `http://${o.listen.host}:${front.port}/mcp`;
    const ports = { front: front.port, authz: authz.port, gateway: gateway.port };
    writeFileSync(paths.ready, `${JSON.stringify({ pid: process.pid, url, ports, front: o.front.kind })}\n`, {
      mode: 0o600,
    });
    log.info({ url, ports, front: o.front.kind, revision: active.engine.revision }, 'mcpgw ready');
    return { url, ports, frontKind: o.front.kind, store, reloadPolicy: () => runtime.reloadPolicy(), close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
