/**
 * h2load over HTTP/1.1 (`--h1`) for `npm run bench:e2e`: one process per connection (each replays
 * its own pre-built `tools/call` body, so no two requests in flight share a JSON-RPC id in a
 * session), pinned to the load core, under /usr/bin/time so the CPU it takes from that core is known.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface Target {
  url: string;
  /** The replayed POST body. */
  bodyFile: string;
  headers: Record<string, string>;
}

export interface H2Result {
  /** Requests that finished (with -D, requests still in flight at the end are abandoned). */
  requests: number;
  started: number;
  succeeded: number;
  ok2xx: number;
  /** h2load's `status codes:` line, e.g. "1597 2xx, 0 3xx, 3 4xx, 0 5xx". */
  statuses: string;
  seconds: number;
  /** CPU seconds (user + system) of the h2load process. */
  cpuSeconds: number;
}

export function h2load(core: string, target: Target, args: string[]): Promise<H2Result> {
  const headers = Object.entries(target.headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
  return new Promise((resolve, reject) => {
    const p = spawn(
      'taskset',
      [
        '-c',
        core,
        '/usr/bin/time',
        '-f',
        'h2load-cpu %U %S',
        'h2load',
        '--h1',
        ...args,
        '-d',
        target.bodyFile,
        ...headers,
        target.url,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let text = '';
    p.stdout.on('data', (d: Buffer) => (text += d.toString()));
    p.stderr.on('data', (d: Buffer) => (text += d.toString()));
    p.on('close', (code) => {
      const fin = /finished in ([\d.]+)(ms|s)/.exec(text);
      const req = /requests: (\d+) total, (\d+) started, \d+ done, (\d+) succeeded/.exec(text);
      const st = /status codes: ((\d+) 2xx.*)/.exec(text);
      if (code !== 0 || !fin || !req || !st) return reject(new Error(`h2load failed (${code}):\n${text}`));
      const cpu = /h2load-cpu ([\d.]+) ([\d.]+)/.exec(text);
      resolve({
        requests: Number(req[1]),
        started: Number(req[2]),
        succeeded: Number(req[3]),
        ok2xx: Number(st[2]),
        statuses: st[1] ?? '',
        seconds: Number(fin[1]) / (fin[2] === 'ms' ? 1000 : 1),
        cpuSeconds: cpu ? Number(cpu[1]) + Number(cpu[2]) : NaN,
      });
    });
  });
}

/** Latencies in ms of the 2xx answers in h2load `--log-file`s (start µs, status, duration µs). */
export function readLatencies(files: readonly string[]): number[] {
  const lat: number[] = [];
  for (const f of files) {
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      const cols = line.split('\t');
      const status = Number(cols[1]);
      if (cols.length >= 3 && status >= 200 && status < 300) lat.push(Number(cols[2]) / 1000);
    }
  }
  return lat.sort((a, b) => a - b);
}

/** Nearest-rank quantile of an ascending array. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN;
}
