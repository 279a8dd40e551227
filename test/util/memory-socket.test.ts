/**
 * In-memory sockets between node:http's client and server (the built-in front's hop to a gateway
 * in the same process): requests and streamed answers pass as over TCP, an Agent keeps one
 * connection alive across requests, and closing either end is seen by the other.
 */
import { Agent, createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { memorySocketPair } from '../../src/util/memory-socket.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

let server: Server | null = null;
let agent: Agent | null = null;
afterEach(() => {
  agent?.destroy();
  server?.closeAllConnections();
  server?.close();
});

/** A server reached only through memory sockets, and an agent that opens them; counts connections. */
function setup(handler: Handler) {
  const s = createServer(handler);
  server = s;
  let connections = 0;
  const a = new Agent({ keepAlive: true, maxSockets: 4 });
  agent = a;
  a.createConnection = () => {
    connections++;
    const [client, serverSide] = memorySocketPair();
    s.emit('connection', serverSide);
    return client as Socket;
  };
  return { server: s, agent: a, connections: () => connections };
}

function send(
  a: Agent,
  body: string,
  path = '/',
): Promise<{ status: number; body: string; req: ReturnType<typeof request> }> {
  return new Promise((resolve, reject) => {
    const req = request({ agent: a, host: 'gateway.invalid', method: 'POST', path }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, req }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('memory sockets', () => {
  it('carry requests and bodies both ways, on one kept-alive connection for sequential requests', async () => {
    const env = setup((req, res) => {
      let n = 0;
      req.on('data', (d: Buffer) => (n += d.length));
      req.on('end', () => res.end(JSON.stringify({ url: req.url, bytes: n, peer: req.socket.remoteAddress })));
    });
    const big = 'x'.repeat(300_000);
    for (let i = 0; i < 20; i++) {
      const r = await send(env.agent, i % 2 ? big : 'hi', `/r${i}`);
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toEqual({ url: `/r${i}`, bytes: i % 2 ? big.length : 2, peer: '127.0.0.1' });
    }
    expect(env.connections()).toBe(1);
  });

  it('stream an answer as it is written (SSE)', async () => {
    const env = setup((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let n = 0;
      const t = setInterval(() => {
        res.write(`data: ${n++}\n\n`);
        if (n === 3) {
          clearInterval(t);
          res.end();
        }
      }, 20);
    });
    const events: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const req = request({ agent: env.agent, host: 'x', path: '/' }, (res) => {
        res.setEncoding('utf8');
        res.on('data', (d: string) => events.push(d));
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end();
    });
    // Three separate writes arrive as three chunks: nothing is buffered until the end.
    expect(events).toEqual(['data: 0\n\n', 'data: 1\n\n', 'data: 2\n\n']);
  });

  it('a client that gives up mid-answer closes the request at the server', async () => {
    let serverSawClose!: () => void;
    const closed = new Promise<void>((r) => (serverSawClose = r));
    const env = setup((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: first\n\n');
      res.on('close', () => {
        if (!res.writableFinished) serverSawClose();
      });
    });
    await new Promise<void>((resolve) => {
      const req = request({ agent: env.agent, host: 'x', path: '/' }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => undefined);
      req.end();
    });
    await closed;
  });

  it('a server that drops the connection fails the request in flight', async () => {
    const env = setup((req) => req.socket.destroy());
    await expect(send(env.agent, 'x')).rejects.toThrow(/socket hang up|closed/);
  });

  it('closing one end closes the other; a write after that fails instead of vanishing', async () => {
    const [a, b] = memorySocketPair();
    const closed = new Promise<void>((r) => a.once('close', r));
    b.destroy();
    await closed;
    expect(a.destroyed).toBe(true);
    const err = await new Promise<Error | null | undefined>((resolve) => a.write('late', resolve));
    expect(err).toBeInstanceOf(Error);
  });
});
