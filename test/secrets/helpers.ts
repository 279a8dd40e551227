/**
 * A real installation for the credential suites: what `mcpgw init` does (its own function), then
 * the process `mcpgw up --native` starts — `mcpgw serve --role all` in the background with PGlite,
 * the built-in front, its pid and log file in MCPGW_HOME — but with `--drain-seconds 0` so a stop
 * takes no five seconds; and the CLI run as a person runs it (a child process per command, values
 * on stdin).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { homePaths } from '../../src/config/home.js';
import { initInstallation } from '../../src/cli/init.js';
import { freePort } from '../helpers/net.js';
export { freePort } from '../helpers/net.js';

export const BIN = fileURLToPath(new URL('../../bin/mcpgw.js', import.meta.url));
export const SECRET_SERVER = fileURLToPath(new URL('../fixtures/secrets/secret-server.mjs', import.meta.url));
const POLICY = new URL('../fixtures/secrets/mcp-security.yaml', import.meta.url);

export interface CliResult {
  code: number | null;
  out: string;
  err: string;
  argv: string[];
}

export function policyText(): string {
  return readFileSync(POLICY, 'utf8').replaceAll('__SERVER__', SECRET_SERVER);
}

export class Installation {
  /** Every CLI run, kept so the leak test can search what each printed. */
  readonly runs: CliResult[] = [];
  adminKey = '';
  agentKey = '';
  url = '';

  constructor(
    readonly home: string,
    readonly extraEnv: Record<string, string> = {},
  ) {}

  env(more: Record<string, string> = {}): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (!/^(MCPGW_|VAULT_|BAO_)/.test(k)) env[k] = v;
    }
    return {
      ...env,
      MCPGW_HOME: this.home,
      MCPGW_FRONT: 'builtin',
      MCPGW_AUTHZ_PORT: '0',
      MCPGW_GATEWAY_PORT: '0',
      MCPGW_LOG_LEVEL: 'debug',
      ...this.extraEnv,
      ...more,
    };
  }

  /** One CLI command; `input` goes to its stdin. Asynchronous, so an in-process server could answer. */
  cli(args: string[], opts: { input?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
    return new Promise((resolve) => {
      // A session of its own: no controlling terminal, so `secret set` without --stdin cannot
      // wait on the developer's /dev/tty when the suite runs in a terminal.
      const child = spawn(process.execPath, [BIN, ...args], {
        env: this.env(opts.env),
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: true,
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.stdin.end(opts.input ?? '');
      child.on('close', (code) => {
        const r = { code, out, err, argv: args };
        this.runs.push(r);
        resolve(r);
      });
    });
  }

  #server: ChildProcess | null = null;

  async init(): Promise<void> {
    const port = await freePort();
    const r = await initInstallation({ home: this.home, preset: 'openclaw', force: false, port });
    this.adminKey = r.adminKey;
    this.agentKey = r.apiKey;
    this.url = r.url;
    writeFileSync(r.policyPath, policyText(), { mode: 0o600 });
  }

  /** `serve --role all` in the background, as `mcpgw up` runs it (pid file, log file, ready file). */
  async up(): Promise<void> {
    const paths = homePaths(this.home);
    mkdirSync(paths.logs, { recursive: true, mode: 0o700 });
    mkdirSync(paths.run, { recursive: true, mode: 0o700 });
    rmSync(paths.ready, { force: true });
    const log = openSync(paths.log, 'a', 0o600);
    const child = spawn(process.execPath, [BIN, 'serve', '--role', 'all', '--drain-seconds', '0'], {
      env: this.env(),
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    this.#server = child;
    writeFileSync(paths.pid, `${child.pid ?? ''}\n`, { mode: 0o600 });
    const deadline = Date.now() + 45_000;
    for (;;) {
      try {
        const ready = JSON.parse(readFileSync(paths.ready, 'utf8')) as { pid: number };
        if (ready.pid === child.pid) return;
      } catch {
        // not yet
      }
      if (child.exitCode !== null) throw new Error(`serve exited with ${child.exitCode}; see ${paths.log}`);
      if (Date.now() > deadline) throw new Error(`serve did not become ready; see ${paths.log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGTERM and wait, like `mcpgw down`. */
  async down(): Promise<void> {
    const child = this.#server;
    this.#server = null;
    if (child && child.exitCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(homePaths(this.home).pid, { force: true });
  }

  get origin(): string {
    return new URL(this.url).origin;
  }

  /** An admin API call with the owner's key (responses kept for the leak test). */
  readonly adminAnswers: string[] = [];
  async admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
    const res = await fetch(`${this.origin}/admin/v1${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.adminKey}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    this.adminAnswers.push(text);
    return { status: res.status, body: text === '' ? null : (JSON.parse(text) as unknown) };
  }
}

/** Every regular file under `dir`, recursively. */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p, { throwIfNoEntry: false });
    if (!st) continue;
    if (st.isDirectory()) out.push(...filesUnder(p));
    else if (st.isFile()) out.push(p);
  }
  return out;
}

/** The byte strings a leak of `value` would show up as. */
export function leakForms(value: string): Buffer[] {
  const b = Buffer.from(value, 'utf8');
  const forms = new Set<string>([value, b.toString('base64'), b.toString('base64url'), encodeURIComponent(value)]);
  // base64 at the other two alignments (the value preceded by one or two bytes), minus the edges.
  for (const pad of [1, 2]) {
    const enc = Buffer.concat([Buffer.alloc(pad), b]).toString('base64');
    forms.add(enc.slice(4, enc.length - 4));
  }
  return [...forms].map((f) => Buffer.from(f, 'utf8'));
}
