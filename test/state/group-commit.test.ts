/**
 * Group commit on PGlite (src/state/decide-batch.ts): decisions that queue while the embedded
 * database is busy run as one statement and one commit, and each caller still gets exactly what
 * the same decisions run one after another would give. Checked against a second store that runs
 * every decision alone (`groupCommitMax: 1`), on the semantics that depend on a decision seeing
 * the writes of the ones before it: velocity limits, budgets, taint, one pending approval per key,
 * the per-user approval quota and single consumption of an approval. Also: a failed batch answers
 * nobody from its rolled-back statement (the culprit alone fails closed, with its audit row), the
 * budget of each decision still holds, a decision on an idle database runs at once, alone, and
 * requests handled in one turn of the event loop after the database ran in it share a commit.
 */
import fc from 'fast-check';
import { beforeAll, expect, it } from 'vitest';
import type { Layer2Outcome, Layer2Request, Layer2Rules } from '../../src/policy/layer2-types.js';
import type { Layer2Store } from '../../src/state/store.js';
import { admin, describeStores, request, rules, uniq, type ReqSpec } from './harness.js';

/** Fired in one synchronous loop, so they all queue before the database can start the first. */
function together(store: Layer2Store, reqs: Layer2Request[], rs: Layer2Rules): Promise<Layer2Outcome[]> {
  return Promise.all(reqs.map((r) => store.decide(r, rs)));
}

async function oneByOne(store: Layer2Store, reqs: Layer2Request[], rs: Layer2Rules): Promise<Layer2Outcome[]> {
  const out: Layer2Outcome[] = [];
  for (const r of reqs) out.push(await store.decide(r, rs));
  return out;
}

/**
 * What must match between two runs: approval ids are random per store, so each is replaced by the
 * order in which it first appeared; retry times follow the clock, so only their presence counts.
 */
function comparable(outs: Layer2Outcome[]): unknown[] {
  const ids = new Map<string, string>();
  const alias = (id: string): string => {
    if (!ids.has(id)) ids.set(id, `approval#${ids.size + 1}`);
    return ids.get(id) as string;
  };
  return outs.map((o) => ({
    outcome: o.outcome,
    rule: o.rule,
    reasons: o.reasons.map((r) => r.replace(/ap-[0-9A-Z]{10}/g, alias)),
    approval: o.outcome === 'pending' ? alias(o.approvalId) : null,
    retry: o.outcome === 'deny' && o.retryAfterSeconds !== undefined,
  }));
}

async function auditRows(store: Layer2Store, ids: string[]): Promise<Map<string, { n: number; outcome: string }>> {
  const r = await store.db.query<{ decision_id: string; n: unknown; outcome: string }>(
    `SELECT decision_id, count(*) AS n, min(outcome) AS outcome FROM audit_log
      WHERE decision_id IN (SELECT jsonb_array_elements_text($1::jsonb)) GROUP BY decision_id`,
    [JSON.stringify(ids)],
  );
  return new Map(r.rows.map((x) => [x.decision_id, { n: Number(x.n), outcome: x.outcome }]));
}

/** Every answered decision has exactly one audit row, with the outcome it was answered. */
async function expectOneRowEach(store: Layer2Store, reqs: Layer2Request[], outs: Layer2Outcome[]): Promise<void> {
  const rows = await auditRows(
    store,
    reqs.map((r) => r.decisionId),
  );
  const wrong = reqs
    .map((r, k) => ({ id: r.decisionId, answered: outs[k]?.outcome, row: rows.get(r.decisionId) ?? null }))
    .filter((x) => x.row?.n !== 1 || x.row.outcome !== x.answered);
  expect(wrong).toEqual([]);
}

async function count(store: Layer2Store, sql: string, params: unknown[] = []): Promise<number> {
  const r = await store.db.query<{ n: unknown }>(sql, params);
  return Number(r.rows[0]?.n ?? 0);
}

describeStores(
  'group commit of decisions',
  (env) => {
    let batched: Layer2Store;
    let alone: Layer2Store;
    beforeAll(async () => {
      // Generous budgets: this is about exact results, not about latency on a shared machine.
      batched = await env.open({ budgetMs: 20_000, maxPendingPerUser: 3 });
      alone = await env.open({ budgetMs: 20_000, maxPendingPerUser: 3, groupCommitMax: 1 });
    });

    /** Runs the same requests batched on one store and one by one on the other; returns both. */
    async function both(
      specs: ReqSpec[],
      rs: Layer2Rules,
    ): Promise<{ got: Layer2Outcome[]; want: Layer2Outcome[]; reqs: Layer2Request[] }> {
      const reqs = specs.map((s) => request(s));
      const before = batched.groupCommitStats();
      const got = await together(batched, reqs, rs);
      const after = batched.groupCommitStats();
      // All of them in one statement: the proof that the batch path is what ran.
      expect(after && before && after.batches - before.batches).toBe(1);
      expect(after && before && after.batchedDecisions - before.batchedDecisions).toBe(reqs.length);
      const want = await oneByOne(
        alone,
        specs.map((s) => request(s)),
        rs,
      );
      return { got, want, reqs };
    }

    it('a decision on an idle database runs at once and alone; the other store never batches', async () => {
      const s0 = batched.groupCommitStats();
      const o = await batched.decide(request(), rules());
      expect(o.outcome).toBe('allow');
      const s1 = batched.groupCommitStats();
      expect(
        s1 &&
          s0 && {
            statements: s1.statements - s0.statements,
            batches: s1.batches - s0.batches,
            deferred: s1.deferred - s0.deferred,
          },
      ).toEqual({ statements: 1, batches: 0, deferred: 0 });
      await together(
        alone,
        Array.from({ length: 10 }, () => request()),
        rules(),
      );
      expect(alone.groupCommitStats()).toMatchObject({ batches: 0, batchedDecisions: 0 });
    });

    it('requests handled in separate tasks of one event-loop turn share a commit once the database ran in that turn', async () => {
      const rs = rules();
      const inTasks = async (store: Layer2Store): Promise<Layer2Outcome[]> => {
        // Like requests read from three sockets in one poll phase: separate tasks, microtasks
        // drained between them, all before the check phase of the next turn.
        await new Promise<void>((r) => setTimeout(r, 5));
        const tasks = [0, 1, 2].map(
          () =>
            new Promise<Layer2Outcome>((resolve) => {
              setImmediate(() => {
                void store.decide(request(), rs).then(resolve);
              });
            }),
        );
        return Promise.all(tasks);
      };
      const s0 = batched.groupCommitStats();
      const outs = await inTasks(batched);
      const s1 = batched.groupCommitStats();
      expect(outs.map((o) => o.outcome)).toEqual(['allow', 'allow', 'allow']);
      // The first ran at once, alone; the other two waited for the end of the turn, together.
      expect(
        s1 &&
          s0 && {
            statements: s1.statements - s0.statements,
            batches: s1.batches - s0.batches,
            batched: s1.batchedDecisions - s0.batchedDecisions,
            deferred: s1.deferred - s0.deferred,
          },
      ).toEqual({ statements: 2, batches: 1, batched: 2, deferred: 1 });

      const off = await env.open({ budgetMs: 20_000, groupCommitSameTurn: false });
      expect((await inTasks(off)).map((o) => o.outcome)).toEqual(['allow', 'allow', 'allow']);
      expect(off.groupCommitStats()).toMatchObject({ statements: 3, batches: 0, deferred: 0 });
    });

    it('a velocity limit and a budget of N, with 3N identical calls in one batch: exactly N allowed, as one by one', async () => {
      const n = 5;
      const lim = uniq('lim');
      const bud = uniq('bud');
      const rs = rules({
        limits: { [lim]: { name: lim, max: n, perSeconds: 3600, scope: 'user', action: 'deny' } },
        budgets: { [bud]: { name: bud, max: n, scope: 'user' } },
      });
      const user = uniq('velo');
      const { got, want, reqs } = await both(
        Array.from({ length: 3 * n }, () => ({ user, limits: [lim], budgets: [bud] })),
        rs,
      );
      expect(got.map((o) => o.outcome)).toEqual([
        ...Array<string>(n).fill('allow'),
        ...Array<string>(2 * n).fill('deny'),
      ]);
      expect(comparable(got)).toEqual(comparable(want));
      await expectOneRowEach(batched, reqs, got);
      expect(await count(batched, 'SELECT cardinality(stamps) AS n FROM velocity WHERE rule = $1', [lim])).toBe(n);
      expect(await count(batched, 'SELECT used AS n FROM budgets WHERE rule = $1', [bud])).toBe(n);
    });

    it('a taint source and a sink in one batch: the sink sees the mark only when the source came first', async () => {
      const flow = uniq('flow');
      const rs = rules({ flows: { [flow]: { name: flow, scope: 'user', ttlSeconds: null, action: 'deny' } } });
      const user = uniq('taint');
      const { got, want } = await both(
        [
          { user, sinks: [flow] },
          { user, sources: [flow] },
          { user, sinks: [flow] },
          { user, sinks: [flow], session: 'another' },
        ],
        rs,
      );
      expect(got.map((o) => o.outcome)).toEqual(['allow', 'allow', 'deny', 'deny']);
      expect(comparable(got)).toEqual(comparable(want));
    });

    it('20 identical calls needing approval in one batch share one approval; after approval, 20 retries in one batch let exactly one through', async () => {
      const user = uniq('same');
      const spec: ReqSpec = { user, outcome: 'require_approval', args: { to: 'x@example.com', body: 'hi' } };
      const first = await both(
        Array.from({ length: 20 }, () => spec),
        rules(),
      );
      const ids = new Set(first.got.map((o) => (o.outcome === 'pending' ? o.approvalId : o.outcome)));
      expect(ids.size).toBe(1);
      const [id] = [...ids];
      expect(id).toMatch(/^ap-/);
      expect(comparable(first.got)).toEqual(comparable(first.want));
      expect(await count(batched, 'SELECT count(*) AS n FROM approvals WHERE user_id = $1', [user])).toBe(1);

      await batched.approve(id as string, admin);
      const s0 = batched.groupCommitStats();
      const retries = await together(
        batched,
        Array.from({ length: 20 }, () => request(spec)),
        rules(),
      );
      expect(batched.groupCommitStats()?.batches).toBe((s0?.batches ?? 0) + 1);
      // The first in the batch consumes it; the others find it consumed and share one new approval.
      expect(retries[0]).toMatchObject({ outcome: 'allow' });
      expect(retries.filter((o) => o.outcome === 'allow').length).toBe(1);
      const next = new Set(retries.flatMap((o) => (o.outcome === 'pending' ? [o.approvalId] : [])));
      expect(retries.filter((o) => o.outcome === 'pending').length).toBe(19);
      expect(next.size).toBe(1);
      expect(next.has(id as string)).toBe(false);
      expect(
        await count(batched, 'SELECT count(*) AS n FROM approvals WHERE id = $1 AND consumed_at IS NOT NULL', [id]),
      ).toBe(1);
    });

    it('two retries of an approved call in one batch: consumed once, by the first', async () => {
      const user = uniq('twice');
      const spec: ReqSpec = { user, outcome: 'require_approval', args: { n: 1 } };
      const pending = await batched.decide(request(spec), rules());
      if (pending.outcome !== 'pending') throw new Error(`expected pending, got ${pending.outcome}`);
      await batched.approve(pending.approvalId, admin);
      const reqs = [request(spec), request(spec)];
      const outs = await together(batched, reqs, rules());
      expect(outs.map((o) => o.outcome)).toEqual(['allow', 'pending']);
      const r = await batched.db.query<{ consumed_by: string }>('SELECT consumed_by FROM approvals WHERE id = $1', [
        pending.approvalId,
      ]);
      expect(r.rows).toEqual([{ consumed_by: reqs[0]?.decisionId }]);
    });

    it('the per-user quota of pending approvals holds within one batch', async () => {
      const user = uniq('quota');
      const { got, want } = await both(
        Array.from({ length: 5 }, (_, k) => ({ user, outcome: 'require_approval' as const, args: { k } })),
        rules(),
      );
      expect(got.map((o) => o.outcome)).toEqual(['pending', 'pending', 'pending', 'deny', 'deny']);
      expect(comparable(got)).toEqual(comparable(want));
    });

    it('random mixes of limits, budgets, flows and approvals decide in a batch as one by one', async () => {
      const lim = uniq('mix-lim');
      const bud = uniq('mix-bud');
      const flow = uniq('mix-flow');
      const rs = rules({
        limits: { [lim]: { name: lim, max: 3, perSeconds: 3600, scope: 'user', action: 'require_approval' } },
        budgets: { [bud]: { name: bud, max: 4, scope: 'global' } },
        flows: { [flow]: { name: flow, scope: 'user', ttlSeconds: 600, action: 'deny' } },
      });
      const call = fc.record({
        user: fc.constantFrom('u1', 'u2'),
        kind: fc.constantFrom('limit', 'budget', 'source', 'sink', 'approval', 'plain', 'l1deny'),
        arg: fc.integer({ min: 0, max: 2 }),
      });
      let round = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(call, { minLength: 2, maxLength: 24 }), async (calls) => {
          // Fresh users per round (and a budget counted globally per round), so rounds start clean.
          const r = ++round;
          const roundRules = rules({
            ...rs,
            budgets: { [`${bud}-${r}`]: { name: `${bud}-${r}`, max: 4, scope: 'global' } },
          });
          const specs: ReqSpec[] = calls.map((c) => {
            const user = `${c.user}-${r}-${lim}`;
            const args = { arg: c.arg };
            switch (c.kind) {
              case 'limit':
                return { user, args, limits: [lim] };
              case 'budget':
                return { user, args, budgets: [`${bud}-${r}`] };
              case 'source':
                return { user, args, sources: [flow] };
              case 'sink':
                return { user, args, sinks: [flow] };
              case 'approval':
                return { user, args, outcome: 'require_approval' as const };
              case 'l1deny':
                return { user, args, outcome: 'deny' as const, limits: [lim] };
              default:
                return { user, args };
            }
          });
          const { got, want, reqs } = await both(specs, roundRules);
          expect(comparable(got)).toEqual(comparable(want));
          await expectOneRowEach(batched, reqs, got);
        }),
        { numRuns: 25 },
      );
    });

    it('a decision that fails inside a batch fails closed alone, with its audit row; the others are decided once', async () => {
      const bud = uniq('iso-bud');
      const huge = uniq('iso-huge');
      const rs = rules({
        budgets: { [bud]: { name: bud, max: 100, scope: 'global' } },
        // Valid to the rule checks, but beyond the integer the SQL casts it to: that one statement fails.
        limits: { [huge]: { name: huge, max: 3_000_000_000, perSeconds: 1, scope: 'user', action: 'deny' } },
      });
      const reqs = [
        request({ budgets: [bud] }),
        request({ budgets: [bud], limits: [huge] }),
        request({ budgets: [bud] }),
        request({ budgets: [bud] }),
      ];
      const s0 = batched.groupCommitStats();
      const outs = await together(batched, reqs, rs);
      const s1 = batched.groupCommitStats();
      expect(s1 && s0 && s1.failedBatches - s0.failedBatches).toBe(1);
      // The batch and then each of the four alone.
      expect(s1 && s0 && s1.statements - s0.statements).toBe(5);
      expect(outs.map((o) => o.outcome)).toEqual(['allow', 'deny', 'allow', 'allow']);
      expect(outs[1]?.reasons[0]).toContain('the state store failed (SQLSTATE 22003)');
      await batched.flushFallbackAudit();
      await expectOneRowEach(batched, reqs, outs);
      const failed = await batched.db.query('SELECT detail FROM audit_log WHERE decision_id = $1', [
        reqs[1]?.decisionId,
      ]);
      expect(failed.rows[0]).toMatchObject({ detail: { failure: '22003' } });
      // The rolled-back batch counted nothing: three allows, three uses.
      expect(await count(batched, 'SELECT used AS n FROM budgets WHERE rule = $1', [bud])).toBe(3);
    });

    it('decisions queued behind a busy database beyond their budget are denied, each with its audit row', async () => {
      const store = await env.open({ budgetMs: 150 });
      const busy = store.db.query('SELECT pg_sleep(0.4)');
      const reqs = Array.from({ length: 6 }, () => request());
      const outs = await together(store, reqs, rules());
      await busy;
      expect(outs.every((o) => o.outcome === 'deny' && o.reasons[0]?.includes('within its 150 ms budget'))).toBe(true);
      expect(store.groupCommitStats()).toMatchObject({ expired: 6, batches: 0 });
      await store.flushFallbackAudit();
      await expectOneRowEach(store, reqs, outs);
      // Serving goes on: the next ones are decided, together.
      const later = await together(
        store,
        Array.from({ length: 3 }, () => request()),
        rules(),
      );
      expect(later.map((o) => o.outcome)).toEqual(['allow', 'allow', 'allow']);
      expect(store.groupCommitStats()).toMatchObject({ batches: 1, largestBatch: 3 });
    });

    it('at most groupCommitMax decisions per statement; the rest follow in the next ones', async () => {
      const store = await env.open({ budgetMs: 20_000, groupCommitMax: 4 });
      const bud = uniq('cap');
      const rs = rules({ budgets: { [bud]: { name: bud, max: 7, scope: 'global' } } });
      const reqs = Array.from({ length: 10 }, () => request({ budgets: [bud] }));
      const outs = await together(store, reqs, rs);
      expect(outs.map((o) => o.outcome)).toEqual([...Array<string>(7).fill('allow'), 'deny', 'deny', 'deny']);
      expect(store.groupCommitStats()).toMatchObject({
        statements: 3,
        batches: 3,
        largestBatch: 4,
        batchedDecisions: 10,
      });
      await expectOneRowEach(store, reqs, outs);
    });

    it('a closed database: queued decisions are denied as unavailable, never answered otherwise', async () => {
      const store = await env.open({ budgetMs: 200, fallbackAuditSpool: env.tmp() });
      await store.db.close();
      const outs = await together(
        store,
        Array.from({ length: 4 }, () => request()),
        rules(),
      );
      expect(outs.map((o) => [o.outcome, o.reasons[0]])).toEqual(
        Array.from({ length: 4 }, () => ['deny', 'the state store is unavailable']),
      );
      expect(store.fallbackAudit().pending).toBe(4);
    });
  },
  ['pglite'],
);
