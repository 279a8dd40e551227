/**
 * The container's first start, without a container: the image's own mcpgw-init and postgres/run
 * scripts (Unix socket directory moved into a temp dir, s6-notifyoncheck and with-contenv left out)
 * against the system's PostgreSQL 15, run as an unprivileged user as in the image. Then mcpgw opens
 * the state store over that socket with the image's MCPGW_DATABASE_URL form and peer
 * authentication, migrates it, and opens the database key ring sealed with the signing.key that
 * mcpgw-init wrote.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { compilePolicyText } from '../../src/policy/compile.js';
import { describeWith } from '../helpers/components.js';
import { applicationKeyFiles, readRepoFile, repoPath } from './lib.js';

const run = promisify(execFile);
const RC = ['s6', 'rootfs', 'etc', 's6-overlay'];
const PGBIN = '/usr/lib/postgresql/15/bin';

describeWith(['initdb', 'pg_ctl'], 'container first start: mcpgw-init, postgres, mcpgw on the socket', () => {
  const asRoot = process.getuid?.() === 0;
  let dir = '';
  let home = '';
  let sock = '';
  let bin = '';
  let owner = { uid: -1, gid: -1, name: '' };
  let server: ChildProcess | null = null;

  /** Runs argv as the cluster's owner, with the container's environment. */
  const asOwner = (argv: string[], env: Record<string, string> = {}) => {
    const vars = Object.entries({
      MCPGW_HOME: home,
      PGDATA: join(home, 'postgres'),
      PATH: process.env['PATH'] ?? '',
      ...env,
    }).map(([k, v]) => `${k}=${v}`);
    return asRoot
      ? ['runuser', '-u', owner.name, '--', 'env', '-i', ...vars, ...argv]
      : ['env', '-i', ...vars, ...argv];
  };
  const exec = async (argv: string[], env: Record<string, string> = {}) => {
    const [cmd, ...args] = asOwner(argv, env);
    return run(cmd ?? 'false', args, { cwd: dir, maxBuffer: 4 << 20 });
  };

  /** An image script made runnable here: plain sh, and the socket directory moved. */
  const stage = (parts: string[], name: string): string => {
    const text = readRepoFile(...RC, ...parts)
      .replace(/^#!\/command\/with-contenv sh/, '#!/bin/sh')
      .replace(/^exec s6-notifyoncheck(\s+-[a-zA-Z](\s+\d+)?)*\s+/m, 'exec ')
      .replaceAll('/run/postgresql', sock);
    const path = join(bin, name);
    writeFileSync(path, text, { mode: 0o755 });
    return path;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mcpgw-ctr-'));
    home = join(dir, 'home');
    sock = join(dir, 'sock');
    bin = join(dir, 'bin');
    if (asRoot) {
      const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
      const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
      owner = { uid, gid, name: 'postgres' };
      chownSync(dir, uid, gid);
    } else {
      owner = {
        uid: process.getuid?.() ?? -1,
        gid: process.getgid?.() ?? -1,
        name: (await run('id', ['-un'])).stdout.trim(),
      };
    }
    chmodSync(dir, 0o755);
    await run('mkdir', ['-p', bin]);
  });

  afterAll(async () => {
    if (server) {
      await exec([join(PGBIN, 'pg_ctl'), '-D', join(home, 'postgres'), '-m', 'immediate', '-w', 'stop']).catch(
        () => undefined,
      );
      server.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('mcpgw-init makes a private home, the key files, a deny-all policy and the cluster; a second run changes nothing', async () => {
    const init = stage(['scripts', 'mcpgw-init'], 'mcpgw-init');
    const first = await exec(['sh', init]);
    expect(first.stdout).toContain('created the PostgreSQL 15 cluster');
    expect(statSync(home).mode & 0o777).toBe(0o700);
    expect(statSync(home).uid).toBe(owner.uid);
    expect(statSync(join(home, 'keys')).mode & 0o777).toBe(0o700);
    const keys = new Map<string, Buffer>();
    for (const k of applicationKeyFiles()) {
      const p = join(home, 'keys', k);
      expect(statSync(p).mode & 0o777, k).toBe(0o600);
      keys.set(k, readFileSync(p));
      expect(keys.get(k)).toHaveLength(32);
    }
    const policy = readFileSync(join(home, 'mcp-security.yaml'), 'utf8');
    const compiled = compilePolicyText(policy, 'mcp-security.yaml');
    expect(compiled.ok).toBe(true);
    expect(readFileSync(join(home, 'postgres', 'PG_VERSION'), 'utf8').trim()).toBe('15');

    const second = await exec(['sh', init]);
    expect(second.stdout).toBe('');
    for (const [k, v] of keys) expect(readFileSync(join(home, 'keys', k)).equals(v), k).toBe(true);
  }, 90_000);

  it('postgres starts with the run script’s arguments: socket only, ready by its check script', async () => {
    const runScript = stage(['s6-rc.d', 'postgres', 'run'], 'postgres-run');
    const check = stage(['s6-rc.d', 'postgres', 'data', 'check'], 'postgres-check');
    const [cmd, ...args] = asOwner(['sh', runScript]);
    server = spawn(cmd ?? 'false', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    // The run script sends the server's log to stdout (s6 collects it there).
    server.stdout?.on('data', (c: Buffer) => (log += c.toString()));
    server.stderr?.on('data', (c: Buffer) => (log += c.toString()));
    server.on('exit', (code) => (log += `\n[exited ${code}]`));
    const until = Date.now() + 60_000;
    for (;;) {
      const ok = await exec(['sh', check]).then(
        () => true,
        () => false,
      );
      if (ok) break;
      if (Date.now() > until) throw new Error(`postgres did not become ready:\n${log}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const psql = (sql: string) => exec([join(PGBIN, 'psql'), '-h', sock, '-d', 'mcpgw', '-Atc', sql]);
    expect((await psql('SHOW listen_addresses')).stdout.trim()).toBe('');
    expect((await psql('SELECT current_database()')).stdout.trim()).toBe('mcpgw');
    expect((await psql('SHOW server_version_num')).stdout.trim()).toMatch(/^15\d{4}$/);
    expect(statSync(sock).mode & 0o777).toBe(0o700);
  }, 90_000);

  it('mcpgw opens the state store over the socket (peer auth) and the key ring with the init-made signing.key', async () => {
    // The image's URL, with this test's socket directory and cluster owner.
    const image = /MCPGW_DATABASE_URL=(\S+)/.exec(readRepoFile('Dockerfile'))?.[1] ?? '';
    const url = new URL(image);
    url.searchParams.set('host', sock);
    url.username = owner.name;
    const tsx = repoPath('node_modules', 'tsx', 'dist', 'loader.mjs');
    const fixture = repoPath('test', 'packaging', 'fixtures', 'store-on-socket.ts');
    const open = async () => {
      const r = await exec([process.execPath, '--import', tsx, fixture], {
        MCPGW_DATABASE_URL: url.toString(),
        HOME: dir,
      });
      return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as {
        kind: string;
        kid: string;
        user: string;
        tables: number;
      };
    };
    const a = await open();
    expect(a.kind).toBe('postgres');
    expect(a.user).toBe(owner.name);
    expect(a.tables).toBeGreaterThan(5);
    expect(a.kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // A restart finds the same key.
    expect((await open()).kid).toBe(a.kid);
  }, 90_000);
});
