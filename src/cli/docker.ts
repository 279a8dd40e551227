/**
 * `mcpgw up` / `down` with a Docker engine: the image (DESIGN §2: s6-overlay, PostgreSQL, Envoy,
 * `mcpgw serve`) with MCPGW_HOME as its one volume and the front on the configured port.
 *
 * Everything goes through the `docker` CLI, so what runs is exactly what a person would type (and a
 * test can put a fake `docker` first on PATH to check the commands built). Pull progress is passed
 * through to stderr.
 *
 * The container uses the embedded database in MCPGW_HOME (`MCPGW_DATABASE_URL` emptied), the one
 * `mcpgw init` wrote the owner and agent into: the keys it printed then work in both modes. An
 * installation that wants the image's PostgreSQL runs the image itself (Dockerfile header).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { homePaths } from '../config/home.js';
import { CliError as LifecycleError, EXIT } from './exit.js';
import { progress } from './tty.js';

export const CONTAINER_NAME = 'mcpgw';
/** The image's volume and port (Dockerfile: VOLUME, EXPOSE, MCPGW_HOME). */
export const CONTAINER_HOME = '/var/lib/mcpgw';
export const CONTAINER_PORT = 8000;
/** Where the image would be published; MCPGW_IMAGE or --image name another (e.g. a local build). */
export const IMAGE_REPOSITORY = 'noumena/mcpgw';

export function defaultImage(version: string, env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env['MCPGW_IMAGE'];
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : `${IMAGE_REPOSITORY}:${version}`;
}

/** True when `docker info` reaches an engine (not merely when the CLI is installed). */
export function dockerEngineAnswers(): boolean {
  const r = spawnSync('docker', ['info', '--format', '{{.ServerVersion}}'], { encoding: 'utf8', timeout: 10_000 });
  return r.status === 0 && r.stdout.trim() !== '';
}

export interface DockerResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `docker …`; `echo` receives the output as it arrives (pull progress). */
export function docker(args: string[], echo?: (chunk: string) => void): Promise<DockerResult> {
  return new Promise((resolve) => {
    const child = spawn('docker', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      echo?.(d.toString());
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      echo?.(d.toString());
    });
    child.on('error', (err) => resolve({ code: 127, stdout, stderr: `${stderr}${err.message}` }));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

export interface RunSpec {
  image: string;
  home: string;
  /** Host address and port the front is published on. */
  host: string;
  port: number;
}

/** The `docker run` arguments for the gateway container. */
export function runArgs(s: RunSpec): string[] {
  return [
    'run',
    '--detach',
    '--name',
    CONTAINER_NAME,
    '--volume',
    `${s.home}:${CONTAINER_HOME}`,
    '--publish',
    `${s.host}:${s.port}:${CONTAINER_PORT}`,
    '--env',
    'MCPGW_DATABASE_URL=',
    '--label',
    `dev.mcpgw.home=${s.home}`,
    s.image,
  ];
}

export const stopArgs = (): string[] => ['stop', '--time', '30', CONTAINER_NAME];

export interface DockerMarker {
  container: string;
  image: string;
  url: string;
}

/** `MCPGW_HOME/run/docker.json`: this installation runs in a container (read by down and status). */
export function markerPath(home: string): string {
  return join(homePaths(home).run, 'docker.json');
}

export function readMarker(home: string): DockerMarker | null {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(markerPath(home), 'utf8'));
  } catch {
    return null;
  }
  if (typeof json !== 'object' || json === null) return null;
  const { container, image, url } = json as Record<string, unknown>;
  return typeof container === 'string' && typeof image === 'string' && typeof url === 'string'
    ? { container, image, url }
    : null;
}

const NOT_PUBLISHED = /manifest unknown|not found|pull access denied|repository does not exist/i;

function lastLines(text: string, n = 3): string {
  return text.trim().split('\n').slice(-n).join('\n');
}

export interface DockerUpResult {
  url: string;
  container: string;
  image: string;
  alreadyRunning: boolean;
}

async function healthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(new URL('/healthz', url), { signal: AbortSignal.timeout(2000) });
    return res.status === 200;
  } catch {
    return false;
  }
}

async function containerRunning(): Promise<boolean | null> {
  const r = await docker(['inspect', '--format', '{{.State.Running}}', CONTAINER_NAME]);
  if (r.code !== 0) return null;
  return r.stdout.trim() === 'true';
}

/**
 * Pulls the image when it is not there yet, starts the container and waits until `/healthz`
 * answers through the front.
 */
export async function upDocker(opts: {
  home: string;
  image: string;
  host: string;
  port: number;
  quiet: boolean;
  timeoutMs?: number;
}): Promise<DockerUpResult> {
  const probeHost = opts.host === '0.0.0.0' || opts.host === '::' ? '127.0.0.1' : opts.host;
  const url = `http://${probeHost}:${opts.port}/mcp`;
  const running = await containerRunning();
  if (running === true) return { url, container: CONTAINER_NAME, image: opts.image, alreadyRunning: true };
  if (running === false) {
    const rm = await docker(['rm', CONTAINER_NAME]);
    if (rm.code !== 0)
      throw new LifecycleError(`could not remove the stopped container ${CONTAINER_NAME}: ${lastLines(rm.stderr)}`);
  }

  if ((await docker(['image', 'inspect', '--format', '{{.Id}}', opts.image])).code !== 0) {
    if (!opts.quiet) process.stderr.write(`Pulling ${opts.image}…\n`);
    const pull = await docker(['pull', opts.image], opts.quiet ? undefined : (c) => void process.stderr.write(c));
    if (pull.code !== 0) {
      const out = `${pull.stdout}\n${pull.stderr}`;
      if (NOT_PUBLISHED.test(out)) {
        throw new LifecycleError(
          `no mcpgw image is published yet (docker pull ${opts.image}: ${lastLines(pull.stderr, 1)}); ` +
            'run `mcpgw up --native`, or build the image yourself: docker build -t mcpgw . && MCPGW_IMAGE=mcpgw mcpgw up',
        );
      }
      throw new LifecycleError(`docker pull ${opts.image} failed:\n${lastLines(out)}`);
    }
  }

  const run = await docker(runArgs({ image: opts.image, home: opts.home, host: opts.host, port: opts.port }));
  if (run.code !== 0) throw new LifecycleError(`docker run failed:\n${lastLines(run.stderr)}`);
  const marker: DockerMarker = { container: CONTAINER_NAME, image: opts.image, url };
  mkdirSync(homePaths(opts.home).run, { recursive: true, mode: 0o700 });
  writeFileSync(markerPath(opts.home), `${JSON.stringify(marker)}\n`, { mode: 0o600 });

  const spin = progress(`Waiting for the gateway in container ${CONTAINER_NAME} to answer ${url}`, {
    quiet: opts.quiet,
  });
  const deadline = Date.now() + (opts.timeoutMs ?? 180_000);
  let polls = 0;
  while (Date.now() < deadline) {
    if (await healthy(url)) {
      spin.done(`Gateway healthy at ${url}`);
      return { url, container: CONTAINER_NAME, image: opts.image, alreadyRunning: false };
    }
    // The engine is asked less often than the port: a container that died will not come back.
    if (polls++ % 4 === 3 && (await containerRunning()) === false) {
      const logs = await docker(['logs', '--tail', '20', CONTAINER_NAME]);
      spin.fail('The container stopped');
      throw new LifecycleError(
        `the container ${CONTAINER_NAME} exited during start-up; its last log lines:\n${lastLines(`${logs.stdout}${logs.stderr}`, 20)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  spin.fail('No answer');
  throw new LifecycleError(
    `the container ${CONTAINER_NAME} did not become healthy in time; see: docker logs ${CONTAINER_NAME}`,
  );
}

/** `docker stop --time 30` (SIGTERM, then SIGKILL after 30 s), then removes the container. */
export async function downDocker(home: string): Promise<{ stopped: boolean; container: string }> {
  const stop = await docker(stopArgs());
  const stopped = stop.code === 0;
  if (!stopped && !/no such container/i.test(stop.stderr)) {
    throw new LifecycleError(`docker stop ${CONTAINER_NAME} failed: ${lastLines(stop.stderr)}`, EXIT.failed);
  }
  if (stopped) await docker(['rm', CONTAINER_NAME]);
  rmSync(markerPath(home), { force: true });
  return { stopped, container: CONTAINER_NAME };
}

export function hasMarker(home: string): boolean {
  return existsSync(markerPath(home));
}
