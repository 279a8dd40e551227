/** relayLines: a child's output reaches the log in whole lines only (src/util/line-relay.ts). */
import { PassThrough } from 'node:stream';
import { expect, it } from 'vitest';
import { relayLines } from '../../src/util/line-relay.js';

function relay(maxLine?: number) {
  const from = new PassThrough();
  const writes: string[] = [];
  relayLines(from, (t) => writes.push(t), maxLine);
  const ended = new Promise<void>((resolve) => from.on('end', () => resolve()));
  return { from, writes, ended };
}

it('holds a line cut between chunks until its end arrives, and writes only whole lines', async () => {
  const { from, writes, ended } = relay();
  from.write('{"a":1}\n{"user":"agent",');
  from.write('"user_agent":"h2load"}\n{"b":2}\n');
  from.write('{"c":');
  // A multi-byte character split across chunks stays one character.
  from.write(Buffer.from('"é', 'utf8').subarray(0, 2));
  from.write(Buffer.concat([Buffer.from('"é', 'utf8').subarray(2), Buffer.from('"}\n')]));
  from.end('tail without newline');
  await ended;
  expect(writes).toEqual([
    '{"a":1}\n',
    '{"user":"agent","user_agent":"h2load"}\n{"b":2}\n',
    '{"c":"é"}\n',
    'tail without newline\n',
  ]);
  expect(writes.every((w) => w.endsWith('\n'))).toBe(true);
});

it('passes on a line longer than the bound rather than holding it', async () => {
  const { from, writes, ended } = relay(8);
  from.write('0123456789');
  from.end('ab\n');
  await ended;
  expect(writes).toEqual(['0123456789', 'ab\n']);
});
