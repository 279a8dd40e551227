/**
 * `npm run bench:startup`: how long `mcpgw up --native` takes to return (it returns when the front,
 * authz and the database are up: the server writes its ready file at the end of start-up), as a
 * person runs it, with the front `auto` picks (the real Envoy when `envoy` is on PATH):
 *
 *   first: a fresh MCPGW_HOME right after `mcpgw init --yes --json`, then `up`;
 *   warm:  `down`, then `up` again on the same home.
 *
 * BENCH_REPS repetitions (3), median of each. Each run is split with timestamps: the `up` command
 * until the server process exists (from /proc/<pid>/stat), the server's own log lines (authz
 * listening, gateway listening, envoy front ready, mcpgw ready), and the ready file until `up`
 * returned. With BENCH_CPU_PROF=<dir>, both processes of the first `up` are sampled
 * (bench/lib/cpu-profile.mjs) and summarized: the `up` command until it spawned the server, the
 * server until its ready line.
 *
 * BENCH_MODES (build): how bin/mcpgw.js runs the sources, each mode in turn within every
 * repetition so the modes see the same machine: `build` (the transpiled build of src/ it runs by
 * default; see scripts/source-build.mjs) and `tsx` (MCPGW_TSX=1: through tsx's loader, as before
 * that build existed). The first start after an edit (or in a fresh clone) also transpiles src/:
 * that is timed once, into a scratch directory, and reported apart.
 *
 * Last line: {"bench":"startup","first_s":…,"warm_s":…,"transpile_s":…} for the first mode, after
 * one such line (with "mode") per mode. Targets: first ≤ 8 s, warm ≤ 3 s.
 * Env: BENCH_REPS, BENCH_MODES (build | tsx | build,tsx), BENCH_FRONT (auto | envoy | builtin),
 * BENCH_BUDGET_S (200: no repetition after the second starts if it would end later; each takes
 * ~40-60 s per mode on a loaded 2-core machine, mostly `init` and the 5 s drain of each `down`).
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { homePaths } from '../src/config/home.js';
import { summarizeWindow } from './lib/cpuprofile.js';
import { loopMs } from './lib/proc-cpu.js';

const REPS = Number(process.env['BENCH_REPS'] ?? 3);
/** No new repetition starts (after the second) when the last one would end past this many seconds. */
const BUDGET_S = Number(process.env['BENCH_BUDGET_S'] ?? 200);
const FRONT = process.env['BENCH_FRONT'] ?? 'auto';
const CPU_PROF = process.env['BENCH_CPU_PROF'] ? resolve(process.env['BENCH_CPU_PROF']) : null;
const MODES = (process.env['BENCH_MODES'] ?? 'build').split(',');
const TARGET = { first: 8, warm: 3 };

const uptime = () => execFileSync('uptime', { encoding: 'utf8' }).trim();
const yardstick = () => `cpu yardstick (1e8-addition JS loop): ${Math.round(loopMs('0-1'))} ms`;
const s2 = (ms: number) => (ms / 1000).toFixed(2);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] ?? NaN) : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2;
};

if (!['auto', 'envoy', 'builtin'].includes(FRONT)) throw new Error(`BENCH_FRONT: unknown front ${FRONT}`);
for (const m of MODES) if (m !== 'build' && m !== 'tsx') throw new Error(`BENCH_MODES: unknown mode ${m}`);
const work = mkdtempSync(join(tmpdir(), 'mcpgw-bench-startup-'));

function mcpgw(
  home: string,
  args: string[],
  profDir: string | null,
  mode = 'build',
): Promise<{ out: string; ms: number }> {
  return new Promise((resolvePromise, reject) => {
    const started = performance.now();
    const p = spawn(process.execPath, ['bin/mcpgw.js', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        ...(mode === 'tsx' ? { MCPGW_TSX: '1' } : {}),
        MCPGW_HOME: home,
        MCPGW_FRONT: FRONT,
        MCPGW_AUTHZ_PORT: '0',
        MCPGW_GATEWAY_PORT: '0',
        ...(profDir
          ? { NODE_OPTIONS: `--import ${resolve('bench/lib/cpu-profile.mjs')}`, BENCH_PROFILE_DIR: profDir }
          : {}),
      },
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => {
      const ms = performance.now() - started;
      if (code === 0) resolvePromise({ out, ms });
      else reject(new Error(`mcpgw ${args.join(' ')} failed (${code}): ${err}`));
    });
  });
}

/** Wall-clock ms at which `pid` started (its start time since boot, against /proc/uptime now). */
function startedAt(pid: number): number {
  const now = Date.now();
  const sinceBoot = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  return now - (sinceBoot - (ticks / 100) * 1000);
}

const MILESTONES = ['authz listening', 'gateway listening', 'envoy front ready', 'mcpgw ready'] as const;

/** The server's log lines of process `pid`, by message, as wall-clock ms. */
function logTimes(logFile: string, pid: number): Map<string, number> {
  const times = new Map<string, number>();
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    if (!line.startsWith('{"level"')) continue;
    const l = JSON.parse(line) as { pid?: number; time?: string; msg?: string };
    if (l.pid === pid && l.msg && l.time && !times.has(l.msg)) times.set(l.msg, Date.parse(l.time));
  }
  return times;
}

interface UpRun {
  totalMs: number;
  front: string;
  /** Named steps, in order, that add up to totalMs. */
  steps: [string, number][];
  pid: number;
}

async function up(home: string, profDir: string | null, mode: string): Promise<UpRun> {
  const t0 = Date.now();
  const r = await mcpgw(home, ['up', '--native', '--json'], profDir, mode);
  const tEnd = Date.now();
  const info = JSON.parse(r.out) as { pid: number; front: string };
  const spawned = startedAt(info.pid);
  const log = logTimes(homePaths(home).log, info.pid);
  const steps: [string, number][] = [['`up` command until the server process exists', spawned - t0]];
  let prev = spawned;
  let prevName = 'server start';
  for (const m of MILESTONES) {
    const t = log.get(m);
    if (t === undefined) continue;
    steps.push([`${prevName} → ${m}`, t - prev]);
    prev = t;
    prevName = m;
  }
  steps.push(['ready → `up` returned', tEnd - prev]);
  return { totalMs: tEnd - t0, front: info.front, steps, pid: info.pid };
}

function show(label: string, run: UpRun): void {
  console.log(`  ${label}: ${s2(run.totalMs)} s (${run.front} front)`);
  for (const [name, ms] of run.steps) console.log(`      ${s2(ms).padStart(6)} s  ${name}`);
}

/** Seconds to transpile src/ as the first start after an edit does, into a scratch cache. */
function transpileSeconds(): number {
  const script = `import { sourceBuild } from './scripts/source-build.mjs';
const t = performance.now();
const b = await sourceBuild(process.cwd(), { cacheDir: ${JSON.stringify(join(work, 'build-cache'))} });
if (!b.built) throw new Error('not built');
console.log((performance.now() - t) / 1000);`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  rmSync(join(work, 'build-cache'), { recursive: true, force: true });
  return Number(out.trim());
}

interface ModeRuns {
  first: number[];
  warm: number[];
  inits: number[];
  downs: number[];
}

try {
  console.log(`bench:startup — ${uptime()}`);
  console.log(yardstick());
  console.log(`${REPS} repetitions, front ${FRONT}, modes ${MODES.join(', ')}`);
  const transpile = transpileSeconds();
  console.log(`transpile of src/ (first start after an edit or in a fresh clone): ${transpile.toFixed(2)} s`);
  const runs = new Map<string, ModeRuns>(MODES.map((m) => [m, { first: [], warm: [], inits: [], downs: [] }]));
  const benchStart = performance.now();
  for (let i = 0; i < REPS; i++) {
    const elapsed = (performance.now() - benchStart) / 1000;
    if (i >= 2 && elapsed + elapsed / i > BUDGET_S) {
      console.log(`stopping after ${i} repetitions: another would end past the ${BUDGET_S} s budget`);
      break;
    }
    for (const [mi, mode] of MODES.entries()) {
      const r = runs.get(mode) as ModeRuns;
      const home = join(work, `home-${i}-${mode}`);
      // Profiles of the first mode only: one set per repetition is what the summary reads.
      const profDir = CPU_PROF && mi === 0 ? join(CPU_PROF, `rep-${i}`) : null;
      if (profDir) mkdirSync(profDir, { recursive: true });
      const init = await mcpgw(home, ['init', '--yes', '--json', '--port', '0'], null, mode);
      r.inits.push(init.ms);
      console.log(`rep ${i + 1}, ${mode}: init ${s2(init.ms)} s`);
      const a = await up(home, profDir, mode);
      r.first.push(a.totalMs);
      show('first up', a);
      const d1 = await mcpgw(home, ['down', '--json'], null, mode);
      r.downs.push(d1.ms);
      const b = await up(home, null, mode);
      r.warm.push(b.totalMs);
      show('warm up ', b);
      const d2 = await mcpgw(home, ['down', '--json'], null, mode);
      r.downs.push(d2.ms);
      if (profDir) {
        const files = readdirSync(profDir);
        const server = files.find((f) => f.includes(`.${a.pid}.`));
        const upCmd = files.find((f) => f !== server);
        const readyMs = a.steps.slice(1, -1).reduce((sum, [, ms]) => sum + ms, 0);
        if (upCmd)
          for (const l of summarizeWindow(join(profDir, upCmd), a.steps[0]?.[1] ?? 0, '`up` command'))
            console.log(`    ${l}`);
        if (server) for (const l of summarizeWindow(join(profDir, server), readyMs, 'server')) console.log(`    ${l}`);
      }
    }
  }
  console.log(`\n${uptime()}`);
  console.log(yardstick());
  const lines: string[] = [];
  const medians = new Map<string, { f: number; w: number }>();
  for (const [mode, r] of runs) {
    const f = median(r.first) / 1000;
    const w = median(r.warm) / 1000;
    medians.set(mode, { f, w });
    console.log(`${mode}:`);
    console.log(`  init (not in the targets): median ${s2(median(r.inits))} s; down: median ${s2(median(r.downs))} s`);
    console.log(
      `  first up: median ${f.toFixed(2)} s of [${r.first.map(s2).join(', ')}] — target ≤ ${TARGET.first} s: ${f <= TARGET.first ? 'ok' : 'MISSED'} (${(f / TARGET.first).toFixed(2)}× the target)`,
    );
    console.log(
      `  warm up:  median ${w.toFixed(2)} s of [${r.warm.map(s2).join(', ')}] — target ≤ ${TARGET.warm} s: ${w <= TARGET.warm ? 'ok' : 'MISSED'} (${(w / TARGET.warm).toFixed(2)}× the target)`,
    );
    const round2 = (x: number) => Math.round(x * 100) / 100;
    lines.push(
      JSON.stringify({
        bench: 'startup',
        first_s: round2(f),
        warm_s: round2(w),
        transpile_s: round2(transpile),
        ...(MODES.length > 1 ? { mode } : {}),
      }),
    );
  }
  const base = medians.get('tsx');
  const built = medians.get('build');
  if (base && built)
    console.log(
      `build / tsx: first up ${(built.f / base.f).toFixed(2)}×, warm up ${(built.w / base.w).toFixed(2)}× (same repetitions, interleaved)`,
    );
  // The first mode's line last: it is the result.
  for (const l of [...lines.slice(1), lines[0]]) console.log(l);
} finally {
  for (const d of readdirSync(work)) {
    const home = join(work, d);
    if (existsSync(homePaths(home).pid)) await mcpgw(home, ['down', '--json'], null).catch(() => undefined);
  }
  rmSync(work, { recursive: true, force: true });
}
