/**
 * A throwaway PostgreSQL 15 for the bench, started as test/helpers/postgres.ts does (the system's
 * initdb and pg_ctl, a temp directory, a free port on 127.0.0.1, trust auth, the `postgres` OS user
 * when we are root), but with the server's default durable settings (fsync, synchronous_commit,
 * full_page_writes all on) and the postmaster pinned with taskset, so every backend inherits the
 * pinning.
 */
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);

export const PG_BIN = process.env['BENCH_PG_BIN'] ?? '/usr/lib/postgresql/15/bin';

export interface BenchPostgres {
  readonly port: number;
  readonly dir: string;
  readonly url: string;
  readonly postmasterPid: number;
  /** The settings that decide durability and commit cost, as the server reports them. */
  settings(): Promise<Record<string, string>>;
  /** Stops the server and removes every file. */
  destroy(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export const DURABILITY_SETTINGS = [
  'fsync',
  'synchronous_commit',
  'wal_sync_method',
  'full_page_writes',
  'commit_delay',
  'wal_level',
  'shared_buffers',
  'max_wal_size',
  'checkpoint_timeout',
  'max_connections',
];

/**
 * `settings` are extra `-c name=value` server settings (the A/B script loads pg_stat_statements
 * with them); the bench itself passes none, so it runs with the server's defaults.
 */
export async function startBenchPostgres(core: string, settings: Record<string, string> = {}): Promise<BenchPostgres> {
  const initdb = join(PG_BIN, 'initdb');
  const pgCtl = join(PG_BIN, 'pg_ctl');
  if (!existsSync(initdb) || !existsSync(pgCtl)) throw new Error(`initdb and pg_ctl are needed in ${PG_BIN}`);
  const asRoot = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-bench-pg-'));
  const data = join(dir, 'data');
  if (asRoot) {
    const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    chownSync(dir, uid, gid);
  }
  // taskset first, so the postmaster (forked by pg_ctl) and every backend inherit the core.
  const cmd = (exe: string, args: string[]) =>
    asRoot
      ? run('taskset', ['-c', core, 'runuser', '-u', 'postgres', '--', exe, ...args])
      : run('taskset', ['-c', core, exe, ...args]);

  // --no-sync only skips flushing initdb's own files; the server runs with its defaults.
  await cmd(initdb, ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
  const port = await freePort();
  const serverOpts = [
    '-c listen_addresses=127.0.0.1',
    `-p ${port}`,
    `-k ${dir}`,
    ...Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`),
  ].join(' ');
  await cmd(pgCtl, ['-D', data, '-o', serverOpts, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start']);
  const postmasterPid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;

  return {
    port,
    dir,
    url,
    postmasterPid,
    async settings() {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        const r = await c.query<{ name: string; setting: string; unit: string | null }>(
          'SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1)',
          [DURABILITY_SETTINGS],
        );
        const out: Record<string, string> = {};
        for (const row of r.rows) out[row.name] = row.unit ? `${row.setting} ${row.unit}` : row.setting;
        return out;
      } finally {
        await c.end();
      }
    },
    async destroy() {
      await cmd(pgCtl, ['-D', data, '-m', 'immediate', '-w', '-t', '60', 'stop']).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The CPU list a process may run on (`taskset -p`), to prove the pinning. */
export async function affinityOf(pid: number): Promise<string> {
  const r = await run('taskset', ['-cp', String(pid)]);
  return r.stdout.trim().replace(/^.*: /, '');
}
