/**
 * The backend of `npm run bench:e2e`: a Streamable HTTP MCP server (the SDK's transport, one
 * session per client, as test/fixtures/backends/fixture-server.mjs does) with one cheap tool,
 * `echo`, that counts its calls so the bench can prove that every answer was a real tool result.
 *
 *   node --import tsx bench/e2e/backend.ts [--json]
 *
 * Prints {"port":N} once listening. SIGUSR2 prints {"calls":N,"requests":R,"connections":C,
 * "sessions":S} (echo calls, HTTP requests and TCP connections since the last SIGUSR2) and resets.
 * Answers to POSTs are SSE streams (the SDK default, what most servers do) unless --json.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

const json = process.argv.includes('--json');
let calls = 0;
/** HTTP requests and TCP connections since the last SIGUSR2, to see what the gateway sends per call. */
let requests = 0;
let connections = 0;

function newServer(): McpServer {
  const server = new McpServer({ name: 'bench-backend', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.registerTool(
    'echo',
    { description: 'Echo the text', inputSchema: { text: z.string() }, annotations: { readOnlyHint: true } },
    ({ text }) => {
      calls += 1;
      return { content: [{ type: 'text', text: `echo: ${text}` }] };
    },
  );
  return server;
}

const transports = new Map<string, StreamableHTTPServerTransport>();
const http = createServer((req, res) => {
  requests += 1;
  void (async () => {
    const sid = req.headers['mcp-session-id'];
    let transport = typeof sid === 'string' ? transports.get(sid) : undefined;
    if (!transport) {
      if (req.method !== 'POST' || sid !== undefined) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } }));
        return;
      }
      const t = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableJsonResponse: json,
        onsessioninitialized: (id) => void transports.set(id, t),
      });
      t.onclose = () => {
        if (t.sessionId) transports.delete(t.sessionId);
      };
      await newServer().connect(t);
      transport = t;
    }
    await transport.handleRequest(req, res);
  })().catch((err: unknown) => {
    if (!res.headersSent) res.writeHead(500).end(String(err));
  });
});
http.keepAliveTimeout = 60_000;
http.on('connection', () => void (connections += 1));
await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
process.on('SIGUSR2', () => {
  process.stdout.write(`${JSON.stringify({ calls, requests, connections, sessions: transports.size })}\n`);
  calls = 0;
  requests = 0;
  connections = 0;
});
process.on('SIGTERM', () => process.exit(0));
process.stdout.write(`${JSON.stringify({ port: (http.address() as AddressInfo).port })}\n`);
