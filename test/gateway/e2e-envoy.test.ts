/**
 * The whole path: the official SDK client → real Envoy → real mcpgw authz (policy Wasm, API keys,
 * internal JWT, request MAC) → the gateway → real MCP servers (the fixture over stdio and
 * Streamable HTTP).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, type Progress } from '@modelcontextprotocol/sdk/types.js';
import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { gatewayPolicyFrom } from '../../src/aggregator/index.js';
import { startAuthzServer, type AuthzServer } from '../../src/authz/server.js';
import { startGateway, type GatewayServer } from '../../src/gateway/index.js';
import { createLogger } from '../../src/log.js';
import { loadPolicyText } from '../../src/policy/load.js';
import { startEnvoy, type RunningEnvoy } from '../envoy/harness.js';
import { startHttpFixture } from '../fixtures/backends/fixture-server.mjs';
import { createAuthzFixture, type AuthzFixture } from '../helpers/authz-fixture.js';
import { describeWith, findExecutable } from '../helpers/components.js';
import { FIXTURE_SERVER, quietLogger, textOf, waitFor } from './helpers.js';

describeWith(['envoy'], 'SDK client → real Envoy → real authz → gateway → MCP servers', () => {
  let dir: string;
  let fx: AuthzFixture;
  let authz: AuthzServer;
  let gw: GatewayServer;
  let envoy: RunningEnvoy;
  let web: Awaited<ReturnType<typeof startHttpFixture>>;
  const clients: Client[] = [];

  beforeAll(async () => {
    web = await startHttpFixture();
    dir = await mkdtemp(join(tmpdir(), 'mcpgw-e2e-'));
    // The authz fixture's users: alice holds gmail and docs, dave docs only, bob nothing.
    const text = `version: "1.0"
services:
  gmail: {transport: stdio, command: node, args: [${JSON.stringify(FIXTURE_SERVER)}, stdio]}
  docs: {transport: http, url: "http://127.0.0.1:${web.port}/mcp"}
tool_overrides:
  gmail:
    envnames: {labels: ["data:env"]}
classifiers:
  docs:
    echo: [{field: text, contains: secret, set_labels: ["data:secret"]}]
policies:
  - {name: no secrets, when: {labels: ["data:secret"]}, action: deny, priority: 1}
  - {name: no env dumps, when: {labels: ["data:env"]}, action: deny, priority: 2}
  - {name: allow the rest, when: {}, action: allow, priority: 100}
`;
    const policyFile = join(dir, 'policy.yaml');
    await writeFile(policyFile, text);
    fx = await createAuthzFixture({ policyFile });
    const loaded = loadPolicyText(text, policyFile);
    if (!loaded.ok) throw new Error('policy');
    const services = loaded.policy.services;
    authz = await startAuthzServer({
      address: '127.0.0.1:0',
      check: (v) => fx.runtime.check(v),
      logger: createLogger({ destination: pino.destination({ dest: '/dev/null', sync: true }) }),
    });
    gw = await startGateway({
      port: 0,
      policy: gatewayPolicyFrom(fx.runtime.policy, () => services),
      identities: fx.store,
      keys: { sessionKey: fx.runtime.sessionKey, requestMacKey: fx.runtime.requestMacKey, keyRing: fx.runtime.keyRing },
      logger: quietLogger(),
    });
    envoy = await startEnvoy(findExecutable('envoy') ?? 'envoy', {
      authz: { host: '127.0.0.1', port: authz.port },
      gateway: { host: '127.0.0.1', port: gw.port },
    });
  }, 60_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await envoy?.stop();
    await gw?.close();
    await authz?.drain();
    await fx?.close();
    await web?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function agent(user: string): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
    const transport = new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${envoy.port}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${fx.keys[user] ?? ''}` } },
    });
    const client = new Client({ name: 'e2e-agent', version: '1.0.0' }, { capabilities: { sampling: {} } });
    await client.connect(transport);
    clients.push(client);
    return { client, transport };
  }

  it('initialize and tools/list through the front, filtered per user', async () => {
    const { client, transport } = await agent('alice');
    expect(client.getServerVersion()?.name).toBe('mcpgw');
    expect(transport.sessionId).toMatch(/^[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}$/);
    const alice = (await client.listTools()).tools.map((t) => t.name);
    expect(alice).toEqual(expect.arrayContaining(['gmail__echo', 'docs__echo', 'docs__sample']));
    expect(alice).not.toContain('gmail__envnames');
    // The client opened its GET stream through Envoy (authz admits GET /mcp with a valid session).
    await waitFor(
      () => gw.aggregator.session(transport.sessionId ?? '')?.hasStream ?? false,
      (open) => open,
    );
    const dave = (await (await agent('dave')).client.listTools()).tools.map((t) => t.name);
    expect(dave.length).toBeGreaterThan(0);
    expect(dave.every((n) => n.startsWith('docs__'))).toBe(true);
  });

  it('an allowed tools/call reaches the backend; a denied one is an isError result authz wrote', async () => {
    const { client } = await agent('alice');
    expect(textOf(await client.callTool({ name: 'gmail__echo', arguments: { text: 'hi' } }))).toBe('echo: hi');
    expect(textOf(await client.callTool({ name: 'docs__echo', arguments: { text: 'hello' } }))).toBe('echo: hello');
    const denied = await client.callTool({ name: 'docs__echo', arguments: { text: 'the secret plan' } });
    expect(denied.isError).toBe(true);
    expect(denied._meta?.['io.mcpgw/decision']).toMatchObject({ decision: 'deny', rule: 'no secrets' });
    expect(textOf(denied)).toMatch(/denied by the gateway's security policy/);
    // Dave has no grant on gmail: authz refuses before the gateway sees it.
    const dave = (await agent('dave')).client;
    const noGrant = await dave.callTool({ name: 'gmail__echo', arguments: { text: 'x' } });
    expect(noGrant.isError).toBe(true);
    expect(noGrant._meta?.['io.mcpgw/decision']).toMatchObject({ decision: 'deny' });
  });

  it('progress streams back through Envoy, and a sampling answer gets back through authz', async () => {
    const { client } = await agent('alice');
    const seen: Progress[] = [];
    const r = await client.callTool({ name: 'docs__progress', arguments: { steps: 2, ms: 50 } }, undefined, {
      onprogress: (p) => seen.push(p),
    });
    expect(textOf(r)).toBe('done 2');
    expect(seen.map((p) => p.progress)).toEqual([1, 2]);
    client.setRequestHandler(CreateMessageRequestSchema, async () => ({
      model: 'm',
      role: 'assistant',
      content: { type: 'text', text: 'answered' },
    }));
    // The agent's answer is a POST that authz admits only for an id the gateway minted for this session.
    expect(textOf(await client.callTool({ name: 'docs__sample', arguments: { prompt: 'p' } }))).toBe(
      'sampled: answered',
    );
  });

  it('DELETE ends the session through the front', async () => {
    const { client, transport } = await agent('dave');
    await transport.terminateSession();
    await expect(client.listTools()).rejects.toThrow();
  });

  it('the gateway port refuses what did not come through authz', async () => {
    const res = await fetch(`http://127.0.0.1:${gw.port}/mcp`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${fx.keys['alice'] ?? ''}`,
        'x-mcpgw-user': 'alice',
      },
      body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
    });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: -32001 } });
  });
});
