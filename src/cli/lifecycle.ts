/**
 * `mcpgw up`, `down`, `status`: the native mode runs one `mcpgw serve --role all` in the
 * background under MCPGW_HOME (pid file, log file, ready file written by the server itself); the
 * Docker mode is src/cli/docker.ts.
 *
 * Only light modules are imported up front: `status` and `down` must answer quickly, and the
 * config reader pulls in the secret stores and the embedded database.
 */
import { spawn } from 'node:child_process';
import { existsSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { homePaths, type HomePaths } from '../config/home.js';
import { downDocker, readMarker, upDocker } from './docker.js';
import { CliError, EXIT } from './exit.js';
import { FIRST_AGENT } from './init-answers.js';
import type { InitResult } from './init.js';
import { progress } from './tty.js';

export { EXIT } from './exit.js';
export { dockerEngineAnswers } from './docker.js';

export interface ReadyInfo {
  pid: number;
  url: string;
  ports: { front: number; authz: number; gateway: number };
  front: 'envoy' | 'builtin';
}

export function readPid(paths: HomePaths): number | null {
  try {
    const pid = Number(readFileSync(paths.pid, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

export function readReady(paths: HomePaths): ReadyInfo | null {
  try {
    return JSON.parse(readFileSync(paths.ready, 'utf8')) as ReadyInfo;
  } catch {
    return null;
  }
}

export interface UpResult {
  url: string;
  /** The background process (native mode); null in a container. */
  pid: number | null;
  mode: 'native' | 'docker';
  /** The container's name (Docker mode). */
  container?: string;
  front: 'envoy' | 'builtin';
  /** Where to read the logs: a file, or a `docker logs` command line. */
  logFile: string;
  alreadyRunning: boolean;
  /** Things the person should know about this start (printed before the summary). */
  notices: string[];
  /** Set when `up` initialized a new installation: the keys, shown this once. */
  init?: InitResult;
}

export class LifecycleError extends CliError {
  constructor(message: string, exitCode: (typeof EXIT)[keyof typeof EXIT] = EXIT.failed) {
    super(message, exitCode);
    this.name = 'LifecycleError';
  }
}

export const KEYCLOAK_NOT_RUN =
  "auth.mode is keycloak, but `mcpgw up` does not start Keycloak yet: the gateway authenticates with the API keys from `mcpgw init` until it does (to verify your IdP's tokens today, run `mcpgw serve --role authz --jwks-url … --jwt-issuer … --jwt-audience …` behind your Envoy)";

const binPath = fileURLToPath(new URL('../../bin/mcpgw.js', import.meta.url));

/** The installation's settings, read lazily (the reader loads the secret stores). */
async function loadConfig(
  home: string,
  init: boolean,
): Promise<{ init?: InitResult; keycloak: boolean; host: string; port: number }> {
  const paths = homePaths(home);
  let result: InitResult | undefined;
  if (!existsSync(paths.config)) {
    if (!init) throw new LifecycleError(`not initialized (${paths.config} missing): run \`mcpgw init\` first`);
    const { initInstallation } = await import('./init.js');
    result = await initInstallation({ home, preset: 'openclaw', force: false });
  }
  const { readConfig } = await import('../config/config-file.js');
  const cfg = await readConfig(paths.config); // a broken config fails here, with its file and field
  return {
    ...(result ? { init: result } : {}),
    keycloak: cfg.auth.mode === 'keycloak',
    host: cfg.listen.host,
    port: cfg.listen.port,
  };
}

/** Starts the gateway in the background and waits until front, authz and database are up. */
export async function upNative(opts: {
  home: string;
  init: boolean;
  timeoutMs?: number;
  quiet?: boolean;
}): Promise<UpResult> {
  const paths = homePaths(opts.home);
  const cfg = await loadConfig(opts.home, opts.init);
  const init = cfg.init;
  const notices = cfg.keycloak ? [KEYCLOAK_NOT_RUN] : [];
  const running = readPid(paths);
  if (running !== null && alive(running)) {
    const ready = readReady(paths);
    if (ready && ready.pid === running) {
      return {
        url: ready.url,
        pid: running,
        mode: 'native',
        front: ready.front,
        logFile: paths.log,
        alreadyRunning: true,
        notices,
      };
    }
  }
  await mkdir(paths.logs, { recursive: true, mode: 0o700 });
  await mkdir(paths.run, { recursive: true, mode: 0o700 });
  rmSync(paths.ready, { force: true });
  const log = openSync(paths.log, 'a', 0o600);
  // No load balancer watches this process's health: the front in the same process closes first
  // on SIGTERM, so a NOT_SERVING grace period would only make `mcpgw down` wait (in-flight checks
  // still finish).
  const child = spawn(process.execPath, [binPath, 'serve', '--role', 'all', '--drain-seconds', '0'], {
    detached: true,
    stdio: ['ignore', log, log],
    env: { ...process.env, MCPGW_HOME: opts.home },
  });
  const pid = child.pid;
  if (pid === undefined) throw new LifecycleError('could not start the gateway process');
  writeFileSync(paths.pid, `${pid}\n`, { mode: 0o600 });
  child.unref();

  const spin = progress('Starting the gateway (database, authz, front)', { quiet: opts.quiet === true });
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  while (Date.now() < deadline) {
    const ready = readReady(paths);
    if (ready && ready.pid === pid) {
      spin.stop();
      return {
        url: ready.url,
        pid,
        mode: 'native',
        front: ready.front,
        logFile: paths.log,
        alreadyRunning: false,
        notices,
        ...(init ? { init } : {}),
      };
    }
    if (!alive(pid)) {
      spin.fail('The gateway exited during start-up');
      rmSync(paths.pid, { force: true });
      throw new LifecycleError(`the gateway exited during start-up; see ${paths.log}:\n${tail(paths.log, 15)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  spin.fail('No answer');
  throw new LifecycleError(`the gateway did not become ready in time; see ${paths.log}`);
}

/** `up` with a Docker engine: the same summary as upNative, from the container. */
export async function upWithDocker(opts: {
  home: string;
  init: boolean;
  image: string;
  quiet?: boolean;
  timeoutMs?: number;
}): Promise<UpResult> {
  const cfg = await loadConfig(opts.home, opts.init);
  const r = await upDocker({
    home: opts.home,
    image: opts.image,
    host: cfg.host,
    port: cfg.port,
    quiet: opts.quiet === true,
    ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
  });
  return {
    url: r.url,
    pid: null,
    mode: 'docker',
    container: r.container,
    front: 'envoy',
    logFile: `docker logs ${r.container}`,
    alreadyRunning: r.alreadyRunning,
    notices: cfg.keycloak ? [KEYCLOAK_NOT_RUN] : [],
    ...(cfg.init ? { init: cfg.init } : {}),
  };
}

export interface DownResult {
  stopped: boolean;
  pid: number | null;
  mode: 'native' | 'docker';
  container?: string;
}

/** SIGTERM, then wait for a graceful exit (SIGKILL after `timeoutMs`); in Docker mode `docker stop`. */
export async function down(opts: { home: string; timeoutMs?: number }): Promise<DownResult> {
  if (readMarker(opts.home) !== null) {
    const r = await downDocker(opts.home);
    return { stopped: r.stopped, pid: null, mode: 'docker', container: r.container };
  }
  const paths = homePaths(opts.home);
  const pid = readPid(paths);
  if (pid === null || !alive(pid)) {
    rmSync(paths.pid, { force: true });
    rmSync(paths.ready, { force: true });
    return { stopped: false, pid, mode: 'native' };
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (alive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(paths.pid, { force: true });
  rmSync(paths.ready, { force: true });
  return { stopped: true, pid, mode: 'native' };
}

export interface StatusResult {
  running: boolean;
  pid: number | null;
  url: string | null;
  front: 'envoy' | 'builtin' | null;
  healthy: boolean;
  home: string;
  /** native: our pid file; docker: our container; external: no pid file, but the health endpoint answers. */
  mode: 'native' | 'docker' | 'external' | null;
  /** How it was found out: the pid and ready files, or only by asking the health endpoint. */
  source: 'pid-file' | 'health';
}

/** GET /healthz: null when nothing answers, else whether it said 200. */
async function probe(url: string): Promise<boolean | null> {
  try {
    const res = await fetch(new URL('/healthz', url), { signal: AbortSignal.timeout(2000) });
    await res.body?.cancel();
    return res.status === 200;
  } catch {
    return null;
  }
}

/**
 * Where the gateway should answer when there is no pid file: MCPGW_URL, else the port in
 * config.yaml. Read with the YAML parser alone, not the full config reader, to keep `status` light.
 */
async function configuredUrl(home: string, env: NodeJS.ProcessEnv): Promise<string | null> {
  const fromEnv = env['MCPGW_URL'];
  if (fromEnv !== undefined && fromEnv !== '') {
    try {
      return new URL('/mcp', fromEnv).href;
    } catch {
      throw new LifecycleError(`MCPGW_URL is not a URL: ${fromEnv}`, EXIT.usage);
    }
  }
  let text: string;
  try {
    text = readFileSync(homePaths(home).config, 'utf8');
  } catch {
    return null;
  }
  const { parse } = await import('yaml');
  let doc: unknown;
  try {
    doc = parse(text);
  } catch {
    return null;
  }
  const listen = (doc as { listen?: { host?: unknown; port?: unknown } } | null)?.listen;
  const port = typeof listen?.port === 'number' ? listen.port : 8000;
  const host =
    typeof listen?.host === 'string' && !['0.0.0.0', '::', ''].includes(listen.host) ? listen.host : '127.0.0.1';
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}/mcp`;
}

export async function status(opts: { home: string; env?: NodeJS.ProcessEnv }): Promise<StatusResult> {
  const paths = homePaths(opts.home);
  const pid = readPid(paths);
  if (pid !== null && alive(pid)) {
    const ready = readReady(paths);
    const healthy = ready ? (await probe(ready.url)) === true : false;
    return {
      running: true,
      pid,
      url: ready?.url ?? null,
      front: ready?.front ?? null,
      healthy,
      home: opts.home,
      mode: 'native',
      source: 'pid-file',
    };
  }
  // No process of ours: a container (ours or s6's inside the image) may still serve this home.
  const marker = readMarker(opts.home);
  const url = marker?.url ?? (await configuredUrl(opts.home, opts.env ?? process.env));
  const answer = url === null ? null : await probe(url);
  return {
    running: answer !== null,
    pid: null,
    url: answer !== null ? url : null,
    front: marker ? 'envoy' : null,
    healthy: answer === true,
    home: opts.home,
    mode: answer === null ? null : marker ? 'docker' : 'external',
    source: 'health',
  };
}

/** The JSON an MCP client (Claude Desktop, IDEs) takes for the gateway. */
export function clientSnippet(url: string, apiKey: string | null): string {
  return JSON.stringify(
    {
      mcpServers: {
        mcpgw: { type: 'http', url, headers: { Authorization: `Bearer ${apiKey ?? agentKeyPlaceholder}` } },
      },
    },
    null,
    2,
  );
}

const agentKeyPlaceholder = `<the ${FIRST_AGENT} key from mcpgw init>`;

/** How to point OpenClaw, Claude Code and JSON-configured clients at the gateway. */
export function clientSnippets(url: string, apiKey: string | null): string {
  const key = apiKey ?? agentKeyPlaceholder;
  const openclaw = JSON.stringify({ url, transport: 'streamable-http', headers: { Authorization: `Bearer ${key}` } });
  const indent = (s: string): string =>
    s
      .split('\n')
      .map((l) => `    ${l}`)
      .join('\n');
  return [
    '  OpenClaw:',
    `    openclaw mcp set mcpgw '${openclaw}'`,
    '  Claude Code:',
    `    claude mcp add --transport http mcpgw ${url} --header "Authorization: Bearer ${key}"`,
    '  Claude Desktop, IDEs and other clients that take JSON:',
    indent(clientSnippet(url, apiKey)),
  ].join('\n');
}

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}
