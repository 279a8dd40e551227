/**
 * Our Streamable HTTP client transport against real MCP SDK servers (SSE answers and JSON
 * answers, as a child process and in-process, over http and https), compared with what the SDK's
 * own client transport gets, and against raw node:http servers that misbehave on purpose.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { InMemoryEventStore } from '@modelcontextprotocol/sdk/examples/shared/inMemoryEventStore.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ErrorCode,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  McpError,
  ResourceUpdatedNotificationSchema,
  ToolListChangedNotificationSchema,
  type Progress,
} from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { HttpClientTransport, type HttpClientTransportOptions } from '../../src/aggregator/http-client-transport.js';
import { createFixtureServer } from '../fixtures/backends/fixture-server.mjs';
import { FIXTURE_SERVER, waitFor } from '../gateway/helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// A real SDK server (the fixture's tools), counting what reaches it
// ---------------------------------------------------------------------------------------------

interface Seen {
  method: string;
  headers: IncomingHttpHeaders;
}

interface SdkServer {
  url: string;
  port: number;
  connections: () => number;
  seen: Seen[];
  sessions: () => number;
  /** Drops every session, as a restarted server would. */
  forget: () => Promise<void>;
  close: () => Promise<void>;
}

interface SdkServerOptions {
  json?: boolean;
  /** An event store and a `cut` tool that closes its answer's stream before answering. */
  resumable?: boolean;
  tls?: { key: string; cert: string };
  port?: number;
}

async function sdkServer(o: SdkServerOptions = {}): Promise<SdkServer> {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const seen: Seen[] = [];
  let connections = 0;
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    seen.push({ method: req.method ?? '', headers: req.headers });
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
          enableJsonResponse: o.json === true,
          onsessioninitialized: (id) => void transports.set(id, t),
          ...(o.resumable ? { eventStore: new InMemoryEventStore(), retryInterval: 50 } : {}),
        });
        t.onclose = () => {
          if (t.sessionId) transports.delete(t.sessionId);
        };
        const server = createFixtureServer({ name: 'fx' });
        server.registerTool('cut', { inputSchema: { ms: z.number() } }, async ({ ms }, extra) => {
          extra.closeSSEStream?.();
          await sleep(ms);
          return {
            content: [{ type: 'text', text: `answered after the cut (${extra.closeSSEStream ? 'cut' : 'not cut'})` }],
          };
        });
        await server.connect(t);
        transport = t;
      }
      await transport.handleRequest(req, res);
    })().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(err));
    });
  };
  const server = o.tls ? https.createServer({ key: o.tls.key, cert: o.tls.cert }, handler) : http.createServer(handler);
  server.on(o.tls ? 'secureConnection' : 'connection', () => void connections++);
  await new Promise<void>((r) => server.listen(o.port ?? 0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${o.tls ? 'https' : 'http'}://127.0.0.1:${port}/mcp`,
    port,
    connections: () => connections,
    seen,
    sessions: () => transports.size,
    forget: async () => {
      await Promise.all([...transports.values()].map((t) => t.close()));
      transports.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of transports.values()) void t.close().catch(() => undefined);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// A raw server: a correct handshake, then whatever a test makes it answer to requests
// ---------------------------------------------------------------------------------------------

interface RawMessage {
  id?: string | number;
  method?: string;
  params?: { protocolVersion?: string };
}

interface RawServer {
  url: string;
  /** Sockets open now. */
  sockets: Set<Socket>;
  requests: () => number;
  close: () => Promise<void>;
}

async function rawServer(
  answer: (msg: RawMessage, res: ServerResponse, req: IncomingMessage) => void,
  o: {
    initialize?: 'answer' | 'hang';
    /** The server-push stream: `n` counts the GETs (405 without this). */
    get?: (req: IncomingMessage, res: ServerResponse, n: number) => void;
  } = {},
): Promise<RawServer> {
  const sockets = new Set<Socket>();
  let requests = 0;
  let gets = 0;
  const server = http.createServer((req, res) => {
    requests++;
    if (req.method === 'GET') return void (o.get ? o.get(req, res, ++gets) : res.writeHead(405).end());
    if (req.method === 'DELETE') return void res.writeHead(200).end();
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const msg = JSON.parse(Buffer.concat(chunks).toString('utf8')) as RawMessage;
      if (msg.method === 'initialize') {
        if (o.initialize === 'hang') return;
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'raw-session' });
        res.end(
          JSON.stringify({
            jsonrpc: '2.0',
            id: msg.id,
            result: {
              protocolVersion: msg.params?.protocolVersion,
              capabilities: { tools: {} },
              serverInfo: { name: 'raw', version: '1.0.0' },
            },
          }),
        );
        return;
      }
      if (msg.id === undefined || msg.method === undefined) return void res.writeHead(202).end();
      answer(msg, res, req);
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    sockets,
    requests: () => requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function rpcResult(id: string | number | undefined, text: string): string {
  return JSON.stringify({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text }] } });
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

interface Connected {
  client: Client;
  transport: HttpClientTransport;
  errors: Error[];
  closed: () => boolean;
}

const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()?.close();
});

function track<T extends { close(): Promise<void> }>(x: T): T {
  open.push(x);
  return x;
}

async function connectOurs(url: string, opts: HttpClientTransportOptions = {}, timeoutMs?: number): Promise<Connected> {
  const transport = new HttpClientTransport(new URL(url), opts);
  const errors: Error[] = [];
  let closed = false;
  const client = newClient();
  track(client);
  await client.connect(transport, timeoutMs === undefined ? {} : { timeout: timeoutMs });
  // Set after connect: the Client chains its own handlers to what it finds, ours come on top.
  const clientError = transport.onerror;
  transport.onerror = (e) => {
    errors.push(e);
    clientError?.(e);
  };
  const clientClose = transport.onclose;
  transport.onclose = () => {
    closed = true;
    clientClose?.();
  };
  return { client, transport, errors, closed: () => closed };
}

function newClient(): Client {
  const client = new Client(
    { name: 'test', version: '1.0.0' },
    { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } },
  );
  client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
    const content = req.params.messages[0]?.content;
    const first = Array.isArray(content) ? content[0] : content;
    const text = first?.type === 'text' ? first.text : '';
    return { role: 'assistant', model: 'test-model', content: { type: 'text', text: `model says ${text}` } };
  });
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: { answer: '42' } }));
  client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [{ uri: 'file:///tmp', name: 'tmp' }] }));
  return client;
}

async function connectSdk(url: string): Promise<Client> {
  const client = newClient();
  track(client);
  await client.connect(new StreamableHTTPClientTransport(new URL(url)) as Transport);
  return client;
}

async function mcpError(p: Promise<unknown>): Promise<McpError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof McpError) return e;
    throw e;
  }
  throw new Error('expected an McpError');
}

async function anError(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    if (e instanceof Error) return e;
    throw e;
  }
  throw new Error('expected an error');
}

// ---------------------------------------------------------------------------------------------

for (const mode of ['sse', 'json'] as const) {
  describe(`a real SDK server answering with ${mode === 'sse' ? 'SSE streams' : 'JSON bodies'}`, () => {
    let server: SdkServer;
    beforeAll(async () => {
      server = await sdkServer({ json: mode === 'json' });
    });
    afterAll(async () => {
      await server?.close();
    });

    it('initializes, keeps the session id and sends the protocol headers and configured headers', async () => {
      const from = server.seen.length;
      const { client, transport } = await connectOurs(server.url, {
        headers: { 'X-Api-Key': 'secret-value', 'Content-Type': 'text/plain', Accept: 'nothing' },
      });
      expect(transport.sessionId).toMatch(/^[0-9a-f-]{36}$/);
      expect(client.getServerVersion()?.name).toBe('fx');
      await client.listTools();
      const seen = server.seen.slice(from);
      const posts = seen.filter((s) => s.method === 'POST');
      expect(posts.length).toBeGreaterThanOrEqual(3);
      for (const p of posts) {
        expect(p.headers['x-api-key']).toBe('secret-value');
        expect(p.headers['content-type']).toBe('application/json');
        expect(p.headers['accept']).toBe('application/json, text/event-stream');
      }
      // The initialize request has neither; everything after it has both.
      expect(posts[0]?.headers['mcp-session-id']).toBeUndefined();
      for (const p of posts.slice(1)) {
        expect(p.headers['mcp-session-id']).toBe(transport.sessionId);
        expect(p.headers['mcp-protocol-version']).toBe(transport.protocolVersion);
      }
      // The server-push stream was asked for once initialized.
      await waitFor(
        () => server.seen.slice(from).filter((s) => s.method === 'GET').length,
        (n) => n === 1,
      );
      const get = server.seen.slice(from).find((s) => s.method === 'GET');
      expect(get?.headers['accept']).toBe('text/event-stream');
      expect(get?.headers['mcp-session-id']).toBe(transport.sessionId);
    });

    it('gets exactly what the SDK transport gets', async () => {
      const ours = (await connectOurs(server.url)).client;
      const theirs = await connectSdk(server.url);
      const calls: Array<(c: Client) => Promise<unknown>> = [
        (c) => c.listTools(),
        (c) => c.callTool({ name: 'echo', arguments: { text: 'héllo ✓ 🌍' } }),
        (c) => c.callTool({ name: 'add', arguments: { a: 2, b: 40 } }),
        (c) => c.callTool({ name: 'link', arguments: {} }),
        (c) => c.callTool({ name: 'echo', arguments: { text: 'x'.repeat(200_000) } }),
        (c) => c.listResources(),
        (c) => c.listResourceTemplates(),
        (c) => c.readResource({ uri: 'fixture://items/7' }),
        (c) => c.listPrompts(),
        (c) => c.getPrompt({ name: 'greet', arguments: { name: 'Ada' } }),
        (c) =>
          c.complete({
            ref: { type: 'ref/resource', uri: 'fixture://items/{id}' },
            argument: { name: 'id', value: '4' },
          }),
        (c) => c.callTool({ name: 'nope', arguments: {} }),
        (c) => c.ping(),
      ];
      for (const call of calls) {
        const settle = (p: Promise<unknown>) =>
          p.then(
            (v) => ({ ok: v }),
            (e: unknown) => ({ err: String(e) }),
          );
        expect(await settle(call(ours))).toEqual(await settle(call(theirs)));
      }
      expect(ours.getServerCapabilities()).toEqual(theirs.getServerCapabilities());
      expect(ours.getInstructions()).toBe(theirs.getInstructions());
    });

    it('delivers server-initiated notifications over the server-push stream', async () => {
      const { client } = await connectOurs(server.url);
      const logged: unknown[] = [];
      let changed = 0;
      const updated: string[] = [];
      client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void logged.push(n.params.data));
      client.setNotificationHandler(ToolListChangedNotificationSchema, () => void changed++);
      client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void updated.push(n.params.uri));
      await client.setLoggingLevel('debug');
      await client.callTool({ name: 'log', arguments: { text: 'from the server' } });
      await client.callTool({ name: 'add_tool', arguments: { name: `t_${mode}` } });
      await client.subscribeResource({ uri: 'fixture://static/hello' });
      await client.callTool({ name: 'touch', arguments: { uri: 'fixture://static/hello' } });
      await waitFor(
        () => ({ logged, changed, updated }),
        (v) => v.logged.length === 1 && v.changed === 1 && v.updated.length === 1,
      );
      expect(logged).toEqual(['from the server']);
      expect(updated).toEqual(['fixture://static/hello']);
      const tools = await client.listTools();
      expect(tools.tools.map((t) => t.name)).toContain(`t_${mode}`);
    });

    it('keeps one connection for many sequential calls', async () => {
      const before = server.connections();
      const { client } = await connectOurs(server.url);
      for (let i = 0; i < 100; i++) {
        const r = await client.callTool({ name: 'echo', arguments: { text: String(i) } });
        expect(r.content).toEqual([{ type: 'text', text: `echo: ${i}` }]);
      }
      // One for the POSTs, one for the server-push stream; an SSE answer's end may trail its last
      // event, so a call may occasionally find the POST connection still busy.
      const used = server.connections() - before;
      expect(used).toBeGreaterThanOrEqual(2);
      expect(used).toBeLessThanOrEqual(mode === 'json' ? 2 : 4);
    });

    it('ends the session with DELETE', async () => {
      const from = server.seen.length;
      const { transport } = await connectOurs(server.url);
      const sid = transport.sessionId;
      const sessions = server.sessions();
      await transport.terminateSession();
      const del = server.seen.slice(from).find((s) => s.method === 'DELETE');
      expect(del?.headers['mcp-session-id']).toBe(sid);
      expect(server.sessions()).toBe(sessions - 1);
      expect(transport.sessionId).toBeUndefined();
    });

    it('reports an expired session (404) as an error and closes', async () => {
      const c = await connectOurs(server.url);
      await server.forget();
      const err = await anError(c.client.callTool({ name: 'echo', arguments: { text: 'x' } }));
      expect(err.message).toMatch(/404|Connection closed/);
      expect(c.errors.map((e) => e.message).join('\n')).toMatch(/HTTP 404 .*session has expired.*Session not found/);
      await waitFor(c.closed, (v) => v);
      // A new connection (what the aggregator does on close) works.
      const again = await connectOurs(server.url);
      expect((await again.client.callTool({ name: 'echo', arguments: { text: 'y' } })).content).toEqual([
        { type: 'text', text: 'echo: y' },
      ]);
    });
  });
}

describe('SSE answers carrying more than the response', () => {
  let server: SdkServer;
  beforeAll(async () => {
    server = await sdkServer();
  });
  afterAll(async () => {
    await server?.close();
  });

  it('delivers progress notifications before the result', async () => {
    const { client } = await connectOurs(server.url);
    const seen: Progress[] = [];
    const r = await client.callTool({ name: 'progress', arguments: { steps: 4, ms: 5 } }, undefined, {
      onprogress: (p) => void seen.push(p),
    });
    expect(r.content).toEqual([{ type: 'text', text: 'done 4' }]);
    expect(seen.map((p) => p.progress)).toEqual([1, 2, 3, 4]);
    expect(seen[3]).toMatchObject({ total: 4, message: 'step 4' });
  });

  it('answers server-to-client requests (sampling, elicitation, roots) made during a call', async () => {
    const { client } = await connectOurs(server.url);
    expect((await client.callTool({ name: 'sample', arguments: { prompt: 'hi' } })).content).toEqual([
      { type: 'text', text: 'sampled: model says hi' },
    ]);
    expect((await client.callTool({ name: 'elicit', arguments: { message: 'q?' } })).content).toEqual([
      { type: 'text', text: 'elicited: accept 42' },
    ]);
    expect((await client.callTool({ name: 'roots', arguments: {} })).content).toEqual([
      { type: 'text', text: JSON.stringify([{ uri: 'file:///tmp', name: 'tmp' }]) },
    ]);
  });

  it('runs concurrent calls side by side, server requests among them, and reuses the connections after', async () => {
    const { client } = await connectOurs(server.url);
    const t0 = Date.now();
    const slow = Array.from({ length: 30 }, () => client.callTool({ name: 'slow', arguments: { ms: 300 } }));
    const sampled = Array.from({ length: 30 }, (_, i) =>
      client.callTool({ name: 'sample', arguments: { prompt: `p${i}` } }),
    );
    for (const r of await Promise.all(slow)) expect(r.content).toEqual([{ type: 'text', text: 'slept 300' }]);
    const texts = (await Promise.all(sampled)).map((r) => r.content);
    expect(texts).toEqual(Array.from({ length: 30 }, (_, i) => [{ type: 'text', text: `sampled: model says p${i}` }]));
    // Side by side: thirty 300 ms calls in far less than thirty times 300 ms.
    expect(Date.now() - t0).toBeLessThan(3000);
    const before = server.connections();
    for (let i = 0; i < 20; i++) await client.callTool({ name: 'echo', arguments: { text: 'again' } });
    expect(server.connections()).toBe(before);
  });

  it('cancels: the HTTP request of a call the client gave up on is torn down', async () => {
    const c = await connectOurs(server.url);
    const active = c.transport.activeRequests;
    const err = await mcpError(
      c.client.callTool({ name: 'slow', arguments: { ms: 5000 } }, undefined, { timeout: 150 }),
    );
    expect(err.code).toBe(ErrorCode.RequestTimeout);
    await waitFor(
      () => c.transport.activeRequests,
      (n) => n <= active,
    );
    expect((await c.client.callTool({ name: 'echo', arguments: { text: 'after' } })).content).toEqual([
      { type: 'text', text: 'echo: after' },
    ]);
  });
});

describe('a stream the server cuts before answering (event store, SEP-1699 polling)', () => {
  it('is resumed with Last-Event-ID and the answer arrives', async () => {
    const server = track(await sdkServer({ resumable: true }));
    const { client } = await connectOurs(server.url, { reconnect: { initialMs: 20 } });
    const from = server.seen.length;
    const r = await client.callTool({ name: 'cut', arguments: { ms: 300 } });
    expect(r.content).toEqual([{ type: 'text', text: 'answered after the cut (cut)' }]);
    const resumed = server.seen
      .slice(from)
      .filter((s) => s.method === 'GET' && s.headers['last-event-id'] !== undefined);
    expect(resumed.length).toBeGreaterThanOrEqual(1);
  });
});

describe('https', () => {
  it('works against a server with a certificate from a given CA', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mcpgw-tls-'));
    try {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-keyout',
          join(dir, 'key.pem'),
          '-out',
          join(dir, 'cert.pem'),
          '-days',
          '1',
          '-subj',
          '/CN=127.0.0.1',
          '-addext',
          'subjectAltName=IP:127.0.0.1',
        ],
        { stdio: 'ignore' },
      );
      const key = readFileSync(join(dir, 'key.pem'), 'utf8');
      const cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
      const server = track(await sdkServer({ tls: { key, cert } }));
      const { client } = await connectOurs(server.url, { ca: cert });
      for (let i = 0; i < 5; i++) {
        expect((await client.callTool({ name: 'echo', arguments: { text: `tls ${i}` } })).content).toEqual([
          { type: 'text', text: `echo: tls ${i}` },
        ]);
      }
      expect(server.connections()).toBeLessThanOrEqual(3);
      // Without the CA the certificate is refused.
      const untrusted = new HttpClientTransport(new URL(server.url));
      const err = await anError(newClient().connect(untrusted, { timeout: 2000 }));
      expect(err.message).toMatch(/self[- ]signed|certificate/i);
      await untrusted.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a server process that dies', () => {
  let child: ChildProcess | null = null;
  afterEach(() => {
    child?.kill('SIGKILL');
    child = null;
  });

  async function spawnFixture(port = 0): Promise<number> {
    const p = spawn(process.execPath, [FIXTURE_SERVER, 'http', String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
    child = p;
    return await new Promise<number>((resolve, reject) => {
      let out = '';
      p.stdout?.on('data', (c: Buffer) => {
        out += c.toString();
        const m = /PORT=(\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      p.once('exit', (code) => reject(new Error(`fixture exited with ${code}`)));
    });
  }

  it('fails calls with an error, closes the transport, and a new connection works once it is back', async () => {
    const port = await spawnFixture();
    const url = `http://127.0.0.1:${port}/mcp`;
    const c = await connectOurs(url, { reconnect: { initialMs: 50, maxRetries: 2 } });
    expect((await c.client.callTool({ name: 'echo', arguments: { text: 'a' } })).content).toEqual([
      { type: 'text', text: 'echo: a' },
    ]);
    // Wait for the server-push stream, whose loss is how the transport notices the death.
    await sleep(100);
    const dead = child;
    child = null;
    dead?.kill('SIGKILL');
    await new Promise((r) => dead?.once('exit', r));
    const err = await anError(c.client.callTool({ name: 'echo', arguments: { text: 'b' } }));
    // Refused, or reset when the POST went out on a pooled connection before its close was seen.
    expect(err.message).toMatch(/ECONNREFUSED|socket hang up|ECONNRESET|Connection closed/);
    await waitFor(c.closed, (v) => v, 5000);
    expect(c.errors.map((e) => e.message).join('\n')).toMatch(/event stream was lost and could not be reopened/);
    await spawnFixture(port);
    const again = await connectOurs(url);
    expect((await again.client.callTool({ name: 'echo', arguments: { text: 'c' } })).content).toEqual([
      { type: 'text', text: 'echo: c' },
    ]);
  });
});

describe('servers that misbehave', () => {
  it('a server that never answers a call: the client times out and the socket is released', async () => {
    const server = track(await rawServer(() => undefined));
    const c = await connectOurs(server.url);
    const t0 = Date.now();
    const err = await mcpError(c.client.callTool({ name: 'x', arguments: {} }, undefined, { timeout: 200 }));
    expect(err.code).toBe(ErrorCode.RequestTimeout);
    expect(Date.now() - t0).toBeLessThan(2000);
    // The cancellation went out (202) and the hung request's connection was closed by us.
    await waitFor(
      () => c.transport.activeRequests,
      (n) => n === 0,
    );
    await waitFor(
      () => server.sockets.size,
      (n) => n <= 1,
    );
  });

  it('a server that never answers initialize: connect times out, every socket is closed', async () => {
    const server = track(await rawServer(() => undefined, { initialize: 'hang' }));
    const transport = new HttpClientTransport(new URL(server.url), { ackTimeoutMs: 300 });
    const client = newClient();
    const err = await anError(client.connect(transport, { timeout: 200 }));
    expect(err.message).toMatch(/timed out/i);
    // The SDK Client closes the transport when connect fails.
    await waitFor(
      () => transport.activeRequests,
      (n) => n === 0,
    );
    await waitFor(
      () => server.sockets.size,
      (n) => n === 0,
    );
  });

  it('a notification the server never acknowledges fails after ackTimeoutMs', async () => {
    let received = 0;
    const hung = http.createServer(() => void received++);
    await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r));
    track({
      close: () =>
        new Promise<void>((r) => {
          hung.closeAllConnections();
          hung.close(() => r());
        }),
    });
    const transport = track(
      new HttpClientTransport(new URL(`http://127.0.0.1:${(hung.address() as AddressInfo).port}/mcp`), {
        ackTimeoutMs: 150,
      }),
    );
    await transport.start();
    const t0 = Date.now();
    const err = await anError(transport.send({ jsonrpc: '2.0', method: 'notifications/initialized' }));
    expect(err.message).toMatch(/no answer within 150 ms/);
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(received).toBe(1);
    await waitFor(
      () => transport.activeRequests,
      (n) => n === 0,
    );
  });

  const broken: Array<[string, (msg: RawMessage, res: ServerResponse) => void, RegExp, number]> = [
    [
      'invalid JSON',
      (_m, res) => void res.writeHead(200, { 'content-type': 'application/json' }).end('{"jsonrpc": "2.0", '),
      /not valid JSON \(19 bytes\)/,
      ErrorCode.InternalError,
    ],
    [
      'JSON that is not JSON-RPC',
      (_m, res) => void res.writeHead(200, { 'content-type': 'application/json' }).end('[1, 2]'),
      /not a JSON-RPC message/,
      ErrorCode.InternalError,
    ],
    [
      'a JSON body without the response',
      (_m, res) =>
        void res
          .writeHead(200, { 'content-type': 'application/json' })
          .end('{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}'),
      /does not contain the response/,
      ErrorCode.InternalError,
    ],
    [
      'an SSE event that is not JSON',
      (_m, res) => void res.writeHead(200, { 'content-type': 'text/event-stream' }).end('data: {not json\n\n'),
      /event that is not a JSON-RPC message/,
      ErrorCode.InternalError,
    ],
    [
      'a JSON body over the limit (declared)',
      (m, res) =>
        void res.writeHead(200, { 'content-type': 'application/json' }).end(rpcResult(m.id, 'y'.repeat(5000))),
      /exceeds the limit of 4096 bytes/,
      ErrorCode.InternalError,
    ],
    [
      'a chunked JSON body over the limit',
      (m, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        const body = rpcResult(m.id, 'y'.repeat(5000));
        res.write(body.slice(0, 3000));
        setTimeout(() => res.end(body.slice(3000)), 10);
      },
      /exceeds the limit of 4096 bytes/,
      ErrorCode.InternalError,
    ],
    [
      'an SSE event over the limit',
      (m, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`data: ${rpcResult(m.id, 'z'.repeat(2000))}\n`);
        setTimeout(() => res.write(`data: ${'z'.repeat(3000)}\n\n`), 10);
      },
      /exceeds the limit of 4096 bytes/,
      ErrorCode.InternalError,
    ],
    [
      'an SSE stream that ends without the response',
      (_m, res) => void res.writeHead(200, { 'content-type': 'text/event-stream' }).end(': just a comment\n\n'),
      /ended the stream without answering/,
      ErrorCode.ConnectionClosed,
    ],
    [
      'a connection cut in the middle of the answer',
      (_m, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {"jsonrpc":');
        setTimeout(() => res.socket?.destroy(), 10);
      },
      /connection to the server was lost before it answered/,
      ErrorCode.ConnectionClosed,
    ],
  ];

  for (const [what, answer, message, code] of broken) {
    it(`${what}: the call fails at once with a clear error`, async () => {
      const server = track(await rawServer(answer));
      const c = await connectOurs(server.url, { maxMessageBytes: 4096 });
      const t0 = Date.now();
      const err = await mcpError(c.client.callTool({ name: 'x', arguments: {} }, undefined, { timeout: 5000 }));
      expect(Date.now() - t0).toBeLessThan(1000);
      expect(err.code).toBe(code);
      expect(err.message).toMatch(message);
      expect(c.errors.map((e) => e.message).join('\n')).toMatch(message);
      // The transport is still usable: a broken answer is that request's failure only.
      expect(c.closed()).toBe(false);
    });
  }

  it('a well-formed SSE answer with CRLF lines, comments, ids and a split multi-byte character', async () => {
    const server = track(
      await rawServer((m, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
        const body = Buffer.from(`: hello\r\nid: 1\r\nevent: message\r\ndata: ${rpcResult(m.id, 'é🌍')}\r\n\r\n`);
        const cut = body.indexOf(Buffer.from('🌍')) + 2;
        res.write(body.subarray(0, cut));
        setTimeout(() => res.end(body.subarray(cut)), 10);
      }),
    );
    const { client } = await connectOurs(server.url);
    const tokens: string[] = [];
    const r = await client.callTool({ name: 'x', arguments: {} }, undefined, {
      onresumptiontoken: (t) => void tokens.push(t),
    });
    expect(r.content).toEqual([{ type: 'text', text: 'é🌍' }]);
    expect(tokens).toEqual(['1']);
  });

  it('a push stream the server ends is reopened, from the last event id', async () => {
    const lastIds: Array<string | undefined> = [];
    const server = track(
      await rawServer(() => undefined, {
        get: (req, res, n) => {
          const lastId = req.headers['last-event-id'];
          lastIds.push(typeof lastId === 'string' ? lastId : undefined);
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          const note = { jsonrpc: '2.0', method: 'notifications/tools/list_changed' };
          if (n <= 2) res.end(`id: e${n}\ndata: ${JSON.stringify(note)}\n\n`);
        },
      }),
    );
    const c = await connectOurs(server.url, { reconnect: { initialMs: 20 } });
    let changed = 0;
    c.client.setNotificationHandler(ToolListChangedNotificationSchema, () => void changed++);
    await waitFor(
      () => changed,
      (n) => n === 2,
    );
    await waitFor(
      () => lastIds.length,
      (n) => n === 3,
    );
    expect(lastIds).toEqual([undefined, 'e1', 'e2']);
    expect(c.closed()).toBe(false);
  });

  it('a push stream the server ends at once, every time, is reopened ever more slowly', async () => {
    let gets = 0;
    const server = track(
      await rawServer(() => undefined, {
        get: (_req, res) => {
          gets++;
          res.writeHead(200, { 'content-type': 'text/event-stream' }).end();
        },
      }),
    );
    const c = await connectOurs(server.url, { reconnect: { initialMs: 20, factor: 2, maxMs: 10_000 } });
    await sleep(700);
    // 20, 40, 80, 160, 320 ms: six opens at most in 700 ms, where a fixed delay would make 35.
    expect(gets).toBeGreaterThanOrEqual(4);
    expect(gets).toBeLessThanOrEqual(6);
    expect(c.closed()).toBe(false);
  });

  it('a redirect is not followed', async () => {
    let followed = 0;
    const target = http.createServer((_req, res) => {
      followed++;
      res.writeHead(500).end();
    });
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
    track({ close: () => new Promise<void>((r) => target.close(() => r())) });
    const server = track(
      await rawServer((_m, res) => {
        res.writeHead(307, { location: `http://127.0.0.1:${(target.address() as AddressInfo).port}/mcp` }).end();
      }),
    );
    const c = await connectOurs(server.url);
    const err = await anError(c.client.callTool({ name: 'x', arguments: {} }));
    expect(err.message).toMatch(/HTTP 307 .*redirects are not followed/);
    expect(followed).toBe(0);
  });

  it('an answer of an unexpected content-type is an error', async () => {
    const server = track(
      await rawServer((_m, res) => void res.writeHead(200, { 'content-type': 'text/html' }).end('<p>')),
    );
    const c = await connectOurs(server.url);
    const err = await anError(c.client.callTool({ name: 'x', arguments: {} }));
    expect(err.message).toMatch(/unexpected content-type: text\/html/);
  });

  it('an error status carries the JSON-RPC message of its body, bounded', async () => {
    const server = track(
      await rawServer((m, res) => {
        res
          .writeHead(500, { 'content-type': 'application/json' })
          .end(JSON.stringify({ jsonrpc: '2.0', id: m.id, error: { code: -32603, message: 'boom\nnext' } }));
      }),
    );
    const c = await connectOurs(server.url);
    const err = await anError(c.client.callTool({ name: 'x', arguments: {} }));
    expect(err.message).toBe('HTTP 500 from the server on POST: boom next');
  });
});

describe('configuration', () => {
  it('rejects a URL with credentials, another scheme, and an invalid header without echoing its value', () => {
    expect(() => new HttpClientTransport(new URL('http://u:p@127.0.0.1/mcp'))).toThrow(/must not contain credentials/);
    expect(() => new HttpClientTransport(new URL('ftp://127.0.0.1/mcp'))).toThrow(/unsupported URL scheme/);
    let message = '';
    try {
      new HttpClientTransport(new URL('http://127.0.0.1/mcp'), { headers: { Authorization: 'Bearer top\nsecret' } });
    } catch (e) {
      message = e instanceof Error ? e.message : '';
    }
    expect(message).toBe('invalid HTTP header "Authorization"');
  });

  it('refuses to send before start and after close, and closes once', async () => {
    const t = new HttpClientTransport(new URL('http://127.0.0.1:1/mcp'));
    let closes = 0;
    t.onclose = () => void closes++;
    await expect(t.send({ jsonrpc: '2.0', method: 'ping', id: 1 })).rejects.toThrow(/not started/);
    await t.start();
    await t.close();
    await t.close();
    expect(closes).toBe(1);
    await expect(t.send({ jsonrpc: '2.0', method: 'ping', id: 2 })).rejects.toThrow(/closed/);
  });
});
