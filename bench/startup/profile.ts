/**
 * A summary of the first `windowMs` of a V8 `.cpuprofile` (the `up` command until it spawned the
 * server, or the server until its ready line), for `npm run bench:startup`: self time by area (our code by directory, each
 * package, the Wasm modules, Node internals, idle = waiting on I/O, timers, children or the tsx
 * loader thread) and time spent under module loading and top-level module evaluation.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
}

function area(url: string, fn: string): string {
  if (fn === '(idle)') return 'idle';
  if (fn === '(garbage collector)') return 'gc';
  if (fn === '(program)') return 'program (native)';
  if (url.startsWith('wasm://')) return 'wasm';
  const m = /\/work\/[^/]+\/(src\/[^/]+|bench)\//.exec(url);
  if (m?.[1]) return m[1];
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (nm?.[1]) return nm[1];
  if (url.startsWith('node:internal/modules/') || url.startsWith('node:internal/source_map/'))
    return 'node module loader';
  if (url.startsWith('node:') || url === '') return 'node internals';
  return url;
}

/** Frames whose subtree is module loading (ESM fetch/translate/compile) or top-level evaluation. */
const LOADING = /^(loadAndTranslate|#translate|compileSourceTextModule|getModuleJob|link|import|moduleStrategy)$/;
const EVALUATING = /^(run|evaluate)$/;

export function summarizeWindow(file: string, windowMs: number, label: string): string[] {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const samples = prof.samples ?? [];
  const deltas = prof.timeDeltas ?? [];
  const areas = new Map<string, number>();
  let total = 0;
  let loading = 0;
  let evaluating = 0;
  let t = 0;
  for (let i = 0; i < samples.length; i++) {
    const us = deltas[i] ?? 0;
    t += us;
    if (t > windowMs * 1000) break;
    const n = byId.get(samples[i] ?? -1);
    if (!n) continue;
    total += us;
    const a = area(n.callFrame.url, n.callFrame.functionName);
    areas.set(a, (areas.get(a) ?? 0) + us);
    let load = false;
    let evaluate = false;
    for (let cur: number | undefined = n.id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)?.callFrame;
      if (!f?.url.startsWith('node:internal/modules/esm/')) continue;
      if (LOADING.test(f.functionName)) load = true;
      if (EVALUATING.test(f.functionName) && f.url.endsWith('module_job')) evaluate = true;
    }
    if (load) loading += us;
    else if (evaluate) evaluating += us;
  }
  const s = (us: number) => `${(us / 1e6).toFixed(2)} s`;
  return [
    `${label} profile, first ${s(total)}: ESM loading ${s(loading)}, top-level module evaluation ${s(evaluating)}`,
    `  by area: ${[...areas]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 12)
      .map(([k, v]) => `${k} ${s(v)}`)
      .join(', ')}`,
  ];
}
