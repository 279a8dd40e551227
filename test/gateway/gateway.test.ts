/**
 * The gateway with real backends (the fixture server over stdio and Streamable HTTP) and the
 * official SDK client. Requests carry what authz adds to an allowed request (helpers.authzFetch);
 * the Envoy suite runs the same client through the real front and authz.
 */
import { randomUUID } from 'node:crypto';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  McpError,
  ResourceUpdatedNotificationSchema,
  ToolListChangedNotificationSchema,
  type Progress,
} from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type GatewayServer } from '../../src/gateway/index.js';
import { requestMac } from '../../src/identity/request-mac.js';
import { verifyServerRequestId, verifySessionId } from '../../src/identity/session.js';
import { startHttpFixture } from '../fixtures/backends/fixture-server.mjs';
import {
  authzFetch,
  connect,
  FIXTURE_SERVER,
  identities,
  quietLogger,
  testKeys,
  testPolicy,
  textOf,
  waitFor,
  type TestKeys,
} from './helpers.js';

const policyText = (webPort: number, extra = '') => `version: "1.0"
services:
  fx: {transport: stdio, command: node, args: [${JSON.stringify(FIXTURE_SERVER)}, stdio], env: {FX_MODE: demo}, secrets: [FX_TOKEN]}
  iso: {transport: stdio, command: node, args: [${JSON.stringify(FIXTURE_SERVER)}, stdio], isolation: per-user}
  web: {transport: http, url: "http://127.0.0.1:${webPort}/mcp"}
tool_overrides:
  fx:
    envnames: {labels: [data:env]}
classifiers:
  fx:
    add: [{field: a, greater_than: 100, set_labels: [risk:big]}]
policies:
${extra}  - {name: no env, when: {labels: ["data:env"]}, action: deny, priority: 5}
  - {name: no big sums, when: {labels: ["risk:big"]}, action: deny, priority: 6}
  - {name: allow rest, when: {}, action: allow, priority: 100}
`;

let keys: TestKeys;
let gw: GatewayServer;
let web: Awaited<ReturnType<typeof startHttpFixture>>;
let policy: Awaited<ReturnType<typeof testPolicy>>;
let url: string;
let cancelled = 0;
const opened: Client[] = [];

beforeAll(async () => {
  keys = await testKeys();
  web = await startHttpFixture({ onCancel: () => cancelled++ });
  policy = await testPolicy(policyText(web.port));
  process.env['MCPGW_LEAK_CHECK'] = 'must-not-reach-children';
  gw = await startGateway({
    port: 0,
    policy: policy.get,
    identities: identities([
      { id: 'alice', role: 'agent', grants: { fx: ['*'], web: ['*'], iso: ['*'] } },
      { id: 'bob', role: 'agent', grants: { fx: ['echo'] } },
      { id: 'dave', role: 'agent', grants: { fx: ['*'], iso: ['*'] } },
      { id: 'carol', role: 'agent', grants: {} },
    ]),
    keys,
    logger: quietLogger(),
    envFor: async (service): Promise<Record<string, string>> =>
      service === 'fx' ? { FX_TOKEN: 'fx-secret-1234', NOT_LISTED: 'nope' } : {},
    policyPollMs: 100,
  });
  url = `http://127.0.0.1:${gw.port}/mcp`;
});

afterAll(async () => {
  delete process.env['MCPGW_LEAK_CHECK'];
  await Promise.all(opened.map((c) => c.close().catch(() => undefined)));
  await gw?.close();
  await web?.close();
});

const AGENT_CAPS = { sampling: {}, elicitation: {}, roots: { listChanged: true } };

async function agent(user: string, caps = AGENT_CAPS) {
  const c = await connect(url, authzFetch(keys, user), caps);
  opened.push(c.client);
  return c;
}

const names = async (client: Client) => (await client.listTools()).tools.map((t) => t.name);

describe('sessions and lists', () => {
  it('initialize merges the backends capabilities and mints a session bound to the user', async () => {
    const { client, transport } = await agent('alice');
    const caps = client.getServerCapabilities();
    expect(caps?.tools?.listChanged).toBe(true);
    expect(caps?.resources).toEqual({ subscribe: true, listChanged: true });
    expect(caps?.prompts).toBeDefined();
    expect(caps?.logging).toBeDefined();
    expect(caps?.completions).toBeDefined();
    expect(client.getServerVersion()?.name).toBe('mcpgw');
    expect(client.getInstructions()).toContain('## fx\nInstructions of fixture.');
    const sid = transport.sessionId ?? '';
    expect(verifySessionId(keys.sessionKey, sid, 'alice')).toBe(true);
    expect(verifySessionId(keys.sessionKey, sid, 'bob')).toBe(false);
  });

  it('tools/list is per user: grants, and Layer 1 denials that hold for every argument', async () => {
    const alice = await names((await agent('alice')).client);
    expect(alice).toEqual(expect.arrayContaining(['fx__echo', 'fx__add', 'iso__echo', 'web__echo', 'web__sample']));
    expect(alice).not.toContain('fx__envnames');
    expect(await names((await agent('bob')).client)).toEqual(['fx__echo']);
    expect(await names((await agent('carol')).client)).toEqual([]);
  });

  it('tools/call is routed to stdio and HTTP backends; unknown names are refused', async () => {
    const { client } = await agent('alice');
    expect(textOf(await client.callTool({ name: 'fx__echo', arguments: { text: 'a' } }))).toBe('echo: a');
    expect(textOf(await client.callTool({ name: 'web__echo', arguments: { text: 'b' } }))).toBe('echo: b');
    expect(textOf(await client.callTool({ name: 'iso__add', arguments: { a: 2, b: 3 } }))).toBe('5');
    for (const name of ['nope__echo', `fx__${'x'.repeat(61)}`, 'fx__bad name']) {
      const err = await client.callTool({ name, arguments: {} }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(McpError);
      expect((err as McpError).code).toBe(-32602);
    }
  });
});

describe('backends', () => {
  it('a stdio child gets PATH, HOME, LANG, its env and only its own listed secrets', async () => {
    const { client } = await agent('alice');
    const got = textOf(await client.callTool({ name: 'fx__envnames', arguments: {} })).split(',');
    const inherited = ['HOME', 'LANG', 'PATH'].filter((n) => process.env[n] !== undefined);
    expect(got.sort()).toEqual([...inherited, 'FX_MODE', 'FX_TOKEN'].sort());
    expect(textOf(await client.callTool({ name: 'fx__env', arguments: { name: 'FX_TOKEN' } }))).toBe('fx-secret-1234');
    // iso is another service: fx's secrets never reach it.
    expect(textOf(await client.callTool({ name: 'iso__env', arguments: { name: 'FX_TOKEN' } }))).toBe('(unset)');
  });

  it('one shared child for all users; per-user children per user, shared by that user sessions', async () => {
    const a1 = (await agent('alice')).client;
    const a2 = (await agent('alice')).client;
    const d = (await agent('dave')).client;
    const pid = async (c: Client, name: string) => textOf(await c.callTool({ name, arguments: {} }));
    expect(await pid(a1, 'fx__pid')).toBe(await pid(d, 'fx__pid'));
    expect(await pid(a1, 'iso__pid')).toBe(await pid(a2, 'iso__pid'));
    expect(await pid(a1, 'iso__pid')).not.toBe(await pid(d, 'iso__pid'));
  });
});

describe('relaying', () => {
  it('progress reaches the agent under its own token, from stdio and HTTP backends', async () => {
    const { client } = await agent('alice');
    for (const name of ['fx__progress', 'web__progress']) {
      const seen: Progress[] = [];
      const r = await client.callTool({ name, arguments: { steps: 3, ms: 20 } }, undefined, {
        onprogress: (p) => seen.push(p),
      });
      expect(textOf(r)).toBe('done 3');
      expect(seen.map((p) => [p.progress, p.total, p.message])).toEqual([
        [1, 3, 'step 1'],
        [2, 3, 'step 2'],
        [3, 3, 'step 3'],
      ]);
    }
  });

  it('a cancelled call is cancelled on the backend', async () => {
    const { client } = await agent('alice');
    const before = cancelled;
    const ac = new AbortController();
    const call = client.callTool({ name: 'web__slow', arguments: { ms: 5000 } }, undefined, { signal: ac.signal });
    setTimeout(() => ac.abort('changed my mind'), 200);
    await expect(call).rejects.toThrow();
    await waitFor(
      () => cancelled,
      (n) => n === before + 1,
    );
  });

  it('sampling, elicitation and roots requests reach the session that caused them, under ids authz admits', async () => {
    const { client, transport } = await agent('alice');
    const ids: (string | number)[] = [];
    client.setRequestHandler(CreateMessageRequestSchema, async (_req, extra) => {
      ids.push(extra.requestId);
      return { model: 'test-model', role: 'assistant', content: { type: 'text', text: 'model says hi' } };
    });
    client.setRequestHandler(ElicitRequestSchema, async (_req, extra) => {
      ids.push(extra.requestId);
      return { action: 'accept', content: { answer: '42' } };
    });
    client.setRequestHandler(ListRootsRequestSchema, async (_req, extra) => {
      ids.push(extra.requestId);
      return { roots: [{ uri: 'file:///tmp/work', name: 'work' }] };
    });
    expect(textOf(await client.callTool({ name: 'web__sample', arguments: { prompt: 'p' } }))).toBe(
      'sampled: model says hi',
    );
    expect(textOf(await client.callTool({ name: 'web__elicit', arguments: { message: 'q?' } }))).toBe(
      'elicited: accept 42',
    );
    expect(textOf(await client.callTool({ name: 'web__roots', arguments: {} }))).toContain('file:///tmp/work');
    // A per-user child may ask too: it serves only this user.
    expect(textOf(await client.callTool({ name: 'iso__sample', arguments: { prompt: 'p' } }))).toBe(
      'sampled: model says hi',
    );
    expect(ids).toHaveLength(4);
    for (const id of ids) expect(verifyServerRequestId(keys.sessionKey, transport.sessionId ?? '', id)).toBe(true);
  });

  it('a child shared by several users cannot send requests to anyone', async () => {
    const { client } = await agent('alice');
    client.setRequestHandler(CreateMessageRequestSchema, async () => {
      throw new Error('must not be asked');
    });
    const r = await client.callTool({ name: 'fx__sample', arguments: { prompt: 'p' } });
    expect(r.isError).toBe(true);
    expect(textOf(r)).toMatch(/shared by several users/);
  });

  it('list_changed is relayed to every session of the backend', async () => {
    const { client } = await agent('alice');
    const other = (await agent('dave')).client;
    let changed = 0;
    let otherChanged = 0;
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => void changed++);
    other.setNotificationHandler(ToolListChangedNotificationSchema, () => void otherChanged++);
    await client.callTool({ name: 'web__add_tool', arguments: { name: 'fresh' } });
    await waitFor(
      () => changed,
      (n) => n >= 1,
    );
    expect(await names(client)).toContain('web__fresh');
    expect(textOf(await client.callTool({ name: 'web__fresh', arguments: {} }))).toBe('I am fresh');
    // The shared child's change reaches both users.
    await client.callTool({ name: 'fx__add_tool', arguments: { name: 'shared_new' } });
    await waitFor(
      () => otherChanged,
      (n) => n >= 1,
    );
    expect(await names(other)).toContain('fx__shared_new');
  });

  it('log messages of a dedicated backend reach its session; those of a shared child reach nobody', async () => {
    const { client } = await agent('alice');
    const logs: unknown[] = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void logs.push(n.params.data));
    await client.callTool({ name: 'web__log', arguments: { text: 'from web' } });
    await client.callTool({ name: 'fx__log', arguments: { text: 'from fx' } });
    await waitFor(
      () => logs,
      (l) => l.includes('from web'),
    );
    await new Promise((r) => setTimeout(r, 200));
    expect(logs).not.toContain('from fx');
  });
});

describe('resources and prompts', () => {
  it('resources, templates, subscriptions and links live under mcpgw://<service>/', async () => {
    const { client } = await agent('alice');
    const hello = 'mcpgw://fx/fixture%3A%2F%2Fstatic%2Fhello';
    const list = await client.listResources();
    expect(list.resources.map((r) => r.uri)).toEqual(
      expect.arrayContaining([hello, 'mcpgw://web/fixture%3A%2F%2Fstatic%2Fhello']),
    );
    const read = await client.readResource({ uri: hello });
    expect(read.contents).toEqual([{ uri: hello, mimeType: 'text/plain', text: 'hello world' }]);
    const templates = await client.listResourceTemplates();
    expect(templates.resourceTemplates.map((t) => t.uriTemplate)).toContain('mcpgw://fx/fixture%3A%2F%2Fitems%2F{id}');
    const item = await client.readResource({ uri: 'mcpgw://fx/fixture%3A%2F%2Fitems%2F42' });
    expect(item.contents[0]).toMatchObject({ text: 'item 42' });
    const links = await client.callTool({ name: 'fx__link', arguments: {} });
    expect(links.content).toEqual([
      { type: 'resource_link', uri: hello, name: 'hello', mimeType: 'text/plain' },
      {
        type: 'resource',
        resource: { uri: 'mcpgw://fx/fixture%3A%2F%2Fitems%2F7', mimeType: 'text/plain', text: 'item 7' },
      },
      { type: 'text', text: 'two links' },
    ]);
    const updated: string[] = [];
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void updated.push(n.params.uri));
    for (const svc of ['web', 'fx']) {
      await client.subscribeResource({ uri: `mcpgw://${svc}/fixture%3A%2F%2Fstatic%2Fhello` });
      expect(
        textOf(await client.callTool({ name: `${svc}__touch`, arguments: { uri: 'fixture://static/hello' } })),
      ).toBe('notified');
    }
    await waitFor(
      () => updated,
      (u) => u.length === 2,
    );
    expect(updated.sort()).toEqual([hello, 'mcpgw://web/fixture%3A%2F%2Fstatic%2Fhello']);
    await client.unsubscribeResource({ uri: hello });
    expect(textOf(await client.callTool({ name: 'fx__touch', arguments: { uri: 'fixture://static/hello' } }))).toBe(
      'not subscribed',
    );
  });

  it('prompts are <service>__<name>; completion refs are translated', async () => {
    const { client } = await agent('alice');
    expect((await client.listPrompts()).prompts.map((p) => p.name)).toEqual(
      expect.arrayContaining(['fx__greet', 'web__greet']),
    );
    const p = await client.getPrompt({ name: 'fx__greet', arguments: { name: 'Ann' } });
    expect(p.messages[0]?.content).toEqual({ type: 'text', text: 'Hello Ann' });
    expect(p.messages[1]?.content).toMatchObject({
      type: 'resource_link',
      uri: 'mcpgw://fx/fixture%3A%2F%2Fstatic%2Fhello',
    });
    const c = await client.complete({
      ref: { type: 'ref/resource', uri: 'mcpgw://fx/fixture%3A%2F%2Fitems%2F{id}' },
      argument: { name: 'id', value: '4' },
    });
    expect(c.completion.values).toEqual(['42']);
  });
});

describe('HTTP transport', () => {
  /** A request signed like authz signs it (or not, with `unsigned`). */
  async function raw(
    method: string,
    opts: { user?: string; sid?: string; body?: string; headers?: Record<string, string>; unsigned?: boolean } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(opts.sid ? { 'mcp-session-id': opts.sid } : {}),
      ...opts.headers,
    };
    const init: RequestInit = { method, headers, ...(opts.body !== undefined ? { body: opts.body } : {}) };
    return opts.unsigned ? fetch(url, init) : authzFetch(keys, opts.user ?? 'alice')(url, init);
  }
  const init = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
  });
  const list = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' });

  async function rawSession(user = 'alice'): Promise<string> {
    const r = await raw('POST', { user, body: init });
    expect(r.status).toBe(200);
    const body = (await r.json()) as { result: { protocolVersion: string } };
    expect(body.result.protocolVersion).toBe('2025-06-18');
    return r.headers.get('mcp-session-id') ?? '';
  }

  it('GET opens the session stream (one per session); DELETE ends the session and its backend sessions', async () => {
    const sid = await rawSession();
    const ac = new AbortController();
    const stream = await raw('GET', { sid, headers: { accept: 'text/event-stream' } }).then((r) => r);
    expect(stream.status).toBe(200);
    expect(stream.headers.get('content-type')).toBe('text/event-stream');
    expect((await raw('GET', { sid, headers: { accept: 'text/event-stream' } })).status).toBe(409);
    expect((await raw('GET', { sid, headers: { accept: 'application/json' } })).status).toBe(406);
    ac.abort();
    await stream.body?.cancel();
    const backendSessions = web.sessions();
    expect((await raw('DELETE', { sid })).status).toBe(204);
    await waitFor(
      () => web.sessions(),
      (n) => n === backendSessions - 1,
    );
    const after = await raw('POST', { sid, body: list });
    expect(after.status).toBe(404);
    expect(await after.json()).toMatchObject({ error: { code: -32600 } });
  });

  it('the GET stream carries notifications not tied to a request', async () => {
    const sid = await rawSession();
    const stream = await raw('GET', { sid, headers: { accept: 'text/event-stream' } });
    const reader = stream.body?.getReader();
    const call = JSON.stringify({
      jsonrpc: '2.0',
      id: 3,
      method: 'tools/call',
      params: { name: 'web__log', arguments: { text: 'on the stream' } },
    });
    expect((await raw('POST', { sid, body: call })).status).toBe(200);
    let text = '';
    while (reader && !text.includes('on the stream')) {
      const chunk = await reader.read();
      if (chunk.done) break;
      text += Buffer.from(chunk.value).toString();
    }
    expect(text).toContain('"method":"notifications/message"');
    await reader?.cancel();
    await raw('DELETE', { sid });
  });

  it('refuses with 401 anything authz did not vouch for: no token, x-mcpgw-user alone, another body, a replay', async () => {
    const noToken = await raw('POST', { unsigned: true, body: init });
    expect(noToken.status).toBe(401);
    expect(await noToken.json()).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32001 } });
    expect((await raw('POST', { unsigned: true, body: init, headers: { 'x-mcpgw-user': 'alice' } })).status).toBe(401);

    const decisionId = randomUUID();
    const token = await keys.issuer.mint({ sub: 'alice', role: 'agent' });
    const signed = {
      authorization: `Bearer ${token}`,
      'x-mcpgw-decision-id': decisionId,
      'x-mcpgw-request-mac': requestMac(keys.requestMacKey, decisionId, Buffer.from(init)),
    };
    const swapped = init.replace('"raw"', '"evil"');
    expect((await raw('POST', { unsigned: true, body: swapped, headers: signed })).status).toBe(401);
    expect((await raw('POST', { unsigned: true, body: init, headers: signed })).status).toBe(200);
    expect((await raw('POST', { unsigned: true, body: init, headers: signed })).status).toBe(401);
  });

  it('a session id works only for the user it was minted for', async () => {
    const sid = await rawSession('alice');
    expect((await raw('POST', { user: 'bob', sid, body: list })).status).toBe(404);
    expect((await raw('POST', { user: 'alice', sid, body: list })).status).toBe(200);
  });

  it('checks MCP-Protocol-Version, Origin, Content-Type and the body as strictly as authz', async () => {
    const sid = await rawSession();
    expect((await raw('POST', { sid, body: list, headers: { 'mcp-protocol-version': '1999-01-01' } })).status).toBe(
      400,
    );
    expect((await raw('POST', { sid, body: list, headers: { 'mcp-protocol-version': '2025-06-18' } })).status).toBe(
      200,
    );
    expect((await raw('POST', { sid, body: list, headers: { origin: 'https://evil.example' } })).status).toBe(403);
    expect((await raw('POST', { sid, body: list, headers: { origin: 'http://localhost:8000' } })).status).toBe(200);
    expect((await raw('POST', { sid, body: list, headers: { 'content-type': 'text/plain' } })).status).toBe(415);
    expect((await raw('POST', { sid, body: init })).status).toBe(400);
    const dup = await raw('POST', { sid, body: '{"jsonrpc":"2.0","id":9,"id":10,"method":"tools/list"}' });
    expect(dup.status).toBe(400);
    expect(await dup.json()).toMatchObject({ error: { code: -32700 } });
    expect((await raw('POST', { body: list })).status).toBe(400);
    const ping = await raw('POST', { body: '{"jsonrpc":"2.0","id":"p","method":"ping"}' });
    expect(await ping.json()).toEqual({ jsonrpc: '2.0', id: 'p', result: {} });
    expect((await raw('PUT', { sid, body: list })).status).toBe(405);
  });

  it('serves /healthz and the JWKS without credentials; /admin/v1 only through authz', async () => {
    const base = `http://127.0.0.1:${gw.port}`;
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'ok' });
    const jwks = (await (await fetch(`${base}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
    expect(jwks.keys.map((k) => k.kid)).toEqual((await keys.keyRing.verificationKeys()).map((k) => k.kid));
    expect((await fetch(`${base}/admin/v1/status`)).status).toBe(401);
    const fromPage = await authzFetch(
      keys,
      'owner',
      'admin',
    )(`${base}/admin/v1/status`, {
      headers: { origin: 'https://evil.example' },
    });
    expect(fromPage.status).toBe(403);
    expect((await authzFetch(keys, 'owner', 'admin')(`${base}/admin/v1/status`)).status).toBe(404);
    gw.setAdminHandler((_req, res, caller) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ user: caller.userId, role: caller.role }));
    });
    const ok = await authzFetch(keys, 'owner', 'admin')(`${base}/admin/v1/status`);
    expect(await ok.json()).toEqual({ user: 'owner', role: 'admin' });
    gw.setAdminHandler(null);
    expect((await fetch(`${base}/metrics`)).status).toBe(404);
  });
});

describe('policy changes', () => {
  it('a new revision sends list_changed, and the lists follow the new rules', async () => {
    const { client } = await agent('alice');
    let changed = 0;
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => void changed++);
    expect(await names(client)).not.toContain('fx__envnames');
    await policy.apply(
      policyText(web.port, '  - {name: env is fine now, when: {labels: ["data:env"]}, action: allow, priority: 1}\n'),
    );
    await waitFor(
      () => changed,
      (n) => n >= 1,
    );
    expect(await names(client)).toContain('fx__envnames');
  });
});
