/**
 * A small driver of `Layer2Store.decide` alone (no gRPC, no Layer 1 engine), for profiling the
 * store with `node --cpu-prof --import tsx bench/layer2/decide-driver.ts`: the bench's mix
 * (BENCH_USERS readers whose calls each stamp a velocity window of 200/s and set a taint mark,
 * and one transfer in eight refused by the flow), BENCH_INFLIGHT calls in flight, for
 * BENCH_SECONDS after BENCH_WARMUP_SECONDS, on PGlite on disk in a temp dir (default) or on
 * PostgreSQL with BENCH_DATABASE_URL. Prints one JSON line with decisions/s and the CPU time of
 * this process per decision (on PGlite that includes the database).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Layer1Decision } from '../../src/policy/layer1-types.js';
import type { Layer2Request, Layer2Rules } from '../../src/policy/layer2-types.js';
import { openStore } from '../../src/state/index.js';

const env = (k: string, d: number) => Number(process.env[k] ?? d);
const USERS = env('BENCH_USERS', 24);
const INFLIGHT = env('BENCH_INFLIGHT', 8);
const SECONDS = env('BENCH_SECONDS', 10);
const WARMUP = env('BENCH_WARMUP_SECONDS', 2);
const URL = process.env['BENCH_DATABASE_URL'] ?? null;

const LIMIT = 'calls per user';
const FLOW = 'no transfers after reads';
const rules: Layer2Rules = {
  limits: { [LIMIT]: { name: LIMIT, max: 200, perSeconds: 1, scope: 'user', action: 'deny' } },
  budgets: {},
  preconditions: {},
  flows: { [FLOW]: { name: FLOW, scope: 'user', ttlSeconds: 3600, action: 'deny' } },
  duties: {},
};

function layer1(rule: string, source: boolean): Layer1Decision {
  return {
    outcome: 'allow',
    code: 'rule',
    rule,
    reasons: [`matched ${rule}`],
    classification: {
      verb: source ? 'get' : 'create',
      hints: { readOnlyHint: source, destructiveHint: false, idempotentHint: false, openWorldHint: false },
      labels: [],
    },
    approval: null,
    layer2: {
      limits: [LIMIT],
      budgets: [],
      preconditions: [],
      flows: { sources: source ? [FLOW] : [], sinks: source ? [] : [FLOW] },
      duties: { first: [], then: [] },
    },
  };
}

let seq = 0;
function request(i: number): Layer2Request {
  // Every eighth round over the users is transfers: each comes from a user who read before.
  const transfer = Math.floor(i / USERS) % 8 === 7;
  const user = `user${String(i % USERS).padStart(3, '0')}@acme.com`;
  return {
    decisionId: `dd-${process.pid}-${++seq}`,
    policyRevision: 'rev-bench',
    userId: user,
    sessionId: `s-${user}`,
    method: 'tools/call',
    service: transfer ? 'banking' : 'gmail',
    name: transfer ? 'transfer' : 'read_email',
    arguments: transfer ? { amount: 10, currency: 'EUR', memo: 'lunch' } : { id: 'msg-1' },
    layer1: layer1(transfer ? 'Allow small transfers' : 'Allow read-only', !transfer),
    approval: null,
  };
}

const home = mkdtempSync(join(tmpdir(), 'mcpgw-decide-driver-'));
const store = await openStore({ databaseUrl: URL, home, env: {}, budgetMs: 5000 });
try {
  store.setRules('rev-bench', rules);
  // Taint every reader first, so transfers are refused throughout.
  for (let u = 0; u < USERS; u++) await store.decide(request(u));
  if ((await store.listTaint()).length !== USERS) throw new Error('the warm-up did not taint every user');
  const counts: Record<string, number> = {};
  let done = 0;
  let measuring = false;
  const run = async (until: number): Promise<void> => {
    let i = 0;
    const one = async (): Promise<void> => {
      while (performance.now() < until) {
        const o = await store.decide(request(i++));
        if (measuring) {
          done++;
          const k = `${o.outcome}:${o.rule ?? '(none)'}`;
          counts[k] = (counts[k] ?? 0) + 1;
        }
      }
    };
    await Promise.all(Array.from({ length: INFLIGHT }, one));
  };
  await run(performance.now() + WARMUP * 1000);
  measuring = true;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  await run(t0 + SECONDS * 1000);
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);

  console.log(
    JSON.stringify({
      store: store.kind,
      decisions_per_s: Math.round(done / secs),
      cpu_us_per_decision: Math.round((cpu.user + cpu.system) / done),
      inflight: INFLIGHT,
      counts,
    }),
  );
} finally {
  await store.close();
  rmSync(home, { recursive: true, force: true });
}
