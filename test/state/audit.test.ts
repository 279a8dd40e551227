/**
 * The audit chain on both stores: rows commit unsealed, the sealer numbers them gap-free and
 * chains them with the HMAC key from outside the database, and verify finds modified, deleted and
 * reordered rows and rows left unsealed.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import type { Layer2Store } from '../../src/state/store.js';
import { verifyAudit } from '../../src/state/audit.js';
import { describeStores, request, rules, sleep } from './harness.js';

async function decideN(store: Layer2Store, n: number, tool = 'audited'): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const req = request({ tool, outcome: i % 3 === 0 ? 'deny' : 'allow' });
    ids.push(req.decisionId);
    await store.decide(req, rules());
  }
  return ids;
}

async function seqs(store: Layer2Store): Promise<number[]> {
  const r = await store.db.query('SELECT seq FROM audit_log WHERE seq IS NOT NULL ORDER BY seq');
  return r.rows.map((x) => Number(x['seq']));
}

describeStores('audit chain', (env) => {
  let store: Layer2Store;
  beforeAll(async () => {
    store = await env.open();
  });

  it('seals gap-free in batches and verifies; rows stay unsealed until the sealer runs', async () => {
    await decideN(store, 30);
    const unsealed = await store.verifyAudit({ unsealedAfterSeconds: 3600 });
    expect(unsealed).toMatchObject({ ok: true, checked: 0, unsealed: 30 });
    expect(await store.sealAudit()).toBe(30);
    await decideN(store, 5);
    expect(await store.sealAudit()).toBe(5);
    expect(await seqs(store)).toEqual(Array.from({ length: 35 }, (_, i) => i + 1));
    const rep = await store.verifyAudit({ chunk: 7 });
    expect(rep).toMatchObject({ ok: true, checked: 35, unsealed: 0, issues: [] });
    expect(rep.head?.seq).toBe(35);
    // Another key does not verify: the chain depends on the key outside the database.
    const forged = await verifyAudit(store.db, randomBytes(32));
    expect(forged.ok).toBe(false);
  });

  it('reports modified, deleted and reordered rows, each where it happened', async () => {
    // Sealed rows 1..35 from the test before; add more so tampering is in the middle.
    await decideN(store, 15);
    await store.sealAudit();
    await store.db.query(`UPDATE audit_log SET reasons = '["nothing to see"]' WHERE seq = 10`);
    await store.db.query('DELETE FROM audit_log WHERE seq IN (20, 21)');
    // Swap rows 30 and 31 (through a free number: seq is unique).
    await store.db.query('UPDATE audit_log SET seq = -1 WHERE seq = 30');
    await store.db.query('UPDATE audit_log SET seq = 30 WHERE seq = 31');
    await store.db.query('UPDATE audit_log SET seq = 31 WHERE seq = -1');
    await store.db.query(`UPDATE audit_log SET outcome = 'allow' WHERE seq = 50 AND outcome = 'deny'`);
    await store.db.query(`UPDATE audit_log SET user_id = 'mallory' WHERE seq = 50`);

    const rep = await store.verifyAudit({ chunk: 16 });
    expect(rep.ok).toBe(false);
    expect(rep.issues.map((i) => [i.kind, i.seq, i.toSeq])).toEqual([
      ['modified', 10, undefined],
      ['deleted', 20, 21],
      ['reordered', 30, undefined],
      ['reordered', 31, undefined],
      ['modified', 50, undefined],
    ]);
    expect(rep.checked).toBe(48);
  });

  it('a single row moved further down is the one reported', async () => {
    const other = await env.open();
    await decideN(other, 20);
    await other.sealAudit();
    // Row 5 moves after row 12; rows 6..12 move up by one.
    await other.db.query('UPDATE audit_log SET seq = -5 WHERE seq = 5');
    for (let s = 6; s <= 12; s++) await other.db.query('UPDATE audit_log SET seq = $1 WHERE seq = $2', [s - 1, s]);
    await other.db.query('UPDATE audit_log SET seq = 12 WHERE seq = -5');
    const rep = await other.verifyAudit();
    expect(rep.issues.map((i) => [i.kind, i.seq])).toEqual([['reordered', 12]]);
  });

  it('reports rows left unsealed beyond the threshold', async () => {
    const other = await env.open();
    await decideN(other, 2);
    await sleep(1100);
    const rep = await other.verifyAudit({ unsealedAfterSeconds: 1 });
    expect(rep.ok).toBe(false);
    expect(rep.unsealed).toBe(2);
    expect(rep.issues.filter((i) => i.kind === 'unsealed').length).toBe(2);
    await other.sealAudit();
    expect((await other.verifyAudit({ unsealedAfterSeconds: 1 })).ok).toBe(true);
  });

  it('the background sealer seals shortly after commit, and the key file is created 0600 outside the database', async () => {
    const home = env.tmp();
    const s = await env.open({ home, auditKey: undefined, sealer: { intervalMs: 50 } });
    const keyFile = join(home, 'keys', 'audit.key');
    expect(existsSync(keyFile)).toBe(true);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    await decideN(s, 12);
    const deadline = Date.now() + 10_000;
    while ((await s.verifyAudit({ unsealedAfterSeconds: 3600 })).unsealed > 0 && Date.now() < deadline) await sleep(50);
    const rep = await s.verifyAudit({ unsealedAfterSeconds: 0 });
    expect(rep).toMatchObject({ ok: true, checked: 12, unsealed: 0 });
  });

  if (env.kind === 'pglite') {
    it('the sealer scans only above what it sealed, vacuums the table, and still seals every row', async () => {
      const s = await env.open({ sealer: { intervalMs: 20, batchSize: 7, vacuumEveryRows: 25 } });
      const vacuums = async (): Promise<number> => {
        // Statistics are flushed lazily (at most once a second): flush this backend's now.
        await s.db.query('SELECT pg_stat_force_next_flush()');
        await s.db.query('SELECT pg_stat_clear_snapshot()');
        const r = await s.db.query(`SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'audit_log'`);
        return Number(r.rows[0]?.['vacuum_count'] ?? -1);
      };
      // Rounds that each end sealed: later rounds must not be missed below the floor, and a
      // VACUUM between them must leave the chain intact.
      let total = 0;
      for (let round = 0; round < 4; round++) {
        await decideN(s, 20 + round);
        total += 20 + round;
        const deadline = Date.now() + 10_000;
        while ((await s.verifyAudit({ unsealedAfterSeconds: 3600 })).unsealed > 0 && Date.now() < deadline)
          await sleep(20);
      }
      const rep = await s.verifyAudit({ unsealedAfterSeconds: 0 });
      expect(rep).toMatchObject({ ok: true, checked: total, unsealed: 0 });
      expect(await seqs(s)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
      // 86 rows sealed: VACUUM ran each time 25 or more had been sealed (PGlite has no autovacuum).
      expect(await vacuums()).toBeGreaterThanOrEqual(2);
    });
  }

  if (env.kind === 'postgres') {
    it('several sealers on one database (replicas) keep one gap-free chain', async () => {
      const url = await env.freshUrl();
      const key = randomBytes(32);
      const replicas = await Promise.all(
        [0, 1, 2].map(() =>
          env.open({ databaseUrl: url, auditKey: key, sealer: { intervalMs: 20, leaderRetryMs: 50 } }),
        ),
      );
      await Promise.all(replicas.map((r, i) => decideN(r, 20, `replica-${i}`)));
      // Also force concurrent sealNow calls beside the leader.
      await Promise.all(replicas.map((r) => r.sealAudit()));
      const rep = await replicas[0]!.verifyAudit({ unsealedAfterSeconds: 0 });
      expect(rep).toMatchObject({ ok: true, checked: 60, unsealed: 0 });
      expect(await seqs(replicas[0]!)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    }, 60_000);
  }
});
