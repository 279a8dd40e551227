/**
 * Runs the real Envoy as the front when it is installed: renders the config into the run dir,
 * starts `envoy`, waits until it is ready, restarts it with backoff if it dies, stops it on close.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { relayLines } from '../util/line-relay.js';
import { envoyBootstrap, type EnvoyConfigOptions } from './envoy-config.js';

export interface SupervisedEnvoy {
  readonly port: number;
  close(): Promise<void>;
}

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', timeout: 1000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** The bound port of the front listener (the config may ask for port 0). */
async function listenerPort(adminPort: number): Promise<number> {
  const r = await get(adminPort, '/listeners?format=json');
  try {
    const parsed = JSON.parse(r.body) as {
      listener_statuses?: { local_address?: { socket_address?: { port_value?: number } } }[];
    };
    return parsed.listener_statuses?.[0]?.local_address?.socket_address?.port_value ?? 0;
  } catch {
    return 0;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function superviseEnvoy(opts: {
  envoyBin: string;
  runDir: string;
  config: Omit<EnvoyConfigOptions, 'adminPort'>;
  logger: Logger;
}): Promise<SupervisedEnvoy> {
  // JSON, which Envoy reads as well as YAML: rendering YAML took a visible part of start-up.
  const configPath = join(opts.runDir, 'envoy.json');
  const adminPath = join(opts.runDir, 'envoy-admin-address');
  // The admin listener is loopback-only and on a free port: the readiness probe needs it.
  writeFileSync(configPath, JSON.stringify(envoyBootstrap({ ...opts.config, adminPort: 0 })), { mode: 0o600 });
  const log = opts.logger;
  let child: ChildProcess | null = null;
  let stopping = false;
  let backoffMs = 250;

  const start = () => {
    const c = spawn(
      opts.envoyBin,
      ['-c', configPath, '--admin-address-path', adminPath, '--log-level', 'warn', '--use-dynamic-base-id'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    // Envoy's access log shares our log file: relayed in whole lines so that lines never interleave.
    if (c.stdout) relayLines(c.stdout, (text) => process.stdout.write(text));
    c.once('exit', (code, signal) => {
      if (stopping) return;
      log.error({ code, signal, restart_in_ms: backoffMs }, 'envoy exited; restarting');
      setTimeout(() => {
        if (!stopping) child = start();
      }, backoffMs);
      backoffMs = Math.min(backoffMs * 2, 10_000);
    });
    return c;
  };
  child = start();

  const deadline = Date.now() + 20_000;
  let port = 0;
  while (Date.now() < deadline && port === 0) {
    if (existsSync(adminPath)) {
      const text = readFileSync(adminPath, 'utf8').trim();
      const adminPort = Number(text.slice(text.lastIndexOf(':') + 1));
      if (adminPort > 0 && (await get(adminPort, '/ready')).status === 200) port = await listenerPort(adminPort);
    }
    // Envoy is ready about half a second after it starts: a short poll keeps `up` from waiting on it.
    if (port === 0) await sleep(25);
  }
  if (port === 0) {
    stopping = true;
    child.kill('SIGKILL');
    throw new Error('envoy did not become ready within 20 s');
  }
  backoffMs = 250;
  log.info({ port }, 'envoy front ready');
  return {
    port,
    async close() {
      stopping = true;
      const c = child;
      if (!c || c.exitCode !== null) return;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      if (c.exitCode === null) c.kill('SIGKILL');
    },
  };
}
