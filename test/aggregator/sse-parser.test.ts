/**
 * The SSE parser of the HTTP client transport, fed the way a socket feeds it: arbitrary chunks.
 * Every test also runs with the input cut at every byte, so no boundary is special.
 */
import { describe, expect, it } from 'vitest';
import { SseParser, SseTooLargeError, type SseEvent } from '../../src/aggregator/sse-parser.js';

function parse(input: string | Buffer, limit = 1 << 20): { events: SseEvent[]; retryMs: number | undefined } {
  const p = new SseParser(limit);
  const events: SseEvent[] = [];
  p.push(typeof input === 'string' ? Buffer.from(input) : input, (e) => void events.push(e));
  return { events, retryMs: p.retryMs };
}

/** The same input in two chunks, cut at every position, and byte by byte. */
function everyCut(input: string): SseEvent[][] {
  const buf = Buffer.from(input);
  const runs: SseEvent[][] = [];
  for (let cut = 0; cut <= buf.length; cut++) {
    const p = new SseParser(1 << 20);
    const events: SseEvent[] = [];
    p.push(buf.subarray(0, cut), (e) => void events.push(e));
    p.push(buf.subarray(cut), (e) => void events.push(e));
    runs.push(events);
  }
  const p = new SseParser(1 << 20);
  const events: SseEvent[] = [];
  for (let i = 0; i < buf.length; i++) p.push(buf.subarray(i, i + 1), (e) => void events.push(e));
  runs.push(events);
  return runs;
}

function expectEverywhere(input: string, expected: SseEvent[]): void {
  for (const run of everyCut(input)) expect(run).toEqual(expected);
}

describe('SseParser', () => {
  it('dispatches on a blank line; joins data lines with \\n; strips one space after the colon', () => {
    expectEverywhere('data: a\ndata:b\ndata:  c\n\n', [{ type: 'message', data: 'a\nb\n c', id: undefined }]);
  });

  it('accepts LF, CRLF and lone CR line ends, in any mix', () => {
    const expected = [
      { type: 'message', data: 'one', id: undefined },
      { type: 'message', data: 'two', id: undefined },
      { type: 'message', data: 'three', id: undefined },
    ];
    expectEverywhere('data: one\r\n\r\ndata: two\r\rdata: three\n\r\n', expected);
  });

  it('takes event types and ids; an id alone still moves the resumption point', () => {
    expectEverywhere('id: 7\nevent: ping\ndata: x\n\nid: 8\ndata:\n\nid: 9\n\n', [
      { type: 'ping', data: 'x', id: '7' },
      { type: 'message', data: '', id: '8' },
      { type: 'message', data: '', id: '9' },
    ]);
  });

  it('ignores comments, unknown fields, an id with NUL, and an unterminated last event', () => {
    expectEverywhere(': keepalive\nfoo: bar\nid: a\0b\ndata: x\n\ndata: never dispatched', [
      { type: 'message', data: 'x', id: undefined },
    ]);
  });

  it('a field without a colon is a field with an empty value', () => {
    expectEverywhere('data\ndata\n\n', [{ type: 'message', data: '\n', id: undefined }]);
  });

  it('strips a leading byte order mark, only at the start', () => {
    expectEverywhere('\ufeffdata: a\n\n', [{ type: 'message', data: 'a', id: undefined }]);
    expect(parse('data: a\n\n\ufeffdata: b\n\n').events).toEqual([{ type: 'message', data: 'a', id: undefined }]);
  });

  it('keeps multi-byte characters split across chunks intact', () => {
    expectEverywhere('data: é🌍中\n\n', [{ type: 'message', data: 'é🌍中', id: undefined }]);
  });

  it('reads retry only when it is all digits', () => {
    expect(parse('retry: 1500\n\n').retryMs).toBe(1500);
    expect(parse('retry: 15x\n\n').retryMs).toBeUndefined();
  });

  it('fails past the limit, counting the data of one event and a line still being received', () => {
    expect(() => parse(`data: ${'a'.repeat(50)}\ndata: ${'b'.repeat(50)}\n\n`, 64)).toThrow(SseTooLargeError);
    const p = new SseParser(64);
    p.push(Buffer.from(`data: ${'a'.repeat(40)}`), () => undefined);
    expect(() => p.push(Buffer.from('a'.repeat(40)), () => undefined)).toThrow(/exceeds the limit of 64 bytes/);
    // The limit is per event: many small events are fine.
    const events = parse('data: 0123456789\n\n'.repeat(100), 64).events;
    expect(events).toHaveLength(100);
  });
});
