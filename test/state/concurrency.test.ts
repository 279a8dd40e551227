/**
 * Exactness under concurrency: limits and budgets across two OS processes sharing one PostgreSQL
 * (one process on PGlite, which has a single connection by design), one approval id for identical
 * concurrent calls, exactly one consumer of an approval, and migrations run twice and at once.
 */
import { expect, it } from 'vitest';
import { PostgresDatabase } from '../../src/state/db.js';
import { loadMigrations, migrate } from '../../src/state/migrate.js';
import type { Layer2Store } from '../../src/state/store.js';
import { admin, describeStores, request, rules, uniq } from './harness.js';
import { WorkerProcess } from './worker-process.js';

function tally(outcomes: string[]): Record<string, number> {
  const t: Record<string, number> = {};
  for (const o of outcomes) {
    const k = o.startsWith('pending:') ? 'pending' : o;
    t[k] = (t[k] ?? 0) + 1;
  }
  return t;
}

async function count(store: Layer2Store, sql: string, params: unknown[] = []): Promise<number> {
  const r = await store.db.query<{ n: unknown }>(sql, params);
  return Number(r.rows[0]?.n);
}

describeStores('concurrency', (env) => {
  it('200 simultaneous decisions against a limit and a budget of 50: exactly 50 allowed, 200 audit rows', async () => {
    const lim = uniq('lim');
    const bud = uniq('bud');
    const rs = rules({
      limits: { [lim]: { name: lim, max: 50, perSeconds: 3600, scope: 'global', action: 'deny' } },
      budgets: { [bud]: { name: bud, max: 50, scope: 'global' } },
    });
    const spec = { service: 'svc', tool: 'hot', limits: [lim], budgets: [bud] };
    let outcomes: string[];
    // A generous budget: this is about exact counts, not about latency on a shared 2-core box.
    const store = await env.open({ budgetMs: 20_000, poolSize: 10 });
    if (env.kind === 'postgres') {
      const url = await env.freshUrl();
      const mine = await env.open({ databaseUrl: url, budgetMs: 20_000 });
      await mine.close();
      const workers = [0, 1].map(
        () => new WorkerProcess('decide', { url, count: 100, spec, rules: rs, budgetMs: 20_000 }),
      );
      await Promise.all(workers.map((w) => w.waitFor((l) => l === 'ready')));
      for (const w of workers) w.send('go');
      const lines = await Promise.all(workers.map((w) => w.waitFor((l) => l.startsWith('['))));
      outcomes = lines.flatMap((l) => JSON.parse(l) as string[]);
      await Promise.all(workers.map((w) => w.exited));
      const check = await env.open({ databaseUrl: url });
      expect(await count(check, `SELECT count(*) AS n FROM audit_log WHERE tool = 'hot'`)).toBe(200);
      expect(await count(check, `SELECT count(*) AS n FROM audit_log WHERE tool = 'hot' AND outcome = 'allow'`)).toBe(
        50,
      );
      expect(await count(check, 'SELECT used AS n FROM budgets WHERE rule = $1', [bud])).toBe(50);
      expect(await count(check, 'SELECT cardinality(stamps) AS n FROM velocity WHERE rule = $1', [lim])).toBe(50);
    } else {
      outcomes = (await Promise.all(Array.from({ length: 200 }, () => store.decide(request(spec), rs)))).map(
        (o) => o.outcome,
      );
      expect(await count(store, `SELECT count(*) AS n FROM audit_log WHERE tool = 'hot'`)).toBe(200);
      expect(await count(store, 'SELECT used AS n FROM budgets WHERE rule = $1', [bud])).toBe(50);
    }
    expect(tally(outcomes)).toEqual({ allow: 50, deny: 150 });
  }, 120_000);

  it('20 concurrent identical calls share one approval; after approval, 20 concurrent retries let exactly one through', async () => {
    const store = await env.open({ budgetMs: 20_000 });
    const user = uniq('same');
    const spec = { user, outcome: 'require_approval' as const, args: { to: 'x@example.com', body: 'hi' } };
    const first = await Promise.all(Array.from({ length: 20 }, () => store.decide(request(spec), rules())));
    const ids = new Set(first.map((o) => (o.outcome === 'pending' ? o.approvalId : o.outcome)));
    expect(ids.size).toBe(1);
    const [id] = [...ids];
    expect(id).toMatch(/^ap-/);
    expect(await count(store, 'SELECT count(*) AS n FROM approvals WHERE user_id = $1', [user])).toBe(1);

    await store.approve(id as string, admin);
    const retries = await Promise.all(Array.from({ length: 20 }, () => store.decide(request(spec), rules())));
    expect(retries.filter((o) => o.outcome === 'allow').length).toBe(1);
    // The others see the approval consumed and share one new pending approval.
    const next = new Set(
      retries.filter((o) => o.outcome === 'pending').map((o) => (o.outcome === 'pending' ? o.approvalId : '')),
    );
    expect(retries.filter((o) => o.outcome === 'pending').length).toBe(19);
    expect(next.size).toBe(1);
    expect(next.has(id as string)).toBe(false);
  }, 60_000);

  it('migrations: a second run applies nothing', async () => {
    const store = await env.open();
    expect(await migrate(store.db)).toEqual([]);
    const versions = await store.db.query('SELECT version FROM schema_migrations ORDER BY version');
    expect(versions.rows.map((r) => Number(r['version']))).toEqual(loadMigrations().map((m) => m.version));
  });

  if (env.kind === 'postgres') {
    it('migrations: two processes starting at once on an empty database both succeed, applied once', async () => {
      const url = await env.freshUrl();
      const workers = [0, 1].map(() => new WorkerProcess('migrate', { url }));
      const lines = await Promise.all(workers.map((w) => w.waitFor((l) => l.startsWith('{'))));
      const applied = lines.map((l) => (JSON.parse(l) as { applied: number[] }).applied);
      const all = loadMigrations().map((m) => m.version);
      expect(applied.flat().sort((a, b) => a - b)).toEqual(all);
      const db = new PostgresDatabase({ connectionString: url, budgetMs: 5000, poolSize: 1 });
      const rows = await db.query('SELECT count(*) AS n FROM schema_migrations');
      expect(Number(rows.rows[0]?.['n'])).toBe(all.length);
      await db.close();
    }, 60_000);
  }
});
