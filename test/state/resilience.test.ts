/**
 * Restarts, outages and crashes: taint survives a restart; PGlite's data directory is locked
 * against a second process; a database that is down, or slower than the budget, gives a deny with
 * the reason and serving recovers by itself; a process killed with SIGKILL under load leaves no
 * answered allow without its audit row, counters that never went backwards, and a chain that
 * verifies once sealed.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { expect, it } from 'vitest';
import { DatabaseLockedError } from '../../src/state/db.js';
import { hashApiKey } from '../../src/identity/api-keys.js';
import { describeStores, request, rules, sleep, uniq } from './harness.js';
import { WorkerProcess } from './worker-process.js';

const flow = 'private to external';
const flowRules = rules({ flows: { [flow]: { name: flow, scope: 'user', ttlSeconds: null, action: 'deny' } } });

describeStores('resilience', (env) => {
  it('taint marks survive a restart of the store', async () => {
    const opts =
      env.kind === 'pglite' ? { pgliteDataDir: join(env.tmp(), 'db') } : { databaseUrl: await env.freshUrl() };
    const a = await env.open(opts);
    expect((await a.decide(request({ user: 'carol', sources: [flow] }), flowRules)).outcome).toBe('allow');
    await a.close();
    const b = await env.open(opts);
    const o = await b.decide(request({ user: 'carol', session: 'another', sinks: [flow] }), flowRules);
    expect(o).toMatchObject({ outcome: 'deny', rule: flow });
    await b.close();
  }, 60_000);

  if (env.kind === 'pglite') {
    it('the data directory is locked: a second opener, here or in another process, fails clearly', async () => {
      const dir = join(env.tmp(), 'db');
      const a = await env.open({ pgliteDataDir: dir });
      await expect(env.open({ pgliteDataDir: dir })).rejects.toBeInstanceOf(DatabaseLockedError);
      const w = new WorkerProcess('open', { dir });
      const line = await w.waitFor((l) => l.startsWith('error') || l === 'opened');
      expect(line).toMatch(
        /^error DatabaseLockedError: the embedded database at .* is in use by another mcpgw process \(pid \d+\)/,
      );
      expect(line).toContain('MCPGW_DATABASE_URL');
      await a.close();
      // Released on close: a new process may open it now.
      const w2 = new WorkerProcess('open', { dir });
      expect(await w2.waitFor((l) => l.startsWith('error') || l === 'opened')).toBe('opened');
    }, 60_000);

    it('a statement that cannot start within the budget is a deny, and still audited', async () => {
      const store = await env.open({ budgetMs: 150 });
      const busy = store.db.query('SELECT pg_sleep(0.5)');
      const req = request({ outcome: 'allow' });
      const o = await store.decide(req, rules());
      await busy;
      expect(o).toMatchObject({ outcome: 'deny', rule: null });
      expect(o.reasons[0]).toContain('within its 150 ms budget');
      const row = await store.db.query('SELECT outcome, reasons FROM audit_log WHERE decision_id = $1', [
        req.decisionId,
      ]);
      expect(row.rows[0]).toMatchObject({ outcome: 'deny' });
      expect((await store.decide(request(), rules())).outcome).toBe('allow');
    });

    it('SIGKILL under load (embedded): what was answered is on disk after reopening', async () => {
      const dir = join(env.tmp(), 'db');
      const b = uniq('crash-budget');
      const rs = rules({ budgets: { [b]: { name: b, max: 1_000_000, scope: 'global' } } });
      const seed = await env.open({ pgliteDataDir: dir });
      await seed.close();
      const w = new WorkerProcess('load', { dir, spec: { tool: 'crash', budgets: [b] }, rules: rs, inflight: 4 });
      await w.waitFor((l) => l.startsWith('A '), 60_000);
      await sleep(1500);
      await w.kill9();
      const answered = w.lines.filter((l) => l.startsWith('A ')).map((l) => l.slice(2));
      expect(answered.length).toBeGreaterThan(5);
      // The lock file of the killed process is stale: it is taken over.
      const after = await env.open({ pgliteDataDir: dir });
      const rows = await after.db.query<{ decision_id: string }>(
        `SELECT decision_id FROM audit_log WHERE tool = 'crash' AND outcome = 'allow'`,
      );
      const have = new Set(rows.rows.map((r) => r.decision_id));
      expect(answered.filter((id) => !have.has(id))).toEqual([]);
      const used = (await after.listBudgets(b))[0]?.used ?? 0;
      expect(used).toBe(have.size);
      await after.sealAudit();
      expect((await after.verifyAudit()).ok).toBe(true);
    }, 90_000);
  }

  if (env.kind === 'postgres') {
    it('a lock wait beyond the budget is a deny with the reason, audited on its own', async () => {
      const url = await env.freshUrl();
      const store = await env.open({ databaseUrl: url, budgetMs: 200 });
      const b = uniq('contended');
      const rs = rules({ budgets: { [b]: { name: b, max: 10, scope: 'global' } } });
      const holder = new pg.Client({ connectionString: url });
      await holder.connect();
      try {
        await holder.query('BEGIN');
        await holder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
          JSON.stringify(['budget', b, 'g']),
        ]);
        const req = request({ budgets: [b] });
        const t0 = Date.now();
        const o = await store.decide(req, rs);
        expect(Date.now() - t0).toBeLessThan(2000);
        expect(o.outcome).toBe('deny');
        expect(o.reasons[0]).toContain('within its 200 ms budget');
        const row = await store.db.query('SELECT outcome, detail FROM audit_log WHERE decision_id = $1', [
          req.decisionId,
        ]);
        // lock_timeout and statement_timeout share the budget; either may fire first.
        expect(row.rows[0]).toMatchObject({
          outcome: 'deny',
          detail: { failure: expect.stringMatching(/^(55P03|57014)$/) },
        });
      } finally {
        await holder.end();
      }
      expect((await store.decide(request({ budgets: [b] }), rs)).outcome).toBe('allow');
    });

    it('SIGKILL under load: every answered allow has its audit row, counters never went back, the chain verifies', async () => {
      const url = await env.freshUrl();
      const key = randomBytes(32);
      // This process seals while the other one decides, so the kill lands amid sealing too.
      const watcher = await env.open({ databaseUrl: url, auditKey: key, sealer: { intervalMs: 30 } });
      const b = uniq('crash-budget');
      const l = uniq('crash-limit');
      const rs = rules({
        budgets: { [b]: { name: b, max: 1_000_000, scope: 'global' } },
        limits: { [l]: { name: l, max: 100_000, perSeconds: 3600, scope: 'user', action: 'deny' } },
      });
      const w = new WorkerProcess('load', {
        url,
        spec: { tool: 'crash', budgets: [b], limits: [l] },
        rules: rs,
        inflight: 12,
      });
      const samples: number[] = [];
      await w.waitFor((x) => x.startsWith('A '), 60_000);
      const deadline = Date.now() + 20_000;
      while (w.lines.length < 200 && Date.now() < deadline) {
        samples.push((await watcher.listBudgets(b))[0]?.used ?? 0);
        await sleep(40);
      }
      await w.kill9();
      const answered = w.lines.filter((x) => x.startsWith('A ')).map((x) => x.slice(2));
      expect(answered.length).toBeGreaterThan(50);

      // Decisions already sent keep running on the server after the client died (each waits for
      // its turn on the locks, then commits), so the counts are read in one statement: one
      // snapshot, in which counter, window and audit rows must agree.
      const snap = await watcher.db.query<{ used: unknown; stamps: unknown; allows: unknown }>(
        `SELECT (SELECT used FROM budgets WHERE rule = $1) AS used,
                (SELECT cardinality(stamps) FROM velocity WHERE rule = $2) AS stamps,
                (SELECT count(*) FROM audit_log WHERE tool = 'crash' AND outcome = 'allow') AS allows`,
        [b, l],
      );
      const used = Number(snap.rows[0]?.used ?? 0);
      // Counter and audit rows commit together: equal, whatever was in flight at the kill.
      expect(used).toBe(Number(snap.rows[0]?.allows));
      expect(Number(snap.rows[0]?.stamps)).toBe(used);
      const rows = await watcher.db.query<{ decision_id: string }>(
        `SELECT decision_id FROM audit_log WHERE tool = 'crash' AND outcome = 'allow'`,
      );
      const have = new Set(rows.rows.map((r) => r.decision_id));
      expect(answered.filter((id) => !have.has(id))).toEqual([]);
      for (let i = 1; i < samples.length; i++) expect(samples[i]).toBeGreaterThanOrEqual(samples[i - 1] as number);
      expect(used).toBeGreaterThanOrEqual(samples[samples.length - 1] ?? 0);

      await watcher.sealAudit();
      expect(await watcher.verifyAudit({ unsealedAfterSeconds: 0 })).toMatchObject({ ok: true, unsealed: 0 });
    }, 120_000);

    // Last: it stops the suite's server.
    it('database down: decisions are denied with the reason, identity lookups fail, and serving recovers', async () => {
      const url = await env.freshUrl();
      const store = await env.open({ databaseUrl: url, sealer: { intervalMs: 50 }, identity: { maxStalenessMs: 0 } });
      await store.identity.createUser({ id: 'dora', role: 'agent' });
      const hash = hashApiKey('mcpgw_sk_example');
      await store.identity.addApiKey({ userId: 'dora', kind: 'sk', hash, displayId: 'exampl01' });
      expect((await store.decide(request(), rules())).outcome).toBe('allow');

      await env.server().stop('fast');
      const t0 = Date.now();
      const down = await store.decide(request(), rules());
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(down).toMatchObject({ outcome: 'deny', rule: null });
      expect(down.reasons[0]).toMatch(/unavailable|budget/);
      await expect(store.identity.findByApiKeyHash(hash)).rejects.toThrow();

      await env.server().start();
      let back = false;
      const until = Date.now() + 15_000;
      while (!back && Date.now() < until) {
        back = (await store.decide(request(), rules())).outcome === 'allow';
        if (!back) await sleep(100);
      }
      expect(back).toBe(true);
      expect((await store.identity.findByApiKeyHash(hash))?.principal.id).toBe('dora');
      // The sealer recovered too.
      await sleep(300);
      const deadline = Date.now() + 10_000;
      while ((await store.verifyAudit({ unsealedAfterSeconds: 3600 })).unsealed > 0 && Date.now() < deadline)
        await sleep(100);
      expect(await store.verifyAudit({ unsealedAfterSeconds: 0 })).toMatchObject({ ok: true, unsealed: 0 });
    }, 90_000);
  }
});
