/**
 * `npx tsx bench/layer2/sql-ab.ts`: the decision SQL alone, before and after a migration, on one
 * PostgreSQL server, through pgbench with the bench's own `mcpgw_decide` inputs (as bench:layer2's
 * phase (c)). Variant A is a database migrated up to (not including) BENCH_AB_FROM (default 70,
 * i.e. 0002's function); variant B has every migration. The rounds alternate A, B, A, B… so both
 * see the same background load on this shared machine; the summary gives the median of each and
 * the ratio B/A.
 *
 * Knobs (env): BENCH_AB_FROM, BENCH_AB_EXTRA (a .sql file applied to B after its migrations, to
 * try a variant of the function: with BENCH_AB_FROM=9999, A is the committed state), BENCH_AB_ROUNDS (3), BENCH_AB_SECONDS (8), BENCH_AB_CLIENTS
 * (comma list, default 10), BENCH_AB_MODE (prepared | extended, default prepared),
 * BENCH_AB_STATEMENTS=1 (loads pg_stat_statements with track=all and prints where the time
 * goes inside each variant's function; it slows both), BENCH_AB_SETTINGS (extra server settings,
 * `name=value,name=value`), BENCH_PG_CORE (1) and BENCH_PGBENCH_CORE (0).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { loadOrCreateKey } from '../../src/config/keys.js';
import { mintSessionId } from '../../src/identity/session.js';
import { PostgresDatabase } from '../../src/state/db.js';
import { loadMigrations, migrate } from '../../src/state/migrate.js';
import { perOp, snapshot } from '../lib/proc-cpu.js';
import { runPgbench, writeScripts } from './pgbench.js';
import { startBenchPostgres } from './postgres.js';
import { buildWorkload, decideInputs } from './workload.js';

const env = (k: string, d: number) => Number(process.env[k] ?? d);
const FROM = env('BENCH_AB_FROM', 70);
const ROUNDS = env('BENCH_AB_ROUNDS', 3);
const SECONDS = env('BENCH_AB_SECONDS', 8);
const CLIENTS = (process.env['BENCH_AB_CLIENTS'] ?? '10').split(',').map(Number);
const MODE = process.env['BENCH_AB_MODE'] === 'extended' ? 'extended' : 'prepared';
const STATEMENTS = process.env['BENCH_AB_STATEMENTS'] === '1';
const PG_CORE = process.env['BENCH_PG_CORE'] ?? '1';
const PGBENCH_CORE = process.env['BENCH_PGBENCH_CORE'] ?? '0';
const extra: Record<string, string> = {};
for (const kv of (process.env['BENCH_AB_SETTINGS'] ?? '').split(',').filter(Boolean)) {
  const [k, v] = kv.split('=');
  if (k && v !== undefined) extra[k] = v;
}
if (STATEMENTS) {
  extra['shared_preload_libraries'] = 'pg_stat_statements';
  extra['pg_stat_statements.track'] = 'all';
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

const work = mkdtempSync(join(tmpdir(), 'mcpgw-sql-ab-'));
const server = await startBenchPostgres(PG_CORE, extra);
try {
  const sessionKey = await loadOrCreateKey(join(work, 'keys'), 'session.key');
  const wl = buildWorkload(work, sessionKey, 24, 4);
  const inputs = await decideInputs(wl.frames, (u) => mintSessionId(sessionKey, u.id));
  const readScripts = writeScripts(join(work), inputs.slice(0, wl.readFrames.length));
  const scripts = writeScripts(work, inputs);
  const variants = [
    { name: 'A', db: 'ab_a', migrations: loadMigrations().filter((m) => m.version < FROM) },
    { name: 'B', db: 'ab_b', migrations: loadMigrations() },
  ];
  const extraFile = process.env['BENCH_AB_EXTRA'];
  if (extraFile) {
    const sql = readFileSync(extraFile, 'utf8');
    variants[1]?.migrations.push({ version: 99_999, name: 'ab_extra', sql, checksum: 'ab' });
  }
  const admin = new pg.Client({ connectionString: server.url });
  admin.on('error', () => undefined);
  await admin.connect();
  if (STATEMENTS) await admin.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  for (const v of variants) {
    await admin.query(`CREATE DATABASE ${v.db}`);
    const db = new PostgresDatabase({
      connectionString: server.url.replace(/\/postgres$/, `/${v.db}`),
      budgetMs: 60_000,
      poolSize: 1,
    });
    await migrate(db, v.migrations);
    if (STATEMENTS) await db.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await db.close();
    // Reads first, as the bench's warm-up: every reader is tainted and its window is full.
    await runPgbench({
      core: PGBENCH_CORE,
      port: server.port,
      database: v.db,
      clients: 4,
      seconds: 3,
      scripts: readScripts,
      mode: MODE,
    });
  }
  console.log(
    `sql-ab: A = migrations < ${FROM} (${variants[0]?.migrations.length}), B = all (${variants[1]?.migrations.length}); ` +
      `pgbench -M ${MODE}, ${SECONDS} s per run, ${ROUNDS} rounds, PostgreSQL on core ${PG_CORE}, pgbench on core ${PGBENCH_CORE}` +
      (Object.keys(extra).length ? `; settings ${JSON.stringify(extra)}` : ''),
  );
  for (const clients of CLIENTS) {
    const res: Record<string, { tps: number[]; us: number[] }> = { A: { tps: [], us: [] }, B: { tps: [], us: [] } };
    for (let round = 0; round < ROUNDS; round++) {
      for (const v of round % 2 === 0 ? variants : [...variants].reverse()) {
        if (STATEMENTS) await admin.query('SELECT pg_stat_statements_reset()');
        const before = snapshot({ postgres: server.postmasterPid }, { trees: ['postgres'] });
        const b = await runPgbench({
          core: PGBENCH_CORE,
          port: server.port,
          database: v.db,
          clients,
          seconds: SECONDS,
          scripts,
          mode: MODE,
        });
        await new Promise((r) => setTimeout(r, 300));
        const after = snapshot({ postgres: server.postmasterPid }, { trees: ['postgres'] });
        const us = perOp(before, after, b.transactions).get('postgres') ?? 0;
        res[v.name]?.tps.push(b.tps);
        res[v.name]?.us.push(us);
        console.log(
          `  -c ${clients} round ${round + 1} ${v.name}: ${b.tps.toFixed(0)} tps, ${Math.round(us)} µs PostgreSQL CPU/decision, avg latency ${b.latencyMs} ms`,
        );
        if (STATEMENTS && round === 0) {
          const top = await admin.query<{ calls: string; us: string; query: string }>(
            `SELECT calls::text, round((total_exec_time * 1000 / greatest(calls, 1))::numeric, 1)::text AS us,
                    regexp_replace(left(query, 90), '\\s+', ' ', 'g') AS query
               FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
              WHERE d.datname = $1 ORDER BY total_exec_time DESC LIMIT 12`,
            [v.db],
          );
          for (const t of top.rows)
            console.log(`      ${t.calls.padStart(7)} calls ${t.us.padStart(8)} µs  ${t.query}`);
        }
      }
    }
    const a = res['A'] as { tps: number[]; us: number[] };
    const b = res['B'] as { tps: number[]; us: number[] };
    console.log(
      `  -c ${clients}: A ${median(a.tps).toFixed(0)} tps (${Math.round(median(a.us))} µs), ` +
        `B ${median(b.tps).toFixed(0)} tps (${Math.round(median(b.us))} µs); ` +
        `B/A throughput ${(median(b.tps) / median(a.tps)).toFixed(2)}, CPU per decision ${(median(b.us) / median(a.us)).toFixed(2)}`,
    );
  }
  await admin.end();
} catch (err) {
  console.error(readFileSync(join(server.dir, 'server.log'), 'utf8').slice(-3000));
  throw err;
} finally {
  await server.destroy();
  rmSync(work, { recursive: true, force: true });
}
