/**
 * The process logger writes inline to a regular file (no hand-off of every line to the libuv pool)
 * and asynchronously to pipes, so a stalled reader cannot block the event loop.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'mcpgw-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Logs one line, then reports on stderr whether the destination was synchronous.
const script = `
import pino from 'pino';
import { createLogger } from './src/log.ts';
const log = createLogger({ level: 'info' });
log.info({ n: 1 }, 'hello');
process.stderr.write(JSON.stringify({ sync: log[pino.symbols.streamSym].sync }));
`;

function run(stdout: 'pipe' | number): { sync: boolean; out: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: process.cwd(),
    stdio: ['ignore', stdout, 'pipe'],
    encoding: 'utf8',
    env: { ...process.env, MCPGW_LOG_LEVEL: 'info' },
  });
  expect(r.status, r.stderr).toBe(0);
  return {
    sync: (JSON.parse(r.stderr.trim().split('\n').pop() ?? '{}') as { sync: boolean }).sync,
    out: r.stdout ?? '',
  };
}

describe('process logger destination', () => {
  it('is synchronous when stdout is a regular file, and the line is there when the process ends', () => {
    const file = join(dir, 'out.log');
    const fd = openSync(file, 'w');
    try {
      expect(run(fd).sync).toBe(true);
    } finally {
      closeSync(fd);
    }
    expect(JSON.parse(readFileSync(file, 'utf8').trim())).toMatchObject({ msg: 'hello', n: 1 });
  });

  it('stays asynchronous on a pipe', () => {
    const r = run('pipe');
    expect(r.sync).toBe(false);
    expect(JSON.parse(r.out.trim())).toMatchObject({ msg: 'hello', n: 1 });
  });
});
