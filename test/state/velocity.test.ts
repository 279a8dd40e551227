/**
 * Velocity windows as 0070_decide_fast.sql keeps them, against the reference semantics of 0002
 * (DESIGN §7: a sliding window over database time, the last `max` stamps kept per key), on both
 * stores and on random windows: the new stamp is pushed like `mcpgw_keep_last` would, including
 * when the database clock went backwards; a stored window decides like counting its stamps would,
 * with the same retry time; and a window written under another `max` (a policy change) still
 * decides exactly.
 */
import fc from 'fast-check';
import { beforeAll, expect, it } from 'vitest';
import type { Layer2Store } from '../../src/state/store.js';
import { describeStores, request, rules, uniq } from './harness.js';

/** A sorted window as offsets in seconds from now; k + 0.5 keeps every stamp 0.5 s away from a window edge. */
const offsets = (min: number, max: number, maxLength: number) =>
  fc.array(fc.integer({ min, max }), { maxLength }).map((xs) => xs.map((x) => x + 0.5).sort((a, b) => a - b));

describeStores('velocity windows', (env) => {
  let store: Layer2Store;
  beforeAll(async () => {
    store = await env.open();
  });

  /** Stores a window of stamps at `now + offset` seconds (database time). */
  async function setWindow(rule: string, key: string, offs: number[]): Promise<void> {
    await store.db.query(
      `INSERT INTO velocity (rule, scope_key, stamps)
       SELECT $1, $2, coalesce(array_agg(clock_timestamp() + make_interval(secs => o) ORDER BY o), '{}')
         FROM unnest($3::text::float8[]) AS o
       ON CONFLICT (rule, scope_key) DO UPDATE SET stamps = excluded.stamps`,
      [rule, key, `{${offs.join(',')}}`],
    );
  }

  async function window(rule: string, key: string): Promise<Date[]> {
    const r = await store.db.query<{ t: unknown }>(
      'SELECT unnest(stamps) AS t FROM velocity WHERE rule = $1 AND scope_key = $2',
      [rule, key],
    );
    return r.rows.map((x) => new Date(x.t as string | Date));
  }

  it('mcpgw_window_push keeps the last n of the window plus the new stamp, as mcpgw_keep_last does', async () => {
    const base = Date.UTC(2026, 0, 1);
    const iso = (ms: number) => new Date(base + ms).toISOString();
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 12 }).map((xs) => xs.sort((a, b) => a - b)),
        // Before, at and after the newest stamp: a clock that went backwards takes the general path.
        fc.integer({ min: -5, max: 60 }),
        fc.integer({ min: 0, max: 14 }),
        async (stamps, t, n) => {
          const r = await store.db.query<{ got: string; want: string }>(
            `SELECT mcpgw_window_push($1::text::timestamptz[], $2::timestamptz, $3)::text AS got,
                    mcpgw_keep_last($1::text::timestamptz[] || $2::timestamptz, $3)::text AS want`,
            [`{${stamps.map((s) => `"${iso(s * 1000)}"`).join(',')}}`, iso(t * 1000), n],
          );
          expect(r.rows[0]?.got).toBe(r.rows[0]?.want);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('a stored window decides as counting its stamps would, with the same retry time, and an allow pushes its stamp', async () => {
    const l = uniq('window');
    let user = 0;
    await fc.assert(
      fc.asyncProperty(
        offsets(-30, 3, 9),
        fc.integer({ min: 0, max: 6 }),
        fc.integer({ min: 1, max: 20 }),
        async (offs, max, per) => {
          const u = `w${++user}`;
          await setWindow(l, `u:${u}`, offs);
          const r = rules({ limits: { [l]: { name: l, max, perSeconds: per, scope: 'user', action: 'deny' } } });
          const o = await store.decide(request({ user: u, limits: [l] }), r);
          // Reference (0002): the stamps newer than now - per, oldest first.
          const inWindow = offs.filter((x) => x > -per);
          if (inWindow.length >= max) {
            expect(o).toMatchObject({ outcome: 'deny', rule: l });
            if (max === 0) expect(o.outcome === 'deny' && o.retryAfterSeconds).toBeUndefined();
            else {
              const oldest = inWindow[inWindow.length - max] as number;
              expect(o.outcome === 'deny' && o.retryAfterSeconds).toBe(Math.max(1, Math.ceil(oldest + per)));
            }
            expect((await window(l, `u:${u}`)).length).toBe(offs.length);
          } else {
            expect(o.outcome).toBe('allow');
            const after = await window(l, `u:${u}`);
            expect(after.length).toBe(Math.min(offs.length + 1, Math.max(max, 1)));
            for (let i = 1; i < after.length; i++)
              expect((after[i] as Date).getTime()).toBeGreaterThanOrEqual((after[i - 1] as Date).getTime());
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('a window written under a larger max (the policy changed) is judged by its newest stamps', async () => {
    const l = uniq('lowered');
    await setWindow(l, 'u:lo', [-50.5, -40.5, -8.5, -3.5, -1.5]);
    const at = (max: number) =>
      rules({ limits: { [l]: { name: l, max, perSeconds: 10, scope: 'user', action: 'deny' } } });
    // Three stamps within the last 10 s: max 3 is reached and frees when -8.5 leaves (in 1.5 s).
    const denied = await store.decide(request({ user: 'lo', limits: [l] }), at(3));
    expect(denied).toMatchObject({ outcome: 'deny', rule: l, retryAfterSeconds: 2 });
    // Max 4 is not reached; the window then keeps the newest 4, oldest first.
    expect((await store.decide(request({ user: 'lo', limits: [l] }), at(4))).outcome).toBe('allow');
    const kept = await window(l, 'u:lo');
    expect(kept.length).toBe(4);
    expect(kept.map((d) => d.getTime())).toEqual([...kept.map((d) => d.getTime())].sort((a, b) => a - b));
  });

  it('stamps ahead of the database clock (it went backwards) count, and the pushed window stays sorted', async () => {
    const l = uniq('skew');
    await setWindow(l, 'u:sk', [3600.5, 7200.5]);
    const r = rules({ limits: { [l]: { name: l, max: 3, perSeconds: 60, scope: 'user', action: 'deny' } } });
    expect((await store.decide(request({ user: 'sk', limits: [l] }), r)).outcome).toBe('allow');
    const kept = (await window(l, 'u:sk')).map((d) => d.getTime());
    expect(kept.length).toBe(3);
    expect(kept).toEqual([...kept].sort((a, b) => a - b));
    expect((kept[0] as number) < Date.now() + 60_000).toBe(true);
    // Three stamps newer than now - 60 s: the fourth call is refused until the oldest leaves.
    const fourth = await store.decide(request({ user: 'sk', limits: [l] }), r);
    expect(fourth).toMatchObject({ outcome: 'deny', rule: l });
    expect(fourth.outcome === 'deny' && fourth.retryAfterSeconds).toBeLessThanOrEqual(61);
  });
});
