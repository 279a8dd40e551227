/**
 * h2load runs for `npm run bench:layer2`: one process per frame (h2load sends one body per
 * process), all pinned to the load core, posting gRPC Check frames over cleartext HTTP/2, each
 * under /usr/bin/time so the CPU the load generator takes from its core is known.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface H2Result {
  requests: number;
  succeeded: number;
  seconds: number;
  /** CPU seconds (user + system) of the h2load process. */
  cpuSeconds: number;
}

export interface H2Options {
  core: string;
  port: number;
  /** Per frame: extra h2load arguments (-n, -c, -m, --rps, --log-file…). */
  args: (index: number) => string[];
}

export function h2loadAll(frames: readonly string[], opts: H2Options): Promise<H2Result[]> {
  return Promise.all(
    frames.map(
      (file, i) =>
        new Promise<H2Result>((resolve, reject) => {
          const p = spawn(
            'taskset',
            [
              '-c',
              opts.core,
              '/usr/bin/time',
              '-f',
              'h2load-cpu %U %S',
              'h2load',
              ...opts.args(i),
              '-d',
              file,
              '-H',
              'content-type: application/grpc',
              '-H',
              'te: trailers',
              `http://127.0.0.1:${opts.port}/envoy.service.auth.v3.Authorization/Check`,
            ],
            { stdio: ['ignore', 'pipe', 'pipe'] },
          );
          let text = '';
          p.stdout.on('data', (d: Buffer) => (text += d.toString()));
          p.stderr.on('data', (d: Buffer) => (text += d.toString()));
          p.on('close', (code) => {
            const fin = /finished in ([\d.]+)(ms|s)/.exec(text);
            const req = /requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded/.exec(text);
            if (code !== 0 || !fin || !req) return reject(new Error(`h2load failed (${code}):\n${text}`));
            const secs = Number(fin[1]) / (fin[2] === 'ms' ? 1000 : 1);
            const cpu = /h2load-cpu ([\d.]+) ([\d.]+)/.exec(text);
            resolve({
              requests: Number(req[1]),
              succeeded: Number(req[2]),
              seconds: secs,
              cpuSeconds: cpu ? Number(cpu[1]) + Number(cpu[2]) : NaN,
            });
          });
        }),
    ),
  );
}

/**
 * Reads h2load --log-file files: the latency (ms) of every answered request, and the offered rate
 * (the sum over clients of each one's requests per second between its first and last start, so
 * that h2load processes starting at slightly different times do not dilute it).
 */
export function readLatencies(files: readonly string[]): { lat: number[]; rate: number } {
  const lat: number[] = [];
  let rate = 0;
  for (const f of files) {
    let first = Infinity;
    let last = -Infinity;
    let n = 0;
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      const cols = line.split('\t');
      if (cols.length < 3 || cols[1] !== '200') continue;
      const start = Number(cols[0]);
      first = Math.min(first, start);
      last = Math.max(last, start);
      lat.push(Number(cols[2]) / 1000);
      n++;
    }
    if (n > 1 && last > first) rate += (n - 1) / ((last - first) / 1e6);
  }
  lat.sort((a, b) => a - b);
  return { lat, rate };
}

export function quantile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}
