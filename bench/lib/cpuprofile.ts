/**
 * Summaries of V8 `.cpuprofile` files (bench/lib/cpu-profile.mjs, or node --cpu-prof) for the
 * benchmark reports:
 *
 * - summarizeProfile: self time per function and per area, over the whole profile;
 * - summarizeWindow: self time per area in the first `windowMs`, and how much of it was ESM loading
 *   or top-level module evaluation (start-up);
 * - componentShares: busy time in a window charged to the nearest component on each stack (a
 *   directory of src/ or a package), so Node internals and Wasm count for their caller.
 */
import { readFileSync } from 'node:fs';

export interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  /** Monotonic µs, as process.hrtime. */
  startTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface LoadedProfile {
  profile: CpuProfile;
  byId: Map<number, ProfileNode>;
  parent: Map<number, number>;
}

export function readProfile(file: string): LoadedProfile {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  return { profile, byId, parent };
}

/** Our code by directory (src/<dir>, from the sources or their build), a package, Wasm, Node. */
export function area(url: string, fn: string): string {
  if (fn === '(idle)') return 'idle';
  if (fn === '(garbage collector)') return 'gc';
  if (fn === '(program)') return 'program (native)';
  if (url.startsWith('wasm://')) return url.includes('opa') ? 'layer 1 wasm (opa)' : 'other wasm (pglite)';
  const c = component(url);
  if (c) return c;
  if (url.startsWith('node:internal/modules/') || url.startsWith('node:internal/source_map/'))
    return 'node module loader';
  if (url.startsWith('node:') || url === '') return 'node internals';
  return url;
}

/**
 * A directory of src/ (also from the build bin/mcpgw.js runs, node_modules/.cache/mcpgw/<key>/),
 * bench/, or a package; null for Node and Wasm.
 */
export function component(url: string): string | null {
  const build = /node_modules\/\.cache\/mcpgw\/[0-9a-f]+\/([^/]+)\//.exec(url);
  if (build?.[1]) return `src/${build[1]}`;
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

const sec = (us: number) => `${(us / 1e6).toFixed(2)} s`;
const top = (m: Map<string, number>, n: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n);

/** Self time per area and the `top` functions with the most self time, over the whole profile. */
export function summarizeProfile(file: string, topN = 12): string[] {
  const { profile, byId } = readProfile(file);
  const self = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    const id = samples[i] ?? 0;
    self.set(id, (self.get(id) ?? 0) + (deltas[i] ?? 0));
  }
  let total = 0;
  const fns = new Map<string, number>();
  const areas = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (!n) continue;
    total += us;
    const { functionName, url, lineNumber } = n.callFrame;
    const name = `${functionName || '(anonymous)'} ${url.replace(/^.*\/(node_modules|src|bench)\//, '$1/')}:${lineNumber + 1}`;
    fns.set(name, (fns.get(name) ?? 0) + us);
    const a = area(url, functionName);
    areas.set(a, (areas.get(a) ?? 0) + us);
  }
  const pct = (us: number) => `${((us / total) * 100).toFixed(1)}%`;
  return [
    `profile ${file}: ${(total / 1e6).toFixed(1)} s sampled`,
    `  by area: ${top(areas, 12)
      .map(([k, v]) => `${k} ${pct(v)}`)
      .join(', ')}`,
    ...top(fns, topN).map(([k, v]) => `  ${pct(v).padStart(6)}  ${k}`),
  ];
}

/** Frames whose subtree is module loading (ESM fetch/translate/compile) or top-level evaluation. */
const LOADING = /^(loadAndTranslate|#translate|compileSourceTextModule|getModuleJob|link|import|moduleStrategy)$/;
const EVALUATING = /^(run|evaluate)$/;

/** Self time by area in the first `windowMs`, and the share of it under module loading and evaluation. */
export function summarizeWindow(file: string, windowMs: number, label: string): string[] {
  const { profile, byId, parent } = readProfile(file);
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
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
  return [
    `${label} profile, first ${sec(total)}: ESM loading ${sec(loading)}, top-level module evaluation ${sec(evaluating)}`,
    `  by area: ${top(areas, 12)
      .map(([k, v]) => `${k} ${sec(v)}`)
      .join(', ')}`,
  ];
}

/**
 * Shares of the busy time between `fromUs` and `toUs` (monotonic µs, as process.hrtime) by
 * component: each sample is charged to the nearest frame on its stack that belongs to one, walking
 * up from the leaf past Node internals and Wasm, so `node:http` parsing done for the front counts
 * as the front's, the PGlite Wasm as PGlite's. Samples with no such frame are `node
 * (unattributed)`: I/O callbacks, timers, microtask plumbing.
 */
export function componentShares(file: string, fromUs: number, toUs: number, topN = 16): string[] {
  const { profile, byId, parent } = readProfile(file);
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
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  let t = profile.startTime;
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
    ...top(shares, topN).map(([k, v]) => `  ${pct(v).padStart(6)}  ${k}`),
  ];
}
