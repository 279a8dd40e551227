/**
 * Where the gateway process spends a window of a V8 `.cpuprofile` (bench/e2e/cpu-profile.mjs), for
 * `npm run bench:e2e` with BENCH_CPU_PROF. Each sample is charged to the nearest frame on its stack
 * that belongs to a component (a directory of src/ or a package), walking up from the leaf past
 * Node internals and Wasm, so `node:http` parsing done for the front counts as the front's, the
 * PGlite Wasm as PGlite's, the Layer 1 Wasm as the OPA SDK's. Samples with no such frame are
 * `node (unattributed)`: I/O callbacks, timers, microtask plumbing.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

function component(url: string): string | null {
  if (!url.includes('node_modules')) {
    const src = /\/src\/([^/]+)/.exec(url);
    if (src?.[1]) return `src/${src[1].replace(/\.ts$/, '')}`;
    if (url.includes('/bench/')) return 'bench';
  }
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (nm?.[1]) return nm[1];
  if (url.startsWith('node:internal/deps/undici')) return 'undici (fetch)';
  return null;
}

/** Shares of the busy time between `fromUs` and `toUs` (monotonic µs, as process.hrtime), by component. */
export function componentShares(file: string, fromUs: number, toUs: number, top = 16): string[] {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const owner = new Map<number, string>();
  const ownerOf = (id: number): string => {
    const cached = owner.get(id);
    if (cached !== undefined) return cached;
    const n = byId.get(id);
    let o = 'node (unattributed)';
    if (n) {
      const f = n.callFrame.functionName;
      if (f === '(idle)' || f === '(garbage collector)' || f === '(program)') o = f;
      else {
        const c = component(n.callFrame.url);
        const p = parent.get(id);
        o = c ?? (p === undefined ? o : ownerOf(p));
      }
    }
    owner.set(id, o);
    return o;
  };
  const shares = new Map<string, number>();
  const samples = prof.samples ?? [];
  const deltas = prof.timeDeltas ?? [];
  let t = prof.startTime;
  let busy = 0;
  let idle = 0;
  for (let i = 0; i < samples.length; i++) {
    t += deltas[i] ?? 0;
    if (t < fromUs || t > toUs) continue;
    const o = ownerOf(samples[i] ?? -1);
    const us = deltas[i] ?? 0;
    if (o === '(idle)') {
      idle += us;
      continue;
    }
    busy += us;
    shares.set(o, (shares.get(o) ?? 0) + us);
  }
  if (busy === 0) return ['profile: no samples in the window'];
  const pct = (us: number) => `${((us / busy) * 100).toFixed(1)}%`;
  return [
    `gateway process profile, ${(busy / 1e6).toFixed(1)} s busy / ${(idle / 1e6).toFixed(1)} s idle in the window; busy time by component:`,
    ...[...shares]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => `  ${pct(v).padStart(6)}  ${k}`),
  ];
}
