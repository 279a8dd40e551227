/**
 * The demo backends, run from the installed packages (never fetched at run time):
 * `@modelcontextprotocol/server-everything` over stdio and over Streamable HTTP, and
 * `@modelcontextprotocol/server-memory` over stdio with its file under a temp dir.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { Progress } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { resolveCommand } from '../../src/aggregator/index.js';
import { startGateway, type GatewayServer } from '../../src/gateway/index.js';
import { authzFetch, connect, identities, quietLogger, testKeys, testPolicy, textOf, waitFor } from './helpers.js';
import { freePort } from '../helpers/net.js';

let dir: string;
let gw: GatewayServer;
let client: Client;
let httpEverything: ChildProcess | undefined;
let sseEverything: ChildProcess | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mcpgw-demo-'));
  const serve = async (mode: string): Promise<{ child: ChildProcess; port: number }> => {
    const port = await freePort();
    const cmd = await resolveCommand('mcp-server-everything', [mode], {});
    const child = spawn(cmd.file, cmd.args, {
      env: { PATH: process.env['PATH'] ?? '', PORT: String(port) },
      stdio: 'ignore',
    });
    await waitFor(
      () =>
        fetch(`http://127.0.0.1:${port}/`).then(
          (r) => r.status,
          () => 0,
        ),
      (status) => status > 0,
      10_000,
    );
    return { child, port };
  };
  const [http, sse] = await Promise.all([serve('streamableHttp'), serve('sse')]);
  httpEverything = http.child;
  sseEverything = sse.child;
  const port = http.port;
  const keys = await testKeys();
  const policy = await testPolicy(`version: "1.0"
services:
  everything: {transport: stdio, command: mcp-server-everything, args: [stdio]}
  memory: {transport: stdio, command: mcp-server-memory, env: {MEMORY_FILE_PATH: ${JSON.stringify(join(dir, 'memory.jsonl'))}}}
  remote: {transport: http, url: "http://127.0.0.1:${port}/mcp"}
  legacy: {transport: sse, url: "http://127.0.0.1:${sse.port}/sse"}
policies:
  - {name: allow, when: {}, action: allow, priority: 1}
`);
  process.env['MCPGW_LEAK_CHECK'] = 'must-not-reach-children';
  gw = await startGateway({
    port: 0,
    policy: policy.get,
    identities: identities([
      { id: 'alice', role: 'agent', grants: { everything: ['*'], memory: ['*'], remote: ['*'], legacy: ['*'] } },
    ]),
    keys,
    logger: quietLogger(),
  });
  client = (await connect(`http://127.0.0.1:${gw.port}/mcp`, authzFetch(keys, 'alice'))).client;
}, 30_000);

afterAll(async () => {
  delete process.env['MCPGW_LEAK_CHECK'];
  await client?.close();
  await gw?.close();
  httpEverything?.kill();
  sseEverything?.kill();
  if (dir) await rm(dir, { recursive: true, force: true });
});

it('lists and calls server-everything over stdio, Streamable HTTP and legacy SSE', async () => {
  const names = (await client.listTools()).tools.map((t) => t.name);
  expect(names).toEqual(
    expect.arrayContaining(['everything__echo', 'everything__get-sum', 'remote__echo', 'memory__create_entities']),
  );
  expect(textOf(await client.callTool({ name: 'everything__echo', arguments: { message: 'hello' } }))).toBe(
    'Echo: hello',
  );
  expect(textOf(await client.callTool({ name: 'remote__echo', arguments: { message: 'there' } }))).toBe('Echo: there');
  expect(names).toContain('legacy__echo');
  expect(textOf(await client.callTool({ name: 'legacy__echo', arguments: { message: 'old' } }))).toBe('Echo: old');
});

it('server-everything sees only the minimal environment', async () => {
  const env = JSON.parse(textOf(await client.callTool({ name: 'everything__get-env', arguments: {} }))) as Record<
    string,
    string
  >;
  expect(Object.keys(env).sort()).toEqual(['HOME', 'LANG', 'PATH'].filter((n) => process.env[n] !== undefined));
});

it('resource links, resources and progress of server-everything come through rewritten', async () => {
  const links = await client.callTool({ name: 'everything__get-resource-links', arguments: { count: 2 } });
  const uris = (links.content as { type: string; uri?: string }[])
    .filter((c) => c.type === 'resource_link')
    .map((c) => c.uri);
  expect(uris.length).toBe(2);
  for (const u of uris) expect(u).toMatch(/^mcpgw:\/\/everything\//);
  const read = await client.readResource({ uri: uris[0] ?? '' });
  expect(read.contents[0]?.uri).toBe(uris[0]);
  const seen: Progress[] = [];
  await client.callTool(
    { name: 'everything__trigger-long-running-operation', arguments: { duration: 1, steps: 2 } },
    undefined,
    {
      onprogress: (p) => seen.push(p),
    },
  );
  expect(seen.length).toBe(2);
});

it('server-memory keeps its graph in the file it was given', async () => {
  await client.callTool({
    name: 'memory__create_entities',
    arguments: { entities: [{ name: 'mcpgw', entityType: 'project', observations: ['a gateway'] }] },
  });
  const graph = textOf(await client.callTool({ name: 'memory__read_graph', arguments: {} }));
  expect(graph).toContain('a gateway');
});
