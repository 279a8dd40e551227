/**
 * TEST-ONLY relay for the MCP conformance run. Never ship or reuse it: it hands one agent's API key
 * to anyone who can reach its loopback port.
 *
 * The official suite (`@modelcontextprotocol/conformance`) connects to a server URL with no
 * credentials, and the gateway answers every unauthenticated request with 401. This relay sits
 * between them on 127.0.0.1: it adds `Authorization: Bearer <agent key>` to each request and passes
 * everything else through unchanged in both directions: method, path, query, headers (Host and
 * Origin included, so the suite's DNS-rebinding scenario reaches the gateway's own checks), the
 * body as a stream, the status, the response headers and the response body as it arrives (SSE
 * events are not buffered).
 */
import { createServer, request, type IncomingHttpHeaders, type OutgoingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Relay {
  /** `http://127.0.0.1:<port>`: append the path (e.g. `/mcp`). */
  readonly origin: string;
  readonly port: number;
  close(): Promise<void>;
}

export interface RelayOptions {
  /** The gateway's front. */
  target: { host: string; port: number };
  /** Sent as `Authorization: Bearer <bearer>` on every request. */
  bearer: string;
}

/** Connection-level headers (RFC 9110 §7.6.1), which a proxy does not forward. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function forwardable(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = new Set(
    (typeof headers.connection === 'string' ? headers.connection : '')
      .split(',')
      .map((h) => h.trim().toLowerCase())
      .filter((h) => h !== ''),
  );
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || named.has(name)) continue;
    out[name] = value;
  }
  return out;
}

export async function startRelay(o: RelayOptions): Promise<Relay> {
  const server: Server = createServer((req, res) => {
    const headers = forwardable(req.headers);
    delete headers['authorization'];
    headers['authorization'] = `Bearer ${o.bearer}`;
    const upstream = request(
      { host: o.target.host, port: o.target.port, method: req.method, path: req.url, headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.statusMessage, forwardable(up.headers));
        // SSE: the client sees the status and headers now, and each event when it comes.
        res.flushHeaders();
        up.pipe(res);
        up.on('error', () => res.destroy());
      },
    );
    upstream.on('error', (err) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const body = JSON.stringify({
        jsonrpc: '2.0',
        id: null,
        error: { code: -32603, message: `conformance relay: gateway unreachable (${err.message})` },
      });
      res.writeHead(502, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    // The suite gave up on a stream (or closed its client): stop the upstream request as well.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
