/**
 * Where the CPU went during a phase: busy share of each core (/proc/stat, which includes other
 * people's processes on a shared machine), and CPU seconds of the server process and of the
 * PostgreSQL processes (the postmaster and its children).
 */
import { readFileSync, readdirSync } from 'node:fs';

const TICK = 100; // USER_HZ on Linux

function coreJiffies(): Map<string, { busy: number; total: number }> {
  const out = new Map<string, { busy: number; total: number }>();
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^(cpu\d+)\s+(.*)$/.exec(line);
    if (!m?.[1] || !m[2]) continue;
    const v = m[2].split(/\s+/).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0); // idle + iowait
    out.set(m[1], { busy: total - idle, total });
  }
  return out;
}

function statOf(pid: number): { ppid: number; cpu: number; reaped: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command (which may hold spaces) start after the last ')'.
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return {
      ppid: Number(rest[1]),
      cpu: (Number(rest[11]) + Number(rest[12])) / TICK,
      // CPU of children that exited and were reaped (backends of closed connections).
      reaped: (Number(rest[13]) + Number(rest[14])) / TICK,
    };
  } catch {
    return null;
  }
}

/**
 * CPU seconds of `root`, its live children and its reaped children (PostgreSQL backends are
 * children of the postmaster).
 */
function treeCpu(root: number): number {
  const r = statOf(root);
  let sum = r ? r.cpu + r.reaped : 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = statOf(Number(d));
    if (st && st.ppid === root) sum += st.cpu;
  }
  return sum;
}

export interface CpuSnapshot {
  at: number;
  cores: Map<string, { busy: number; total: number }>;
  server: number;
  postgres: number;
}

export function snapshot(serverPid: number | null, postmasterPid: number | null): CpuSnapshot {
  return {
    at: performance.now(),
    cores: coreJiffies(),
    server: serverPid === null ? 0 : (statOf(serverPid)?.cpu ?? 0),
    postgres: postmasterPid === null ? 0 : treeCpu(postmasterPid),
  };
}

/** CPU microseconds per decision of the server and of PostgreSQL between two snapshots. */
export function perDecision(a: CpuSnapshot, b: CpuSnapshot, ops: number): { serverUs: number; postgresUs: number } {
  return { serverUs: ((b.server - a.server) / ops) * 1e6, postgresUs: ((b.postgres - a.postgres) / ops) * 1e6 };
}

/**
 * "core0 97% busy, core1 64% busy; server 0.96 cores (310 µs/decision), postgres 0.41 cores
 * (130 µs/decision)": `ops` decisions were made between the snapshots.
 */
export function describeCpu(a: CpuSnapshot, b: CpuSnapshot, cores: string[], ops: number): string {
  const secs = (b.at - a.at) / 1000;
  const parts = cores.map((c) => {
    const x = a.cores.get(`cpu${c}`);
    const y = b.cores.get(`cpu${c}`);
    if (!x || !y || y.total === x.total) return `core${c} ?`;
    return `core${c} ${Math.round(((y.busy - x.busy) / (y.total - x.total)) * 100)}% busy`;
  });
  const share = (v: number) => `${(v / secs).toFixed(2)} cores (${Math.round((v / ops) * 1e6)} µs/decision)`;
  const shares = [];
  if (b.server > 0) shares.push(`server ${share(b.server - a.server)}`);
  if (b.postgres > 0) shares.push(`postgres ${share(b.postgres - a.postgres)}`);
  return `${parts.join(', ')}${shares.length ? `; ${shares.join(', ')}` : ''}`;
}
