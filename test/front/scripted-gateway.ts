/**
 * A gateway stand-in whose answer is chosen by the request's `x-mode` header, for the upstream half
 * of the differential test: odd response heads, resets, slow answers, interim responses, streams a
 * client abandons. It records when each request's connection went away before its response ended.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ScriptedGateway {
  readonly port: number;
  /** `x-mode` of every request whose client side closed before the response finished. */
  readonly abandoned: string[];
  /** Every request: its `x-mode` and the peer port of the connection it came on. */
  readonly requests: { mode: string; remotePort: number }[];
  close(): Promise<void>;
}

export async function startScriptedGateway(): Promise<ScriptedGateway> {
  const abandoned: string[] = [];
  const requests: { mode: string; remotePort: number }[] = [];
  const server: Server = createServer((req, res) => {
    const mode = String(req.headers['x-mode'] ?? '');
    requests.push({ mode, remotePort: req.socket.remotePort ?? 0 });
    res.on('close', () => {
      if (!res.writableFinished) abandoned.push(mode);
    });
    req.resume();
    req.on('end', () => {
      switch (mode) {
        case 'headers':
          res.writeHead(201, 'Custom Reason', [
            'Server',
            'gateway/1.0',
            'X-B',
            '1',
            'Connection',
            'keep-alive, x-hop',
            'x-hop',
            'h',
            'Keep-Alive',
            'timeout=5',
            'Proxy-Connection',
            'x',
            'X-A',
            '2',
            'Content-Length',
            '3',
            'x-b',
            '3',
            'Date',
            'Mon, 01 Jan 2001 00:00:00 GMT',
            'Set-Cookie',
            'a=1',
            'Set-Cookie',
            'b=2',
            'x-mcpgw-decision-id',
            'from-gateway',
          ]);
          res.end('abc');
          return;
        case 'error-status':
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end('gateway says no');
          return;
        case 'empty-404':
          res.writeHead(404);
          res.end();
          return;
        case 'not-modified':
          res.writeHead(304, { etag: '"x"' });
          res.end();
          return;
        case 'continue':
          res.writeContinue();
          setTimeout(() => {
            res.writeHead(200, { 'content-length': '2' });
            res.end('ok');
          }, 20);
          return;
        case 'close-delimited':
          // An HTTP/1.0-style answer: no length, the end of the body is the end of the connection.
          res.socket?.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end');
          return;
        case 'reset-mid-body':
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('partial');
          setTimeout(() => res.socket?.destroy(), 100);
          return;
        case 'reset-before-head':
          res.socket?.destroy();
          return;
        case 'slow':
          setTimeout(() => res.end('late'), 6000).unref();
          return;
        case 'stream':
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write('data: first\n\n');
          // Keeps the stream open until the client leaves.
          return;
        case 'big':
          res.writeHead(200, { 'content-type': 'application/octet-stream' });
          res.end(Buffer.alloc(3 * 1024 * 1024, 0x62));
          return;
        default:
          res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
          res.end('ok');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    abandoned,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A port nothing listens on (bound, then released). */
export async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
