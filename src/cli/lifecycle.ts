/**
 * `mcpgw up`, `down`, `status`: the native mode runs one `mcpgw serve --role all` in the
 * background under MCPGW_HOME (pid file, log file, ready file written by the server itself).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { homePaths, type HomePaths } from '../config/home.js';
import { readConfig } from '../config/config-file.js';
import { FIRST_AGENT, initInstallation, type InitResult } from './init.js';

export const EXIT = { ok: 0, failed: 1, usage: 2, notRunning: 3, notAuthorized: 4 } as const;

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

export function dockerEngineAnswers(): boolean {
  const r = spawnSync('docker', ['info', '--format', '{{.ServerVersion}}'], { encoding: 'utf8', timeout: 5000 });
  return r.status === 0 && r.stdout.trim() !== '';
}

export interface UpResult {
  url: string;
  pid: number;
  front: 'envoy' | 'builtin';
  logFile: string;
  alreadyRunning: boolean;
  /** Set when `up` initialized a new installation: the keys, shown this once. */
  init?: InitResult;
}

export class LifecycleError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failed,
  ) {
    super(message);
    this.name = 'LifecycleError';
  }
}

const binPath = fileURLToPath(new URL('../../bin/mcpgw.js', import.meta.url));

/** Starts the gateway in the background and waits until front, authz and database are up. */
export async function upNative(opts: { home: string; init: boolean; timeoutMs?: number }): Promise<UpResult> {
  const paths = homePaths(opts.home);
  let init: InitResult | undefined;
  if (!existsSync(paths.config)) {
    if (!opts.init) throw new LifecycleError(`not initialized (${paths.config} missing): run \`mcpgw init\` first`);
    init = await initInstallation({ home: opts.home, preset: 'openclaw', force: false });
  }
  await readConfig(paths.config); // a broken config fails here, with its file and field
  const running = readPid(paths);
  if (running !== null && alive(running)) {
    const ready = readReady(paths);
    if (ready && ready.pid === running) {
      return { url: ready.url, pid: running, front: ready.front, logFile: paths.log, alreadyRunning: true };
    }
  }
  await mkdir(paths.logs, { recursive: true, mode: 0o700 });
  await mkdir(paths.run, { recursive: true, mode: 0o700 });
  rmSync(paths.ready, { force: true });
  const log = openSync(paths.log, 'a', 0o600);
  const child = spawn(process.execPath, [binPath, 'serve', '--role', 'all'], {
    detached: true,
    stdio: ['ignore', log, log],
    env: { ...process.env, MCPGW_HOME: opts.home },
  });
  const pid = child.pid;
  if (pid === undefined) throw new LifecycleError('could not start the gateway process');
  writeFileSync(paths.pid, `${pid}\n`, { mode: 0o600 });
  child.unref();

  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  while (Date.now() < deadline) {
    const ready = readReady(paths);
    if (ready && ready.pid === pid) {
      return {
        url: ready.url,
        pid,
        front: ready.front,
        logFile: paths.log,
        alreadyRunning: false,
        ...(init ? { init } : {}),
      };
    }
    if (!alive(pid)) {
      rmSync(paths.pid, { force: true });
      throw new LifecycleError(`the gateway exited during start-up; see ${paths.log}:\n${tail(paths.log, 15)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new LifecycleError(`the gateway did not become ready in time; see ${paths.log}`);
}

/** SIGTERM, then wait for a graceful exit (SIGKILL after `timeoutMs`). */
export async function down(opts: {
  home: string;
  timeoutMs?: number;
}): Promise<{ stopped: boolean; pid: number | null }> {
  const paths = homePaths(opts.home);
  const pid = readPid(paths);
  if (pid === null || !alive(pid)) {
    rmSync(paths.pid, { force: true });
    rmSync(paths.ready, { force: true });
    return { stopped: false, pid };
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (alive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(paths.pid, { force: true });
  rmSync(paths.ready, { force: true });
  return { stopped: true, pid };
}

export interface StatusResult {
  running: boolean;
  pid: number | null;
  url: string | null;
  front: 'envoy' | 'builtin' | null;
  healthy: boolean;
  home: string;
}

export async function status(opts: { home: string }): Promise<StatusResult> {
  const paths = homePaths(opts.home);
  const pid = readPid(paths);
  const running = pid !== null && alive(pid);
  const ready = running ? readReady(paths) : null;
  let healthy = false;
  if (ready) {
    try {
      const res = await fetch(new URL('/healthz', ready.url), { signal: AbortSignal.timeout(2000) });
      healthy = res.status === 200;
    } catch {
      healthy = false;
    }
  }
  return {
    running,
    pid: running ? pid : null,
    url: ready?.url ?? null,
    front: ready?.front ?? null,
    healthy,
    home: opts.home,
  };
}

/** The snippet an MCP client (OpenClaw, Claude, IDEs) needs to reach the gateway. */
export function clientSnippet(url: string, apiKey: string | null): string {
  return JSON.stringify(
    {
      mcpServers: {
        mcpgw: {
          type: 'http',
          url,
          headers: { Authorization: `Bearer ${apiKey ?? `<the ${FIRST_AGENT} key from mcpgw init>`}` },
        },
      },
    },
    null,
    2,
  );
}

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}
