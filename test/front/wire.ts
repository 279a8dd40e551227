/**
 * Raw HTTP/1.1 on a socket, for comparing fronts byte for byte: requests go out exactly as written
 * (bad paths, odd headers, non-UTF-8 bytes), responses are parsed here so that header order,
 * repeated headers, reason phrases and framing stay visible.
 */
import { connect } from 'node:net';

export interface WireResponse {
  /** Interim 1xx heads seen before the final one, verbatim. */
  interim: string[];
  status: number;
  reason: string;
  /** Header lines in wire order, names as sent. */
  headers: [string, string][];
  /** The body with chunked framing removed. */
  body: Buffer;
  /** How the body was framed: 'length', 'chunked', 'none' or 'close'. */
  framing: 'length' | 'chunked' | 'none' | 'close';
  /** The connection closed right after the response (within `closeWaitMs`). */
  closed: boolean;
  /** Arrival times of the body's pieces (ms since the request was written), for streaming checks. */
  arrivals: number[];
}

export interface WireOptions {
  /** Give up after this long (default 5000 ms). */
  timeoutMs?: number;
  /** After a complete response, how long to watch for the server closing the connection (default 0). */
  closeWaitMs?: number;
  /** The request was HEAD (no response body whatever the headers say). */
  head?: boolean;
  /** Write the request in these parts, `gapMs` apart. */
  parts?: Buffer[];
  gapMs?: number;
  /** Destroy the socket this long after writing (a client that goes away); resolves with what came. */
  abortAfterMs?: number;
}

function indexOfCrlf(buf: Buffer, from: number): number {
  return buf.indexOf('\r\n', from, 'latin1');
}

/** Parses one response from `buf`; returns null while more bytes are needed. */
function parse(
  buf: Buffer,
  head: boolean,
  ended: boolean,
): (Omit<WireResponse, 'closed' | 'arrivals'> & { used: number }) | null {
  const interim: string[] = [];
  let off = 0;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', off, 'latin1');
    if (end === -1) return null;
    const headText = buf.subarray(off, end).toString('latin1');
    const lines = headText.split('\r\n');
    const m = /^HTTP\/1\.1 (\d+) ?(.*)$/.exec(lines[0] ?? '');
    if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
    const status = Number(m[1]);
    const headers = lines.slice(1).map((l): [string, string] => {
      const c = l.indexOf(':');
      return [l.slice(0, c), l.slice(c + 1).trim()];
    });
    let pos = end + 4;
    if (status >= 100 && status < 200 && status !== 101) {
      interim.push(headText);
      off = pos;
      continue;
    }
    const get = (n: string) => headers.find(([k]) => k.toLowerCase() === n)?.[1];
    const base = { interim, status, reason: m[2] ?? '', headers };
    if (head || status === 204 || status === 304) return { ...base, body: Buffer.alloc(0), framing: 'none', used: pos };
    const te = get('transfer-encoding');
    if (te !== undefined && /chunked/i.test(te)) {
      const parts: Buffer[] = [];
      for (;;) {
        const le = indexOfCrlf(buf, pos);
        if (le === -1)
          return ended ? { ...base, body: Buffer.concat(parts), framing: 'close', used: buf.length } : null;
        const size = parseInt(buf.subarray(pos, le).toString('latin1'), 16);
        if (size === 0) {
          if (buf.length < le + 4) return null;
          return { ...base, body: Buffer.concat(parts), framing: 'chunked', used: le + 4 };
        }
        if (buf.length < le + 2 + size + 2) {
          return ended
            ? { ...base, body: Buffer.concat([...parts, buf.subarray(le + 2)]), framing: 'close', used: buf.length }
            : null;
        }
        parts.push(buf.subarray(le + 2, le + 2 + size));
        pos = le + 2 + size + 2;
      }
    }
    const cl = get('content-length');
    if (cl !== undefined) {
      const n = Number(cl);
      if (buf.length < pos + n)
        return ended ? { ...base, body: buf.subarray(pos), framing: 'close', used: buf.length } : null;
      return { ...base, body: buf.subarray(pos, pos + n), framing: 'length', used: pos + n };
    }
    if (!ended) return null;
    return { ...base, body: buf.subarray(pos), framing: 'close', used: buf.length };
  }
}

/** Sends `request` on a fresh connection to 127.0.0.1:`port` and reads one response. */
export function exchange(port: number, request: Buffer | string, opts: WireOptions = {}): Promise<WireResponse> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const closeWaitMs = opts.closeWaitMs ?? 0;
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let ended = false;
    let done: (Omit<WireResponse, 'closed' | 'arrivals'> & { used: number }) | null = null;
    const arrivals: number[] = [];
    const t0 = Date.now();
    const finish = (closed: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      if (!done) {
        reject(new Error(`incomplete response after ${Date.now() - t0} ms: ${JSON.stringify(buf.toString('latin1'))}`));
        return;
      }
      const { used: _used, ...r } = done;
      resolve({ ...r, closed, arrivals });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      arrivals.push(Date.now() - t0);
      if (done) return;
      done = parse(buf, opts.head ?? false, false);
      if (done) {
        clearTimeout(timer);
        setTimeout(() => finish(ended), closeWaitMs);
      }
    });
    socket.on('error', () => {
      // A reset after (or instead of) the response: what was read is what the client saw.
    });
    socket.on('close', () => {
      ended = true;
      if (!done) done = parse(buf, opts.head ?? false, true);
      finish(true);
    });
    const parts = opts.parts ?? [typeof request === 'string' ? Buffer.from(request, 'latin1') : request];
    const write = (i: number): void => {
      const p = parts[i];
      if (p === undefined) {
        if (opts.abortAfterMs !== undefined) {
          setTimeout(() => {
            if (!done) done = { interim: [], status: 0, reason: '', headers: [], body: buf, framing: 'close', used: 0 };
            finish(true);
          }, opts.abortAfterMs);
        }
        return;
      }
      socket.write(p, () => setTimeout(() => write(i + 1), i + 1 < parts.length ? (opts.gapMs ?? 0) : 0));
    };
    write(0);
  });
}

/** A request as bytes: `head` lines joined with CRLF, then the body. */
export function rawRequest(head: string[], body: Buffer | string = ''): Buffer {
  const tail = typeof body === 'string' ? Buffer.from(body, 'latin1') : body;
  return Buffer.concat([Buffer.from(head.join('\r\n') + '\r\n\r\n', 'latin1'), tail]);
}
