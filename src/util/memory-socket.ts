/**
 * Two connected in-memory streams that node:http accepts as sockets: one end goes to an
 * `http.Server` (`server.emit('connection', end)`), the other is returned from an `Agent`'s
 * `createConnection`. The built-in front reaches the gateway this way when both run in one process
 * (`--role all`): HTTP/1.1 is spoken as over TCP, so the gateway sees the same requests, but no
 * loopback socket, syscalls or event-loop wake-ups per request (≈35 µs of CPU per request on this
 * machine, client and server together).
 *
 * Closing either end closes the other, as a TCP reset would: a front that gives up on a request
 * (client gone, timeout) aborts the gateway's handling of it, and a gateway that drops a
 * connection fails the front's request on it.
 */
import { Duplex } from 'node:stream';

class MemorySocket extends Duplex {
  peer: MemorySocket | null = null;
  // What node:http and net callers read or call on a socket; there is no TCP underneath.
  readonly remoteAddress = '127.0.0.1';
  readonly remotePort = 0;
  readonly remoteFamily = 'IPv4';
  readonly localAddress = '127.0.0.1';
  readonly localPort = 0;
  readonly encrypted = false;
  connecting = false;

  override _read(): void {
    // Data is pushed by the peer's writes.
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const p = this.peer;
    if (!p || p.destroyed) return cb(new Error('socket closed by the other end'));
    p.push(chunk);
    cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.peer?.push(null);
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const p = this.peer;
    this.peer = null;
    if (p && !p.destroyed) {
      p.peer = null;
      p.destroy();
    }
    cb(err);
  }

  // Timeouts, Nagle and keep-alive probes are TCP matters; both ends keep their own timers.
  setTimeout(_ms: number, cb?: () => void): this {
    if (cb) this.once('timeout', cb);
    return this;
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }

  address(): { address: string; family: string; port: number } {
    return { address: this.localAddress, family: 'IPv4', port: 0 };
  }
}

/** A connected pair: what is written to one end is read from the other. */
export function memorySocketPair(): [Duplex, Duplex] {
  const a = new MemorySocket();
  const b = new MemorySocket();
  a.peer = b;
  b.peer = a;
  return [a, b];
}
