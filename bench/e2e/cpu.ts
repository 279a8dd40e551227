/**
 * Where the CPU went during a phase of `npm run bench:e2e`: busy share of each core from /proc/stat
 * (other people's processes on a shared machine included) and CPU seconds of named processes
 * (the gateway's Node process, its Envoy child, the backend) from /proc/<pid>/stat.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

const TICK = 100; // USER_HZ on Linux

function coreJiffies(): Map<string, { busy: number; total: number }> {
  const out = new Map<string, { busy: number; total: number }>();
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!m?.[1] || !m[2]) continue;
    const v = m[2].split(/\s+/).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0); // idle + iowait
    out.set(m[1], { busy: total - idle, total });
  }
  return out;
}

function procStat(pid: number): { ppid: number; comm: string; cpu: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return {
      ppid: Number(rest[1]),
      comm: s.slice(s.indexOf('(') + 1, s.lastIndexOf(')')),
      cpu: (Number(rest[11]) + Number(rest[12])) / TICK,
    };
  } catch {
    return null;
  }
}

/** Live children of `pid` whose command name is `comm`. */
export function childrenNamed(pid: number, comm: string): number[] {
  const found: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = procStat(Number(d));
    if (st && st.ppid === pid && st.comm === comm) found.push(Number(d));
  }
  return found;
}

/** The CPU list a process may run on (`Cpus_allowed_list` in /proc/<pid>/status). */
export function affinity(pid: number): string {
  const m = /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m?.[1] ?? '?';
}

/** Seconds the main thread of `pid` waited, runnable, for a CPU (/proc/<pid>/schedstat). */
function runqueueWait(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e9;
  } catch {
    return 0;
  }
}

export interface CpuSnapshot {
  at: number;
  cores: Map<string, { busy: number; total: number }>;
  procs: Map<string, number>;
  waits: Map<string, number>;
}

/** `procs`: name → pid; `waitOf`: the names whose run-queue wait to report. */
export function snapshot(procs: Record<string, number | null>, waitOf: readonly string[] = []): CpuSnapshot {
  const m = new Map<string, number>();
  const w = new Map<string, number>();
  for (const [name, pid] of Object.entries(procs)) {
    if (pid === null) continue;
    m.set(name, procStat(pid)?.cpu ?? 0);
    if (waitOf.includes(name)) w.set(name, runqueueWait(pid));
  }
  return { at: performance.now(), cores: coreJiffies(), procs: m, waits: w };
}

/** "core0 98% busy, core1 71% busy; gateway 0.93 cores (610 µs/call), backend 0.40 cores (…)". */
export function describeCpu(a: CpuSnapshot, b: CpuSnapshot, calls: number, extra: Record<string, number> = {}): string {
  const secs = (b.at - a.at) / 1000;
  const cores = [...b.cores].map(([c, y]) => {
    const x = a.cores.get(c);
    if (!x || y.total === x.total) return `core${c} ?`;
    return `core${c} ${Math.round(((y.busy - x.busy) / (y.total - x.total)) * 100)}% busy`;
  });
  const used: [string, number][] = [...b.procs].map(([name, v]) => [name, v - (a.procs.get(name) ?? 0)]);
  used.push(...Object.entries(extra));
  const shares = used.map(
    ([name, v]) => `${name} ${(v / secs).toFixed(2)} cores (${Math.round((v / calls) * 1e6)} µs/call)`,
  );
  const waits = [...b.waits].map(
    ([name, v]) =>
      `${name} main thread waited for a CPU ${Math.round(((v - (a.waits.get(name) ?? 0)) / calls) * 1e6)} µs/call`,
  );
  return `${cores.join(', ')}; ${shares.join(', ')}${waits.length ? `; ${waits.join(', ')}` : ''}`;
}

/**
 * CPU milliseconds a fixed JS loop (1e8 additions) takes on `core`: a yardstick for how fast this
 * machine's cores are right now (a shared or oversubscribed VM can be several times slower than an
 * idle machine, and /proc counts that as CPU time), printed next to the results.
 */
export function loopMs(core: string): number {
  const r = spawnSync(
    'taskset',
    [
      '-c',
      core,
      process.execPath,
      '-e',
      'const t=process.cpuUsage();let x=0;for(let i=0;i<1e8;i++)x+=i;const u=process.cpuUsage(t);console.log((u.user+u.system)/1000,x>0)',
    ],
    { encoding: 'utf8' },
  );
  return Number(r.stdout.split(' ')[0]);
}
