/**
 * `npm run bench:authz`: Check over loopback gRPC, server pinned to core 0 and h2load to core 1.
 *
 *   (a) baseline: an empty Check handler on the same gRPC stack (bench/authz-server.ts --mode empty)
 *   (b) Layer 1 allow and (c) Layer 1 deny at maximum rate, with the realistic policy in
 *       bench/policy.yaml (Gmail profile, 20 rules) and 50 users, several distinct bodies in parallel;
 *   then latency percentiles at a fixed 1,000 req/s (h2load --rps with --log-file).
 * The server counts allow/deny itself; a phase whose counts differ from what its bodies must get fails.
 * Last line: {"bench":"authz","rps":…,"p50_ms":…,"p99_ms":…,"baseline_rps":…,"ratio":…}.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { keysDir, loadOrCreateKey } from '../src/config/keys.js';
import { generateApiKey, hashApiKey } from '../src/identity/api-keys.js';
import { writeCheckFrame } from './lib/check-frame.js';

const SERVER_CORE = process.env['BENCH_SERVER_CORE'] ?? '0';
const LOAD_CORE = process.env['BENCH_LOAD_CORE'] ?? '1';
const MAX_REQUESTS = Number(process.env['BENCH_REQUESTS'] ?? 40_000);
const FIXED_RPS = 1000;
const FIXED_SECONDS = Number(process.env['BENCH_FIXED_SECONDS'] ?? 10);

const work = mkdtempSync(join(tmpdir(), 'mcpgw-bench-'));
const home = join(work, 'home');
mkdirSync(home, { recursive: true });
const out = join(work, 'out');
mkdirSync(out);

// 50 agents with grants on every service of the policy.
const users: { id: string; key: string }[] = [];
const identityLines = ['users:'];
for (let i = 0; i < 50; i++) {
  const id = `user${String(i).padStart(2, '0')}@acme.com`;
  const key = generateApiKey('sk');
  users.push({ id, key });
  identityLines.push(
    `  - {id: "${id}", role: agent, grants: {gmail: ["*"], docs: ["*"], banking: ["*"]}, apiKeySha256: ["${hashApiKey(key).toString('hex')}"]}`,
  );
}
const identities = join(work, 'identities.yaml');
writeFileSync(identities, `${identityLines.join('\n')}\n`);
const sessionKey = await loadOrCreateKey(keysDir(home), 'session.key');

function frame(userIndex: number, tool: string, args: Record<string, unknown>): string {
  const user = users[userIndex];
  if (!user) throw new Error('no such user');
  return writeCheckFrame(join(work, `frame-${userIndex}-${tool}.bin`), {
    id: userIndex,
    user,
    sessionKey,
    name: tool,
    args,
  });
}

const allowFrames = [
  frame(1, 'gmail__read_email', { id: 'msg-1' }),
  frame(17, 'gmail__send_email', { to: ['ann@acme.com', 'bo@acme.com'], subject: 'q3', body: 'numbers attached' }),
  frame(33, 'docs__read_page', { page: 'handbook/security' }),
  frame(42, 'banking__transfer', { amount: 120, currency: 'EUR', memo: 'lunch' }),
];
const denyFrames = [
  frame(5, 'gmail__send_email', { to: 'ann@acme.com', bcc: 'spy@evil.example', subject: 'x' }),
  frame(21, 'banking__transfer', { amount: 10, currency: 'BTC' }),
  frame(30, 'gmail__delete_email', { id: 'msg-9' }),
  frame(47, 'docs__publish_page', { page: 'secret', target: 'public' }),
];

function startServer(
  mode: string,
  env: Record<string, string> = {},
): Promise<{ proc: ChildProcess; port: number; counts: () => Promise<{ allow: number; deny: number }> }> {
  const proc = spawn(
    'taskset',
    [
      '-c',
      SERVER_CORE,
      process.execPath,
      '--import',
      'tsx',
      'bench/authz-server.ts',
      '--mode',
      mode,
      '--home',
      home,
      '--identities',
      identities,
      '--policy',
      'bench/policy.yaml',
      '--log',
      join(out, `server-${mode}.log`),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } },
  );
  const lines = createInterface({ input: proc.stdout as NodeJS.ReadableStream });
  const waiting: ((l: string) => void)[] = [];
  lines.on('line', (l) => waiting.shift()?.(l));
  const next = () => new Promise<string>((r) => waiting.push(r));
  return next().then((l) => {
    const ready = JSON.parse(l) as { port: number };
    return {
      proc,
      port: ready.port,
      counts: async () => {
        const p = next();
        proc.kill('SIGUSR2');
        return (JSON.parse(await p) as { counts: { allow: number; deny: number } }).counts;
      },
    };
  });
}

interface H2Result {
  requests: number;
  succeeded: number;
  seconds: number;
}

function h2load(port: number, frames: string[], extra: (i: number) => string[]): Promise<H2Result[]> {
  return Promise.all(
    frames.map(
      (f, i) =>
        new Promise<H2Result>((resolve, reject) => {
          const p = spawn(
            'taskset',
            [
              '-c',
              LOAD_CORE,
              'h2load',
              ...extra(i),
              '-d',
              f,
              '-H',
              'content-type: application/grpc',
              '-H',
              'te: trailers',
              `http://127.0.0.1:${port}/envoy.service.auth.v3.Authorization/Check`,
            ],
            { stdio: ['ignore', 'pipe', 'pipe'] },
          );
          let text = '';
          p.stdout.on('data', (d: Buffer) => (text += d.toString()));
          p.stderr.on('data', (d: Buffer) => (text += d.toString()));
          p.on('exit', (code) => {
            const fin = /finished in ([\d.]+)(ms|s)/.exec(text);
            const req = /requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded/.exec(text);
            if (code !== 0 || !fin || !req) return reject(new Error(`h2load failed (${code}):\n${text}`));
            const secs = Number(fin[1]) / (fin[2] === 'ms' ? 1000 : 1);
            resolve({ requests: Number(req[1]), succeeded: Number(req[2]), seconds: secs });
          });
        }),
    ),
  );
}

async function maxRate(port: number, frames: string[]): Promise<number> {
  const per = Math.floor(MAX_REQUESTS / frames.length);
  const started = process.hrtime.bigint();
  const res = await h2load(port, frames, () => ['-n', String(per), '-c', '1', '-m', '32']);
  const wall = Number(process.hrtime.bigint() - started) / 1e9;
  for (const r of res)
    if (r.succeeded !== r.requests) throw new Error(`h2load: ${r.requests - r.succeeded} requests failed`);
  // Requests over the span the h2load runs actually overlapped (process start-up excluded).
  const span = Math.max(...res.map((r) => r.seconds));
  void wall;
  return (per * frames.length) / span;
}

async function fixedRate(
  port: number,
  frames: string[],
  label: string,
): Promise<{ p50: number; p99: number; n: number }> {
  const perClient = FIXED_RPS / frames.length;
  const n = Math.round(perClient * FIXED_SECONDS);
  const logs = frames.map((_, i) => join(out, `${label}-${i}.log`));
  await h2load(port, frames, (i) => [
    '-n',
    String(n),
    '-c',
    '1',
    '-m',
    '1',
    '--rps',
    String(perClient),
    '--log-file',
    logs[i] ?? '',
  ]);
  const lat: number[] = [];
  for (const f of logs) {
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      const cols = line.split('\t');
      if (cols.length >= 3 && cols[1] === '200') lat.push(Number(cols[2]) / 1000);
    }
  }
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? NaN;
  return { p50: q(0.5), p99: q(0.99), n: lat.length };
}

function expectCounts(label: string, got: { allow: number; deny: number }, want: { allow: number; deny: number }) {
  if (got.allow !== want.allow || got.deny !== want.deny) {
    throw new Error(`${label}: server counted ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  }
  console.log(`  ${label}: server counted allow=${got.allow} deny=${got.deny} (as expected)`);
}

const r3 = (x: number) => Math.round(x * 1000) / 1000;
if (spawnSync('taskset', ['-c', LOAD_CORE, 'true']).status !== 0)
  throw new Error('taskset cannot pin to the load core');

try {
  console.log(
    `bench:authz — server on core ${SERVER_CORE}, h2load on core ${LOAD_CORE}, ${MAX_REQUESTS} requests per max-rate phase`,
  );
  const per = Math.floor(MAX_REQUESTS / 4) * 4;

  const empty = await startServer('empty');
  await maxRate(empty.port, allowFrames); // warm-up
  await empty.counts();
  const baseline = await maxRate(empty.port, allowFrames);
  expectCounts('baseline', await empty.counts(), { allow: per, deny: 0 });
  const baseFixed = await fixedRate(empty.port, [...allowFrames, ...denyFrames], 'baseline-fixed');
  await empty.counts();
  empty.proc.kill('SIGTERM');
  console.log(
    `(a) empty Check handler: ${baseline.toFixed(0)} req/s; at ${FIXED_RPS} req/s p50 ${r3(baseFixed.p50)} ms p99 ${r3(baseFixed.p99)} ms`,
  );

  const l1 = await startServer('layer1');
  await maxRate(l1.port, [...allowFrames, ...denyFrames]); // warm-up
  await l1.counts();
  const allowRps = await maxRate(l1.port, allowFrames);
  expectCounts('layer1 allow', await l1.counts(), { allow: per, deny: 0 });
  const denyRps = await maxRate(l1.port, denyFrames);
  expectCounts('layer1 deny', await l1.counts(), { allow: 0, deny: per });
  console.log(`(b) Layer 1 allow: ${allowRps.toFixed(0)} req/s (${(allowRps / baseline).toFixed(2)}× baseline)`);
  console.log(`(c) Layer 1 deny:  ${denyRps.toFixed(0)} req/s (${(denyRps / baseline).toFixed(2)}× baseline)`);
  const fixed = await fixedRate(l1.port, [...allowFrames, ...denyFrames], 'layer1-fixed');
  const c = await l1.counts();
  expectCounts('layer1 fixed-rate', c, { allow: c.allow, deny: c.deny });
  if (c.allow + c.deny !== fixed.n || c.allow !== c.deny)
    throw new Error(`fixed-rate counts ${JSON.stringify(c)} do not match ${fixed.n} answers`);
  l1.proc.kill('SIGTERM');

  // The same path with the Layer 1 decision cache off: every call evaluates the Wasm.
  const cold = await startServer('layer1', { MCPGW_L1_DECISION_CACHE: '0' });
  await maxRate(cold.port, allowFrames); // warm-up
  await cold.counts();
  const coldAllow = await maxRate(cold.port, allowFrames);
  expectCounts('layer1 allow, no decision cache', await cold.counts(), { allow: per, deny: 0 });
  cold.proc.kill('SIGTERM');
  console.log(
    `(d) Layer 1 allow, decision cache off: ${coldAllow.toFixed(0)} req/s (${(coldAllow / baseline).toFixed(2)}× baseline)`,
  );
  console.log(
    `Layer 1 at ${FIXED_RPS} req/s (half allow, half deny, ${fixed.n} calls): p50 ${r3(fixed.p50)} ms, p99 ${r3(fixed.p99)} ms`,
  );

  const rps = Math.min(allowRps, denyRps);
  console.log(
    JSON.stringify({
      bench: 'authz',
      rps: Math.round(rps),
      p50_ms: r3(fixed.p50),
      p99_ms: r3(fixed.p99),
      baseline_rps: Math.round(baseline),
      ratio: Math.round((rps / baseline) * 1000) / 1000,
    }),
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
