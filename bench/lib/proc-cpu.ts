/**
 * Where the CPU went during a benchmark phase, from /proc (Linux): the busy share of each core
 * (/proc/stat, other people's processes on a shared machine included), the CPU seconds of named
 * processes (/proc/<pid>/stat), optionally with their children (PostgreSQL backends are children of
 * the postmaster; exited ones count through the parent's reaped-children fields), and how long a
 * process waited, runnable, for a CPU (/proc/<pid>/schedstat). Plus a yardstick of how fast a core
 * is right now.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const TICK = 100; // USER_HZ on Linux

export interface CoreTimes {
  busy: number;
  total: number;
}

/** Jiffies of each core by its number ("0", "1", …). */
export function coreJiffies(): Map<string, CoreTimes> {
  const out = new Map<string, CoreTimes>();
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

export interface ProcStat {
  ppid: number;
  comm: string;
  /** CPU seconds of the process (user + system). */
  cpu: number;
  /** CPU seconds of its children that exited and were reaped. */
  reaped: number;
}

export function procStat(pid: number): ProcStat | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command (which may hold spaces) start after the last ')'.
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return {
      ppid: Number(rest[1]),
      comm: s.slice(s.indexOf('(') + 1, s.lastIndexOf(')')),
      cpu: (Number(rest[11]) + Number(rest[12])) / TICK,
      reaped: (Number(rest[13]) + Number(rest[14])) / TICK,
    };
  } catch {
    return null;
  }
}

function liveProcesses(): { pid: number; stat: ProcStat }[] {
  const out: { pid: number; stat: ProcStat }[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const stat = procStat(Number(d));
    if (stat) out.push({ pid: Number(d), stat });
  }
  return out;
}

/** Live children of `pid` whose command name is `comm`. */
export function childrenNamed(pid: number, comm: string): number[] {
  return liveProcesses()
    .filter((p) => p.stat.ppid === pid && p.stat.comm === comm)
    .map((p) => p.pid);
}

/** CPU seconds of `root`, its live children and its reaped children. */
export function treeCpu(root: number): number {
  const r = procStat(root);
  let sum = r ? r.cpu + r.reaped : 0;
  for (const p of liveProcesses()) if (p.stat.ppid === root) sum += p.stat.cpu;
  return sum;
}

/** The CPU list a process may run on (`Cpus_allowed_list` in /proc/<pid>/status). */
export function affinity(pid: number): string {
  const m = /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m?.[1] ?? '?';
}

/** Seconds the main thread of `pid` waited, runnable, for a CPU. */
export function runqueueWait(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e9;
  } catch {
    return 0;
  }
}

export interface CpuSnapshot {
  at: number;
  cores: Map<string, CoreTimes>;
  /** CPU seconds by name. */
  procs: Map<string, number>;
  waits: Map<string, number>;
}

export interface SnapshotOptions {
  /** Names whose run-queue wait to record. */
  waitOf?: readonly string[];
  /** Names counted with their children (treeCpu). */
  trees?: readonly string[];
}

/** `procs`: name → pid (null: not running, left out). */
export function snapshot(procs: Record<string, number | null>, opts: SnapshotOptions = {}): CpuSnapshot {
  const m = new Map<string, number>();
  const w = new Map<string, number>();
  for (const [name, pid] of Object.entries(procs)) {
    if (pid === null) continue;
    m.set(name, opts.trees?.includes(name) ? treeCpu(pid) : (procStat(pid)?.cpu ?? 0));
    if (opts.waitOf?.includes(name)) w.set(name, runqueueWait(pid));
  }
  return { at: performance.now(), cores: coreJiffies(), procs: m, waits: w };
}

/** CPU microseconds of each named process per operation between two snapshots. */
export function perOp(a: CpuSnapshot, b: CpuSnapshot, ops: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, v] of b.procs) out.set(name, ((v - (a.procs.get(name) ?? 0)) / ops) * 1e6);
  return out;
}

export interface DescribeOptions {
  /** What one operation is called: "core0 98% busy; gateway 0.93 cores (610 µs/call)". Default "call". */
  unit?: string;
  /** Only these cores (default all). */
  cores?: readonly string[];
  /** More CPU seconds by name, measured elsewhere (a load generator's own count). */
  extra?: Record<string, number>;
}

/** "core0 98% busy, core1 71% busy; gateway 0.93 cores (610 µs/call), backend 0.40 cores (…)". */
export function describeCpu(a: CpuSnapshot, b: CpuSnapshot, ops: number, opts: DescribeOptions = {}): string {
  const unit = opts.unit ?? 'call';
  const secs = (b.at - a.at) / 1000;
  const cores = [...b.cores]
    .filter(([c]) => !opts.cores || opts.cores.includes(c))
    .map(([c, y]) => {
      const x = a.cores.get(c);
      if (!x || y.total === x.total) return `core${c} ?`;
      return `core${c} ${Math.round(((y.busy - x.busy) / (y.total - x.total)) * 100)}% busy`;
    });
  const used: [string, number][] = [...b.procs].map(([name, v]) => [name, v - (a.procs.get(name) ?? 0)]);
  used.push(...Object.entries(opts.extra ?? {}));
  const shares = used.map(
    ([name, v]) => `${name} ${(v / secs).toFixed(2)} cores (${Math.round((v / ops) * 1e6)} µs/${unit})`,
  );
  const waits = [...b.waits].map(
    ([name, v]) =>
      `${name} main thread waited for a CPU ${Math.round(((v - (a.waits.get(name) ?? 0)) / ops) * 1e6)} µs/${unit}`,
  );
  return `${cores.join(', ')}${shares.length ? `; ${shares.join(', ')}` : ''}${waits.length ? `; ${waits.join(', ')}` : ''}`;
}

/**
 * CPU milliseconds a fixed JS loop (1e8 additions) takes on `core` (a taskset CPU list): a
 * yardstick for how fast this machine's cores are right now (a shared or oversubscribed VM can be
 * several times slower than an idle machine, and /proc counts that as CPU time), printed next to
 * the results.
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
