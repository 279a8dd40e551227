/**
 * A crash loses no audit record of a fail-closed deny: a deny answered before its row reached the
 * database has it fsync'd in the spool first, and the spool files of dead processes are replayed
 * at the next start, once each, a torn last line skipped.
 *
 * PostgreSQL: a child process gets denies while the server is down and is killed with SIGKILL;
 * a store opened afterwards on the same home has every answered deny's row, and a control child
 * without the spool shows what was lost before. PGlite has no outage: a fail-closed deny there
 * comes from a busy queue, its row queues behind the same work, and the answer waits for it (the
 * queue runs as one chain of microtasks, so no timer answers early); the kill test holds that
 * line whichever way the row is kept, and spool files found at open are replayed into PGlite too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { pino, type Logger } from 'pino';
import { describe, expect, it } from 'vitest';
import {
  FallbackSpool,
  parseSpoolLine,
  spoolFileName,
  spoolLine,
  type FallbackRecord,
} from '../../src/state/fallback-spool.js';
import type { Layer2Store } from '../../src/state/store.js';
import { describeStores, request, rules, sleep } from './harness.js';

const WORKER = fileURLToPath(new URL('./fixtures/spool-worker.ts', import.meta.url));

/** The spool worker in its own OS process; its stdout lines as they arrive. */
class SpoolWorker {
  readonly proc: ChildProcess;
  readonly lines: string[] = [];
  stderr = '';
  readonly exited: Promise<void>;
  #buf = '';

  constructor(args: object) {
    this.proc = spawn(process.execPath, ['--import', 'tsx', WORKER, JSON.stringify(args)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.proc.stdout?.setEncoding('utf8');
    this.proc.stdout?.on('data', (chunk: string) => {
      this.#buf += chunk;
      const parts = this.#buf.split('\n');
      this.#buf = parts.pop() ?? '';
      this.lines.push(...parts);
    });
    this.proc.stderr?.setEncoding('utf8');
    this.proc.stderr?.on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    this.exited = new Promise((resolve) => this.proc.on('exit', () => resolve()));
  }

  denied(): string[] {
    return this.lines.filter((l) => l.startsWith('D ')).map((l) => l.slice(2));
  }

  async until(what: string, ok: () => boolean, ms = 60_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!ok()) {
      if (this.proc.exitCode !== null) throw new Error(`worker exited before ${what}; stderr: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`worker: timed out waiting for ${what}; stderr: ${this.stderr}`);
      await sleep(20);
    }
  }

  send(line: string): void {
    this.proc.stdin?.write(`${line}\n`);
  }

  async kill9(): Promise<void> {
    this.proc.kill('SIGKILL');
    await this.exited;
  }
}

/** A real pino logger whose messages land in `messages`. */
function capture(): { logger: Logger; messages: string[] } {
  const messages: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb): void {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line !== '') messages.push(String((JSON.parse(line) as { msg?: unknown }).msg));
      }
      cb();
    },
  });
  return { logger: pino({ level: 'warn' }, sink), messages };
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise<void>((resolve) => child.on('exit', () => resolve()));
  return child.pid as number;
}

function record(over: Partial<FallbackRecord> = {}): FallbackRecord {
  return {
    decision_id: `dc-${randomUUID()}`,
    user_id: 'alice',
    session_id: 'sess-1',
    method: 'tools/call',
    service: 'svc',
    tool: 'spooled',
    reasons: ['the state store is unavailable'],
    policy_revision: 'rev-1',
    detail: { failure: 'ECONNREFUSED', answered_at: new Date().toISOString() },
    ...over,
  };
}

function spoolFiles(home: string): string[] {
  const dir = join(home, 'spool');
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

async function rowCounts(store: Layer2Store, ids: string[]): Promise<number[]> {
  const r = await store.db.query<{ decision_id: string; n: unknown }>(
    `SELECT decision_id, count(*) AS n FROM audit_log
      WHERE decision_id IN (SELECT jsonb_array_elements_text($1::jsonb)) AND outcome = 'deny' GROUP BY decision_id`,
    [JSON.stringify(ids)],
  );
  const by = new Map(r.rows.map((x) => [x.decision_id, Number(x.n)]));
  return ids.map((id) => by.get(id) ?? 0);
}

describeStores('the spool of fail-closed audit rows', (env) => {
  it('spool files of two dead processes are replayed at open, a torn last line skipped; replaying again adds nothing', async () => {
    const home = env.tmp();
    const dir = join(home, 'spool');
    mkdirSync(dir, { mode: 0o700 });
    const [pidA, pidB] = [await deadPid(), await deadPid()];
    const a = [record(), record(), record()];
    const b = [record({ user_id: null, session_id: null }), record({ tool: null, service: null })];
    const fileA = spoolFileName(pidA);
    const fileB = spoolFileName(pidB);
    const torn = spoolLine(record());
    // A crash mid-write leaves part of the last batch: a line without its end.
    writeFileSync(join(dir, fileA), a.map(spoolLine).join('') + torn.slice(0, 40), { mode: 0o600 });
    writeFileSync(join(dir, fileB), b.map(spoolLine).join(''), { mode: 0o600 });
    const backup = env.tmp();
    for (const f of [fileA, fileB]) copyFileSync(join(dir, f), join(backup, f));

    const { logger, messages } = capture();
    const store = await env.open({ home, logger });
    const ids = [...a, ...b].map((r) => r.decision_id);
    expect(await rowCounts(store, ids)).toEqual([1, 1, 1, 1, 1]);
    const tornId = (JSON.parse(torn) as { decision_id: string }).decision_id;
    expect(await rowCounts(store, [tornId])).toEqual([0]);
    expect(spoolFiles(home)).toEqual([]);
    expect(messages.some((m) => m.includes(`spool file ${fileA}: skipped a torn last line`))).toBe(true);
    expect(messages.some((m) => m.startsWith('replayed 5 audit rows of fail-closed denies from 2 spool files'))).toBe(
      true,
    );
    // What was spooled is what is stored, `answered_at` included.
    const row = await store.db.query<{ user_id: unknown; tool: unknown; reasons: unknown; detail: unknown }>(
      'SELECT user_id, tool, reasons, detail FROM audit_log WHERE decision_id = $1',
      [b[1]?.decision_id],
    );
    expect(row.rows[0]).toEqual({
      user_id: 'alice',
      tool: null,
      reasons: ['the state store is unavailable'],
      detail: b[1]?.detail,
    });

    // A replayer that died after its inserts and before the unlink leaves the files behind.
    for (const f of [fileA, fileB]) copyFileSync(join(backup, f), join(dir, f));
    await store.replayFallbackSpool();
    expect(await rowCounts(store, ids)).toEqual([1, 1, 1, 1, 1]);
    expect(spoolFiles(home)).toEqual([]);
  }, 60_000);

  it('a line before the last that cannot be read keeps the file aside; the rest is replayed', async () => {
    const home = env.tmp();
    const dir = join(home, 'spool');
    mkdirSync(dir, { mode: 0o700 });
    const rs = [record(), record()];
    const name = spoolFileName(await deadPid());
    writeFileSync(
      join(dir, name),
      `${spoolLine(rs[0] as FallbackRecord)}{"v":1,"decision_id":\n${spoolLine(rs[1] as FallbackRecord)}`,
      {
        mode: 0o600,
      },
    );
    const { logger, messages } = capture();
    const store = await env.open({ home, logger });
    expect(
      await rowCounts(
        store,
        rs.map((r) => r.decision_id),
      ),
    ).toEqual([1, 1]);
    const left = spoolFiles(home);
    expect(left.length).toBe(1);
    expect(left[0]).toMatch(/\.jsonl\.rejected$/);
    expect(messages.some((m) => m.includes('1 unreadable lines before the last'))).toBe(true);
    // Never replayed again.
    await store.replayFallbackSpool();
    expect(spoolFiles(home)).toEqual(left);
  });

  if (env.kind === 'postgres') {
    it('closing while the database is down keeps the rows in the spool; the next open replays them', async () => {
      const url = await env.freshUrl();
      const home = env.tmp();
      const { logger, messages } = capture();
      const store = await env.open({ databaseUrl: url, home, budgetMs: 200, logger });
      const admin = new pg.Client({ connectionString: env.server().url() });
      await admin.connect();
      const name = new URL(url).pathname.slice(1);
      const reqs = Array.from({ length: 4 }, () => request({ tool: 'closing' }));
      try {
        await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
        await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [name]);
        for (const q of reqs) expect((await store.decide(q, rules())).outcome).toBe('deny');
        await store.close();
        expect(messages).toContain(
          `4 audit rows of fail-closed denies could not be written before closing; 4 of them stay in the spool at ${join(home, 'spool')} for the next start`,
        );
      } finally {
        await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
        await admin.end();
      }
      expect(spoolFiles(home).length).toBe(1);
      // Same process, same pid: a file no live store of this process owns is replayed.
      const again = await env.open({ databaseUrl: url, home });
      expect(
        await rowCounts(
          again,
          reqs.map((q) => q.decisionId),
        ),
      ).toEqual([1, 1, 1, 1]);
      expect(spoolFiles(home)).toEqual([]);
    }, 60_000);

    it('the spool is bounded: rows beyond it are answered from memory, counted and logged, and still written later', async () => {
      const url = await env.freshUrl();
      const home = env.tmp();
      const { logger, messages } = capture();
      const store = await env.open({ databaseUrl: url, home, budgetMs: 200, fallbackAuditSpoolBytes: 1000, logger });
      const admin = new pg.Client({ connectionString: env.server().url() });
      await admin.connect();
      try {
        const name = new URL(url).pathname.slice(1);
        await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
        await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [name]);
        const reqs = Array.from({ length: 6 }, () => request({ tool: 'bounded' }));
        for (const q of reqs) expect((await store.decide(q, rules())).outcome).toBe('deny');
        const files = spoolFiles(home);
        const lines = files.flatMap((f) =>
          readFileSync(join(home, 'spool', f), 'utf8')
            .split('\n')
            .filter((l) => l !== ''),
        );
        const bytes = files.reduce((n, f) => n + statSync(join(home, 'spool', f)).size, 0);
        const { pending, dropped, unspooled } = store.fallbackAudit();
        expect({ pending, dropped }).toEqual({ pending: 6, dropped: 0 });
        expect(lines.length).toBeGreaterThan(0);
        expect(unspooled).toBeGreaterThan(0);
        expect(lines.length + unspooled).toBe(6);
        expect(bytes).toBeLessThanOrEqual(1000);
        expect(messages.filter((m) => m.includes('is held in memory only')).length).toBe(1);
        await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
        const deadline = Date.now() + 15_000;
        while (store.fallbackAudit().pending > 0 && Date.now() < deadline) await sleep(50);
        expect(
          await rowCounts(
            store,
            reqs.map((q) => q.decisionId),
          ),
        ).toEqual([1, 1, 1, 1, 1, 1]);
        expect(spoolFiles(home)).toEqual([]);
      } finally {
        await admin.end();
      }
    }, 60_000);

    // Last: it stops the suite's server.
    it('SIGKILL while the database is down: after restart every answered deny has exactly one row, the spool is gone', async () => {
      const url = await env.freshUrl();
      const home = env.tmp();
      const control = env.tmp();
      const w = new SpoolWorker({ url, home, budgetMs: 200 });
      const c = new SpoolWorker({ url, home: control, budgetMs: 200, spool: false });
      await w.until('ready', () => w.lines.includes('ready'));
      await c.until('ready', () => c.lines.includes('ready'));
      await env.server().stop('fast');
      try {
        w.send('go 300');
        c.send('go 30');
        // Killed amid the burst: some denies answered, others still on their way.
        await w.until('60 answered denies', () => w.denied().length >= 60);
        await c.until('30 answered denies', () => c.denied().length >= 30);
        await w.kill9();
        await c.kill9();
      } finally {
        await env.server().start();
      }
      const answered = w.denied();
      expect(w.lines.filter((l) => l.startsWith('A '))).toEqual([]);
      expect(spoolFiles(home).length).toBeGreaterThan(0);
      expect(spoolFiles(control)).toEqual([]);

      const { logger, messages } = capture();
      const store = await env.open({ databaseUrl: url, home, logger });
      expect(await rowCounts(store, answered)).toEqual(answered.map(() => 1));
      expect(spoolFiles(home)).toEqual([]);
      expect(messages.some((m) => /^replayed \d+ audit rows of fail-closed denies from \d+ spool files/.test(m))).toBe(
        true,
      );
      // Without the spool the same crash lost every row it answered.
      expect(await rowCounts(store, c.denied())).toEqual(c.denied().map(() => 0));
    }, 120_000);
  } else {
    it('SIGKILL after denies on a busy embedded database: every answered deny has exactly one row after reopening', async () => {
      const home = env.tmp();
      const dir = join(home, 'db');
      const w = new SpoolWorker({ dir, home, budgetMs: 100, busyMs: 300, fillers: 100 });
      await w.until('ready', () => w.lines.includes('ready'));
      w.send('go 20');
      await w.until('a deny', () => w.denied().length > 0);
      await w.kill9();
      const answered = w.denied();
      const store = await env.open({ home, pgliteDataDir: dir });
      expect(await rowCounts(store, answered)).toEqual(answered.map(() => 1));
      expect(spoolFiles(home)).toEqual([]);
    }, 120_000);

    it('without a spool directory the store says once that these rows are not crash-safe', async () => {
      const { logger, messages } = capture();
      await env.open({ fallbackAuditSpool: null, logger });
      expect(messages.filter((m) => m.startsWith('no spool directory')).length).toBe(1);
    });
  }
});

describe('the spool file', () => {
  it('a file claimed while its owner writes: the owner writes its rows again elsewhere before answering', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'mcpgw-spool-')), 'spool');
    const owner = new FallbackSpool({ dir });
    const first = record();
    const e1 = owner.append(spoolLine(first));
    expect(await e1.durable).toBe(true);
    const [mine] = readdirSync(dir);
    expect(mine).toBeDefined();
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, mine as string)).mode & 0o777).toBe(0o600);
    // Another process's replayer renames it to claim it (here: to a name of a dead process).
    const claimed = spoolFileName(await deadPid());
    renameSync(join(dir, mine as string), join(dir, claimed));
    const second = record();
    expect(await owner.append(spoolLine(second)).durable).toBe(true);
    const files = readdirSync(dir).filter((f) => f !== claimed);
    expect(files.length).toBe(1);
    const rewritten = readFileSync(join(dir, files[0] as string), 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => parseSpoolLine(l)?.decision_id);
    expect(rewritten.sort()).toEqual([first.decision_id, second.decision_id].sort());
    // The owner's rows reach the database: its file goes, and the claimer's replay is harmless.
    owner.committed(e1);
    const replayed: string[] = [];
    const claimer = new FallbackSpool({ dir });
    await claimer.replay(async (rows) => void replayed.push(...rows.map((r) => r.decision_id)));
    expect(replayed).toContain(first.decision_id);
    expect(readdirSync(dir)).toEqual(files);
    await owner.close();
    // The second row never committed: its line stays for the next start.
    expect(readdirSync(dir)).toEqual(files);
    rmSync(dirname(dir), { recursive: true, force: true });
  });
});
