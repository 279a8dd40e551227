/**
 * Every answered decision has exactly one audit row, the fail-closed denies of an overloaded or
 * unreachable database included: their rows are written outside the saturated pool, queued while
 * the database is down (and on disk in the spool before the deny is answered) and written when it
 * is back, and a full queue says how many it lost.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { expect, it } from 'vitest';
import type { Layer2Outcome } from '../../src/policy/layer2-types.js';
import { parseSpoolLine } from '../../src/state/fallback-spool.js';
import type { Layer2Store } from '../../src/state/store.js';
import { describeStores, request, rules, sleep, uniq } from './harness.js';

async function auditCounts(store: Layer2Store, ids: string[]): Promise<Map<string, { n: number; outcome: string }>> {
  const r = await store.db.query<{ decision_id: string; n: unknown; outcome: string }>(
    `SELECT decision_id, count(*) AS n, min(outcome) AS outcome FROM audit_log
      WHERE decision_id IN (SELECT jsonb_array_elements_text($1::jsonb)) GROUP BY decision_id`,
    [JSON.stringify(ids)],
  );
  return new Map(r.rows.map((x) => [x.decision_id, { n: Number(x.n), outcome: x.outcome }]));
}

/** Decision ids in the spool files under `home`. */
function spoolLines(home: string): string[] {
  const dir = join(home, 'spool');
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((f) =>
    readFileSync(join(dir, f), 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => parseSpoolLine(l)?.decision_id ?? 'unreadable'),
  );
}

async function until(what: string, ok: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Each answered decision has exactly one row, with the outcome that was answered. */
async function expectOneRowEach(store: Layer2Store, answered: [string, Layer2Outcome][]): Promise<void> {
  const rows = await auditCounts(
    store,
    answered.map(([id]) => id),
  );
  const wrong = answered.filter(([id, o]) => rows.get(id)?.n !== 1 || rows.get(id)?.outcome !== o.outcome);
  expect(wrong.map(([id, o]) => ({ id, answered: o.outcome, rows: rows.get(id) ?? null }))).toEqual([]);
}

describeStores('fail-closed denies are audited', (env) => {
  if (env.kind === 'postgres') {
    it('overload: with a pool of 2 stuck behind a lock, every answered decision has exactly one audit row', async () => {
      const url = await env.freshUrl();
      const store = await env.open({ databaseUrl: url, poolSize: 2, budgetMs: 250 });
      const hot = uniq('hot');
      const cold = uniq('cold');
      const rs = rules({
        budgets: {
          [hot]: { name: hot, max: 1_000_000, scope: 'global' },
          [cold]: { name: cold, max: 1_000_000, scope: 'user' },
        },
      });
      const holder = new pg.Client({ connectionString: url });
      await holder.connect();
      const answered: [string, Layer2Outcome][] = [];
      try {
        await holder.query('BEGIN');
        await holder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
          JSON.stringify(['budget', hot, 'g']),
        ]);
        // For 1.5 s a new call every 5 ms whatever the answers (as load from many agents), two in
        // three on the held key: each of those holds a pooled connection for its 250 ms on the
        // lock, so the pool of 2 stays saturated and its queue full of fresh calls throughout.
        const calls: Promise<void>[] = [];
        for (let i = 0; i < 300; i++) {
          const q =
            i % 3 < 2
              ? request({ tool: 'hot', budgets: [hot] })
              : request({ user: `u${i}`, tool: 'cold', budgets: [cold] });
          calls.push(store.decide(q, rs).then((o) => void answered.push([q.decisionId, o])));
          await sleep(5);
        }
        await Promise.all(calls);
      } finally {
        await holder.end();
      }
      const denied = answered.filter(([, o]) => o.outcome === 'deny');
      // Every call on the held key missed the budget, and cold ones too (pool waits).
      expect(answered.filter(([, o]) => o.outcome === 'allow').length).toBeLessThan(answered.length / 2);
      expect(denied.length).toBeGreaterThanOrEqual(200);
      for (const [, o] of denied) expect(o.reasons[0]).toContain('within its 250 ms budget');
      expect(store.fallbackAudit().dropped).toBe(0);
      await store.flushFallbackAudit();
      await expectOneRowEach(store, answered);
      const failed = await store.db.query<{ n: unknown }>(
        `SELECT count(*) AS n FROM audit_log WHERE detail ? 'failure' AND tool IN ('hot', 'cold')`,
      );
      expect(Number(failed.rows[0]?.n)).toBe(denied.length);
      // The pool recovered: the next decision on the released key is an allow.
      expect((await store.decide(request({ tool: 'hot', budgets: [hot] }), rs)).outcome).toBe('allow');
    }, 60_000);

    it('a full queue while the database is down drops the newest rows and says so', async () => {
      const url = await env.freshUrl();
      const store = await env.open({ databaseUrl: url, budgetMs: 200, fallbackAuditQueue: 3 });
      // Only this database goes away (the suite's server keeps serving the other tests).
      const admin = new pg.Client({ connectionString: env.server().url() });
      await admin.connect();
      try {
        const name = new URL(url).pathname.slice(1);
        await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
        await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [name]);
        const reqs = Array.from({ length: 5 }, () => request({ tool: 'down' }));
        const outcomes: Layer2Outcome[] = [];
        for (const q of reqs) outcomes.push(await store.decide(q, rules()));
        expect(outcomes.map((o) => o.outcome)).toEqual(['deny', 'deny', 'deny', 'deny', 'deny']);
        expect(store.fallbackAudit()).toEqual({ pending: 3, dropped: 2, unspooled: 0 });
        await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
        await until('the queued rows', async () => store.fallbackAudit().pending === 0);
        const rows = await auditCounts(
          store,
          reqs.map((q) => q.decisionId),
        );
        expect(reqs.map((q) => rows.get(q.decisionId)?.n ?? 0)).toEqual([1, 1, 1, 0, 0]);
      } finally {
        await admin.end();
      }
    }, 60_000);

    // Last: it stops the suite's server.
    it('database down: the denies are answered at once, their rows are written when it is back, exactly once', async () => {
      const url = await env.freshUrl();
      const home = env.tmp();
      const store = await env.open({ databaseUrl: url, home, budgetMs: 250 });
      const before = request({ tool: 'up' });
      expect((await store.decide(before, rules())).outcome).toBe('allow');
      await env.server().stop('fast');
      const reqs = Array.from({ length: 12 }, () => request({ tool: 'down' }));
      const t0 = Date.now();
      const outcomes = await Promise.all(reqs.map((q) => store.decide(q, rules())));
      expect(Date.now() - t0).toBeLessThan(3000);
      for (const o of outcomes) expect(o).toMatchObject({ outcome: 'deny', rule: null });
      expect(store.fallbackAudit()).toEqual({ pending: 12, dropped: 0, unspooled: 0 });
      // Each answered deny's row was on disk first (fallback-spool.test.ts kills a process here).
      const spooled = spoolLines(home);
      expect(spooled.sort()).toEqual(reqs.map((q) => q.decisionId).sort());
      await env.server().start();
      await until('the queued rows', async () => store.fallbackAudit().pending === 0);
      // Written to the database, the spool file has no more reason to exist.
      await until('the spool file to go', async () => spoolLines(home).length === 0);
      expect(readdirSync(join(home, 'spool'))).toEqual([]);
      await expectOneRowEach(store, [
        [before.decisionId, { outcome: 'allow', rule: null, reasons: [] }],
        ...reqs.map((q, i): [string, Layer2Outcome] => [q.decisionId, outcomes[i] as Layer2Outcome]),
      ]);
      // `at` is database time, when the row landed; the answer left before, as `answered_at` says.
      const times = await store.db.query<{ at: Date; answered: string }>(
        `SELECT at, detail->>'answered_at' AS answered FROM audit_log
          WHERE decision_id IN (SELECT jsonb_array_elements_text($1::jsonb))`,
        [JSON.stringify(reqs.map((q) => q.decisionId))],
      );
      expect(times.rows.length).toBe(12);
      for (const t of times.rows) {
        expect(new Date(t.answered).getTime()).toBeGreaterThanOrEqual(t0);
        expect(new Date(t.answered).getTime()).toBeLessThan(new Date(t.at).getTime());
      }
    }, 90_000);
  } else {
    it('a busy embedded database: calls that cannot start in time are denied, and each has one audit row', async () => {
      const store = await env.open({ budgetMs: 100 });
      const busy = store.db.query('SELECT pg_sleep(0.4)');
      const reqs = Array.from({ length: 20 }, (_, i) => request({ user: `p${i}`, tool: 'busy' }));
      const outcomes = await Promise.all(reqs.map((q) => store.decide(q, rules())));
      await busy;
      expect(outcomes.every((o) => o.outcome === 'deny')).toBe(true);
      await store.flushFallbackAudit();
      await expectOneRowEach(
        store,
        reqs.map((q, i): [string, Layer2Outcome] => [q.decisionId, outcomes[i] as Layer2Outcome]),
      );
      expect((await store.decide(request(), rules())).outcome).toBe('allow');
    });
  }
});
