/**
 * The audit write-behind on PGlite (src/state/audit-write-behind.ts): a call that only needs its
 * audit row is answered once the row is journaled, and the row reaches `audit_log` after, sealed
 * as it is inserted. It must write the row mcpgw_audit_allow writes, keep the chain whole next to
 * rows of stateful decisions, be seen by every statement issued after the answer, survive a
 * SIGKILL before any insert, and refuse (so the call goes through the database and fails closed
 * there) when inserting fails.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { parseJournal } from '../../src/state/audit-write-behind.js';
import { buildDecideInput, type DecideConfig } from '../../src/state/decide.js';
import type { Layer2Store } from '../../src/state/store.js';
import { AUDIT_ONLY, describeStores, request, rules } from './harness.js';
import { WorkerProcess } from './worker-process.js';

const cfg: DecideConfig = {
  approvalDefaults: { approvers: [], timeoutSeconds: 1800, consumeWithinSeconds: 900 },
  maxPendingPerUser: 10,
};

const COLUMNS = `user_id, session_id, method, service, tool, outcome, rule, reasons, policy_revision, digest,
  approval_id, detail`;

const journals = (dir: string): string[] => readdirSync(dir).filter((n) => n.startsWith('audit-journal.'));

describeStores(
  'audit write-behind',
  (env) => {
    const open = (opts: Parameters<typeof env.open>[0] = {}): Promise<Layer2Store> =>
      env.open({ auditWriteBehind: true, ...opts });

    it('writes the row mcpgw_audit_allow writes, answers the same, and every later statement sees it', async () => {
      const home = env.tmp();
      const store = await open({ home });
      const specs = AUDIT_ONLY;
      for (const spec of specs) {
        const a = request(spec);
        const b = { ...a, decisionId: `${a.decisionId}-ref` };
        const answer = await store.decide(a, rules());
        // No turn of the event loop in between: the query queues behind the pending row.
        const row = await store.db.query(`SELECT ${COLUMNS} FROM audit_log WHERE decision_id = $1`, [a.decisionId]);
        const ref = await store.db.query<{ r: unknown }>('SELECT mcpgw_audit_allow($1::jsonb) AS r', [
          JSON.stringify(buildDecideInput(b, rules(), cfg)),
        ]);
        const refRow = await store.db.query(`SELECT ${COLUMNS} FROM audit_log WHERE decision_id = $1`, [b.decisionId]);
        expect(row.rows, JSON.stringify(spec)).toHaveLength(1);
        expect(row.rows, JSON.stringify(spec)).toEqual(refRow.rows);
        expect(answer).toEqual({ outcome: 'allow', rule: a.layer1.rule, reasons: a.layer1.reasons });
        expect(ref.rows[0]?.r).toMatchObject({ outcome: 'allow', rule: a.layer1.rule, reasons: a.layer1.reasons });
      }
      expect(store.writeBehindStats()).toMatchObject({ recorded: specs.length, inserted: specs.length, refused: 0 });
      await store.close();
      // Every row is in: no journal is left behind.
      expect(journals(join(home, 'spool'))).toEqual([]);
    });

    it('seals as it inserts, between rows of stateful decisions sealed by the sealer: one gap-free chain', async () => {
      const b = 'wb-budget';
      const rs = rules({ budgets: { [b]: { name: b, max: 1_000_000, scope: 'global' } } });
      const store = await open({ sealer: { intervalMs: 5, batchSize: 3 } });
      const answered: string[] = [];
      for (let round = 0; round < 30; round++) {
        // Some calls in flight together, audit-only and stateful mixed.
        const reqs = Array.from({ length: 1 + (round % 4) }, (_, i) =>
          request((round + i) % 3 === 0 ? { budgets: [b] } : { tool: 'plain' }),
        );
        const outs = await Promise.all(reqs.map((r) => store.decide(r, rs)));
        outs.forEach((o, i) => {
          if (o.outcome === 'allow') answered.push(reqs[i]?.decisionId ?? '');
        });
        await new Promise((r) => setTimeout(r, round % 5));
      }
      await store.flushAudit();
      await store.sealAudit();
      const report = await store.verifyAudit();
      expect(report.ok, JSON.stringify(report)).toBe(true);
      const rows = await store.db.query<{ decision_id: string; seq: unknown }>(
        'SELECT decision_id, seq FROM audit_log ORDER BY seq',
      );
      expect(rows.rows.map((r) => r.decision_id).sort()).toEqual([...answered].sort());
      expect(rows.rows.map((r) => Number(r.seq))).toEqual(rows.rows.map((_, i) => i + 1));
      const stats = store.writeBehindStats();
      // Most audit-only rows were sealed on insert; the sealer's rows forced re-reads of the head.
      expect(stats?.sealed).toBeGreaterThan(10);
      expect(stats?.resealed).toBeGreaterThan(0);
      expect(stats?.sealed).toBe(stats?.inserted);
    });

    it('SIGKILL before any insert: every answered call has its row after reopening, and the chain verifies', async () => {
      const dir = env.tmp();
      const key = randomBytes(32);
      const w = new WorkerProcess('journal', { dir, count: 40, spec: { tool: 'journaled' }, key: key.toString('hex') });
      const done = await w.waitFor((l) => l.startsWith('done '), 60_000);
      // The worker inserted nothing itself: its rows exist only in its journal.
      expect(JSON.parse(done.slice(5))).toMatchObject({ recorded: 40, inserted: 0 });
      await w.kill9();
      const answered = w.lines.filter((l) => l.startsWith('A ')).map((l) => l.slice(2));
      expect(answered).toHaveLength(40);
      expect(journals(join(dir, 'spool'))).toHaveLength(1);
      const after = await open({ home: dir, pgliteDataDir: join(dir, 'db'), auditKey: key });
      const rows = await after.db.query<{ decision_id: string }>(
        `SELECT decision_id FROM audit_log WHERE tool = 'journaled' AND outcome = 'allow'`,
      );
      expect(rows.rows.map((r) => r.decision_id).sort()).toEqual([...answered].sort());
      expect(after.writeBehindStats()?.replayed).toBe(40);
      expect(journals(join(dir, 'spool'))).toEqual([]);
      await after.sealAudit();
      expect((await after.verifyAudit()).ok).toBe(true);
    }, 90_000);

    it('a torn last line is skipped, a bad line before it keeps the file aside; the readable rows are inserted', async () => {
      const home = env.tmp();
      const spool = join(home, 'spool');
      const seed = await open({ home, pgliteDataDir: join(home, 'db') });
      await seed.close();
      const line = (id: string): string =>
        `${JSON.stringify({
          decision_id: id,
          at: new Date().toISOString(),
          user_id: 'u',
          session_id: null,
          method: 'tools/call',
          service: 's',
          tool: 't',
          rule: 'r',
          reasons: [],
          policy_revision: 'rev',
          digest: null,
        })}\n`;
      writeFileSync(
        join(spool, 'audit-journal.99999.0000000000000001.jsonl'),
        `${line('j-1')}${line('j-2')}{"decision_id":"j-`,
        {
          mode: 0o600,
        },
      );
      writeFileSync(
        join(spool, 'audit-journal.99998.0000000000000002.jsonl'),
        `${line('j-3')}not json\n${line('j-4')}`,
        {
          mode: 0o600,
        },
      );
      expect(parseJournal(`${line('x')}{"torn`)).toMatchObject({ torn: true, bad: 0 });
      const store = await open({ home, pgliteDataDir: join(home, 'db') });
      const rows = await store.db.query<{ decision_id: string }>(
        `SELECT decision_id FROM audit_log WHERE decision_id LIKE 'j-%' ORDER BY decision_id`,
      );
      expect(rows.rows.map((r) => r.decision_id)).toEqual(['j-1', 'j-2', 'j-3', 'j-4']);
      expect(readdirSync(spool).sort()).toEqual(['audit-journal.99998.0000000000000002.jsonl.rejected']);
    });

    it('when inserting fails, calls go through the database (and are denied there) until it recovers; no row is lost', async () => {
      const store = await open({ auditWriteBehind: { retryMs: 50 } });
      const first = request({ tool: 'outage' });
      await store.db.query('ALTER TABLE audit_log RENAME TO audit_log_away');
      // Journaled and answered; its insert fails in the background.
      expect((await store.decide(first, rules())).outcome).toBe('allow');
      await store.flushAudit();
      const during = request({ tool: 'outage' });
      const o = await store.decide(during, rules());
      expect(o.outcome).toBe('deny');
      expect(store.writeBehindStats()?.refused).toBeGreaterThan(0);
      await store.db.query('ALTER TABLE audit_log_away RENAME TO audit_log');
      // The retry inserts the journaled row, and calls are written behind again.
      for (let i = 0; i < 100 && (store.writeBehindStats()?.inserted ?? 0) < 1; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      const after = request({ tool: 'outage' });
      expect((await store.decide(after, rules())).outcome).toBe('allow');
      const rows = await store.db.query<{ decision_id: string; outcome: string }>(
        `SELECT decision_id, outcome FROM audit_log WHERE tool = 'outage'`,
      );
      const got = Object.fromEntries(rows.rows.map((r) => [r.decision_id, r.outcome]));
      expect(got[first.decisionId]).toBe('allow');
      expect(got[after.decisionId]).toBe('allow');
      expect(store.writeBehindStats()?.inserted).toBe(2);
    });

    it('inserts when no call is in flight, and while calls keep coming no later than its bound', async () => {
      const store = await open({ auditWriteBehind: { quietMs: 5, maxDelayMs: 2000 } });
      const inserted = (): number => store.writeBehindStats()?.inserted ?? 0;
      const until = async (n: number, ms: number): Promise<void> => {
        for (const end = Date.now() + ms; inserted() < n && Date.now() < end;) {
          await new Promise((r) => setTimeout(r, 10));
        }
      };
      let busy = true;
      store.setBusyProbe(() => busy);
      await store.decide(request({ tool: 'probe' }), rules());
      await new Promise((r) => setTimeout(r, 150));
      // Busy: the quiet timer expired many times over, and the row still waits (no query ran).
      expect(inserted()).toBe(0);
      busy = false;
      await until(1, 1000);
      expect(inserted()).toBe(1);
      busy = true;
      const t0 = Date.now();
      await store.decide(request({ tool: 'probe' }), rules());
      await until(2, 10_000);
      expect(inserted()).toBe(2);
      // Timers never fire early: it waited for its bound, not for the calls to stop.
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1990);
    });

    it('a full queue refuses: the call is decided through the database as before', async () => {
      const store = await open({ auditWriteBehind: { maxQueue: 0 } });
      const req = request({ tool: 'full' });
      expect((await store.decide(req, rules())).outcome).toBe('allow');
      expect(store.writeBehindStats()).toMatchObject({ recorded: 0, refused: 1 });
      const row = await store.db.query('SELECT outcome FROM audit_log WHERE decision_id = $1', [req.decisionId]);
      expect(row.rows).toEqual([{ outcome: 'allow' }]);
    });
  },
  ['pglite'],
);
