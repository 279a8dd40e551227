/**
 * The database surface the decision path relies on, on both stores: a named prepared statement
 * answers as the plain query does (types included, on PGlite through its own protocol path), keeps
 * answering across calls, and refuses a second text under the same name; the reserved path runs
 * beside a pool or queue that is busy.
 */
import { expect, it } from 'vitest';
import { describeStores } from './harness.js';

const SQL = `SELECT $1::int AS i, $2::text AS t, $3::boolean AS b, $4::timestamptz AS at, $5::jsonb AS j,
                    NULL::text AS n, $2::text || '!' AS e`;

describeStores('database surface', (env) => {
  it('a prepared statement gives the rows and types of the plain query, call after call', async () => {
    const store = await env.open();
    const params = [42, 'héllo', true, '2026-01-02T03:04:05.678Z', JSON.stringify({ a: [1, 'x', null] })];
    const plain = await store.db.query(SQL, params);
    for (let k = 0; k < 3; k++) {
      const prepared = await store.db.queryWithin(SQL, params, { name: 'db_test_types' });
      expect(prepared.rows).toEqual(plain.rows);
      expect(prepared.rowCount).toBe(1);
    }
    expect(plain.rows[0]).toMatchObject({ i: 42, t: 'héllo', b: true, j: { a: [1, 'x', null] }, n: null, e: 'héllo!' });
    expect((plain.rows[0]?.['at'] as Date).toISOString()).toBe('2026-01-02T03:04:05.678Z');
    const other = await store.db.queryWithin(SQL, [7, 'x', false, '2026-01-02T00:00:00Z', 'null'], {
      name: 'db_test_types',
    });
    expect(other.rows[0]).toMatchObject({ i: 7, t: 'x', b: false, j: null });
    await expect(store.db.queryWithin('SELECT 1 AS one', [], { name: 'db_test_types' })).rejects.toThrow();
  });

  it('a prepared statement that fails is an error, and the next call works', async () => {
    const store = await env.open();
    const sql = 'SELECT 10 / $1::int AS q';
    await expect(store.db.queryWithin(sql, [0], { name: 'db_test_div' })).rejects.toThrow(/division by zero/);
    expect((await store.db.queryWithin(sql, [5], { name: 'db_test_div' })).rows).toEqual([{ q: 2 }]);
  });

  it('the reserved path runs while the decision path is busy', async () => {
    const store = await env.open({ poolSize: 1, budgetMs: 2000 });
    const busy = store.db.queryWithin('SELECT pg_sleep(0.5)');
    const t0 = Date.now();
    const r = await store.db.queryReserved('SELECT 1 AS one');
    expect(r.rows).toEqual([{ one: 1 }]);
    // PostgreSQL: its own connection, at once. PGlite: one connection, so after the busy statement.
    if (env.kind === 'postgres') expect(Date.now() - t0).toBeLessThan(400);
    await busy;
  });
});
