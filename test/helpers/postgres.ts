/**
 * A throwaway PostgreSQL server for tests: the system's `initdb` and `pg_ctl` (PostgreSQL 15 on
 * Debian: /usr/lib/postgresql/15/bin), a temp directory, a free port on 127.0.0.1, the socket in
 * the temp directory, trust auth. The server refuses to run as root, so as root every command
 * runs as the `postgres` OS user (runuser) and the directory is handed to that user.
 *
 * Gate suites with `describeWith(['initdb', 'pg_ctl'], …)` from ./components.js.
 */
import { execFile } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { findExecutable } from './components.js';
import { freePort } from './net.js';

const run = promisify(execFile);

export interface PgServer {
  readonly port: number;
  readonly dir: string;
  /** Connection URL of a database on this server (default `postgres`). */
  url(database?: string): string;
  /** Creates a fresh database and returns its URL. */
  createDatabase(name?: string): Promise<string>;
  /** Stops the server, keeping its data (to test outages). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** Stops it and removes every file. */
  destroy(): Promise<void>;
}

export interface StartOptions {
  /** fsync on (durable commits). Off by default: tests do not pull the power. */
  fsync?: boolean;
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
  const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
  return { uid, gid };
}

let dbCounter = 0;

export async function startPostgres(opts: StartOptions = {}): Promise<PgServer> {
  const initdb = findExecutable('initdb');
  const pgCtl = findExecutable('pg_ctl');
  if (!initdb || !pgCtl) throw new Error('initdb and pg_ctl are needed (apt-get install postgresql)');
  const asRoot = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-pg-'));
  const data = join(dir, 'data');
  const ids = asRoot ? await postgresIds() : null;
  if (ids) chownSync(dir, ids.uid, ids.gid);

  const cmd = (exe: string, args: string[]): Promise<{ stdout: string; stderr: string }> =>
    asRoot ? run('runuser', ['-u', 'postgres', '--', exe, ...args]) : run(exe, args);

  await cmd(initdb, ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
  const port = await freePort();
  const serverOpts = [
    '-c listen_addresses=127.0.0.1',
    `-p ${port}`,
    `-k ${dir}`,
    `-c fsync=${opts.fsync === true ? 'on' : 'off'}`,
    '-c max_connections=120',
  ].join(' ');

  const start = async (): Promise<void> => {
    await cmd(pgCtl, ['-D', data, '-o', serverOpts, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start']);
  };
  const stop = async (mode: 'fast' | 'immediate' = 'fast'): Promise<void> => {
    await cmd(pgCtl, ['-D', data, '-m', mode, '-w', '-t', '60', 'stop']);
  };
  await start();

  const url = (database = 'postgres'): string => `postgres://postgres@127.0.0.1:${port}/${database}`;
  return {
    port,
    dir,
    url,
    async createDatabase(name?: string): Promise<string> {
      const db = name ?? `t${process.pid}_${++dbCounter}`;
      if (!/^[a-z_][a-z0-9_]*$/.test(db)) throw new Error(`bad database name ${db}`);
      const c = new pg.Client({ connectionString: url() });
      await c.connect();
      try {
        await c.query(`CREATE DATABASE ${db}`);
      } finally {
        await c.end();
      }
      return url(db);
    },
    stop,
    start,
    async destroy(): Promise<void> {
      await stop('immediate').catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
