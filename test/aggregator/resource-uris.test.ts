/**
 * Resource URIs through the aggregator with a real backend (server-everything over stdio), in both
 * naming modes. No-prefix mode (DESIGN §5: one backend) must hand every URI through byte for byte
 * in both directions (lists, templates, reads, content blocks, subscriptions and their updates,
 * completion refs), because that is what authz authorizes in that mode; prefixed mode must keep
 * rewriting them to mcpgw://<service>/<encoded>. Each gateway's answers are compared with what the
 * same backend says to an SDK client connected to it directly.
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { Client as SdkClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import {
  ResourceUpdatedNotificationSchema,
  type Resource,
  type ResourceTemplate,
} from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayUri, gatewayUriTemplate, resolveCommand } from '../../src/aggregator/index.js';
import { startGateway, type GatewayServer } from '../../src/gateway/index.js';
import { authzFetch, connect, identities, quietLogger, testKeys, testPolicy, waitFor } from '../gateway/helpers.js';

const SERVICE = 'everything';
const TEXT_TEMPLATE = 'demo://resource/dynamic/text/{resourceId}';
const TEXT_7 = 'demo://resource/dynamic/text/7';

let direct: SdkClient;
let directResources: Resource[];
let directTemplates: ResourceTemplate[];

beforeAll(async () => {
  const cmd = await resolveCommand('mcp-server-everything', ['stdio'], {});
  direct = new SdkClient({ name: 'reference', version: '1.0.0' });
  await direct.connect(
    new StdioClientTransport({
      command: cmd.file,
      args: cmd.args,
      env: { PATH: process.env['PATH'] ?? '' },
      stderr: 'ignore',
    }),
  );
  directResources = (await direct.listResources()).resources;
  directTemplates = (await direct.listResourceTemplates()).resourceTemplates;
}, 30_000);

afterAll(async () => {
  await direct?.close();
});

interface Running {
  gw: GatewayServer;
  client: Client;
  updates: string[];
}

async function startWith(prefix: boolean): Promise<Running> {
  const keys = await testKeys();
  const policy = await testPolicy(`version: "1.0"
services:
  ${SERVICE}: {transport: stdio, command: mcp-server-everything, args: [stdio]}
policies:
  - {name: allow, when: {}, action: allow, priority: 1}
`);
  const gw = await startGateway({
    port: 0,
    policy: policy.get,
    identities: identities([{ id: 'alice', role: 'agent', grants: { [SERVICE]: ['*'] } }]),
    keys,
    logger: quietLogger(),
    naming: { prefix },
  });
  const { client } = await connect(`http://127.0.0.1:${gw.port}/mcp`, authzFetch(keys, 'alice'));
  const updates: string[] = [];
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
    updates.push(n.params.uri);
  });
  return { gw, client, updates };
}

async function stop(r: Running | undefined): Promise<void> {
  await r?.client.close();
  await r?.gw.close();
}

/**
 * Toggles server-everything's simulated updates: on, it sends one for every subscribed URI at once
 * (and every 5 s after); the second call turns them off again.
 */
async function toggleUpdates(client: Client, prefixed: boolean): Promise<void> {
  const name = prefixed ? `${SERVICE}__toggle-subscriber-updates` : 'toggle-subscriber-updates';
  await client.callTool({ name, arguments: {} });
}

function linkUris(result: unknown): string[] {
  const content = (result as { content?: { type: string; uri?: string }[] }).content ?? [];
  return content.filter((c) => c.type === 'resource_link').map((c) => c.uri ?? '');
}

describe('no-prefix mode: resource URIs travel unchanged', () => {
  let r: Running | undefined;
  beforeAll(async () => {
    r = await startWith(false);
  }, 30_000);
  afterAll(() => stop(r));
  const client = () => {
    if (!r) throw new Error('gateway not started');
    return r.client;
  };

  it('resources/list and resources/templates/list are the backend’s own lists', async () => {
    expect(directResources.length).toBeGreaterThan(0);
    expect((await client().listResources()).resources).toEqual(directResources);
    const templates = (await client().listResourceTemplates()).resourceTemplates;
    expect(templates).toEqual(directTemplates);
    expect(templates.map((t) => t.uriTemplate)).toContain(TEXT_TEMPLATE);
  });

  it('resources/read takes and returns the backend URI', async () => {
    const listed = directResources[0]?.uri ?? '';
    const read = await client().readResource({ uri: listed });
    expect(read.contents.map((c) => c.uri)).toEqual([listed]);
    const fromTemplate = await client().readResource({ uri: TEXT_7 });
    expect(fromTemplate.contents[0]?.uri).toBe(TEXT_7);
    expect(fromTemplate.contents[0]).toMatchObject({ text: expect.stringMatching(/^Resource 7:/) });
  });

  it('a gateway-style URI is not decoded: it reaches the backend as sent and names nothing there', async () => {
    const encoded = gatewayUri(SERVICE, TEXT_7) ?? '';
    await expect(client().readResource({ uri: encoded })).rejects.toThrow();
  });

  it('resource_link contents of a tool result keep the backend URIs', async () => {
    const links = linkUris(await client().callTool({ name: 'get-resource-links', arguments: { count: 2 } }));
    expect(links.length).toBe(2);
    for (const u of links) expect(u).toMatch(/^demo:\/\/resource\/dynamic\//);
  });

  it('subscribe, the updated notification and unsubscribe carry the backend URI', async () => {
    const uri = directResources[0]?.uri ?? '';
    await client().subscribeResource({ uri });
    await toggleUpdates(client(), false);
    const updates = await waitFor(
      () => r?.updates ?? [],
      (u) => u.length > 0,
      10_000,
    );
    expect(updates[0]).toBe(uri);
    await expect(client().unsubscribeResource({ uri })).resolves.toEqual({});
    await toggleUpdates(client(), false);
  });

  it('completion/complete with ref/resource names the backend template', async () => {
    const done = await client().complete({
      ref: { type: 'ref/resource', uri: TEXT_TEMPLATE },
      argument: { name: 'resourceId', value: '42' },
    });
    expect(done.completion.values).toEqual(['42']);
  });
});

describe('prefixed mode: resource URIs are rewritten to mcpgw://<service>/…', () => {
  let r: Running | undefined;
  beforeAll(async () => {
    r = await startWith(true);
  }, 30_000);
  afterAll(() => stop(r));
  const client = () => {
    if (!r) throw new Error('gateway not started');
    return r.client;
  };

  it('resources/list and resources/templates/list publish every URI in the gateway namespace', async () => {
    expect((await client().listResources()).resources).toEqual(
      directResources.map((res) => ({ ...res, uri: gatewayUri(SERVICE, res.uri) })),
    );
    const templates = (await client().listResourceTemplates()).resourceTemplates;
    expect(templates).toEqual(
      directTemplates.map((t) => ({ ...t, uriTemplate: gatewayUriTemplate(SERVICE, t.uriTemplate) })),
    );
    for (const t of templates) expect(t.uriTemplate.startsWith(`mcpgw://${SERVICE}/`)).toBe(true);
  });

  it('resources/read takes the gateway URI, answers with it, and refuses the backend’s own', async () => {
    const published = gatewayUri(SERVICE, TEXT_7) ?? '';
    const read = await client().readResource({ uri: published });
    expect(read.contents.map((c) => c.uri)).toEqual([published]);
    expect(read.contents[0]).toMatchObject({ text: expect.stringMatching(/^Resource 7:/) });
    await expect(client().readResource({ uri: TEXT_7 })).rejects.toThrow(/Unknown resource/);
  });

  it('resource_link contents of a tool result are rewritten', async () => {
    const links = linkUris(
      await client().callTool({ name: `${SERVICE}__get-resource-links`, arguments: { count: 2 } }),
    );
    expect(links.length).toBe(2);
    for (const u of links) expect(u).toMatch(/^mcpgw:\/\/everything\/demo%3A%2F%2Fresource%2Fdynamic%2F/);
  });

  it('subscribe and the updated notification use the gateway URI', async () => {
    const published = gatewayUri(SERVICE, directResources[0]?.uri ?? '') ?? '';
    await client().subscribeResource({ uri: published });
    await toggleUpdates(client(), true);
    const updates = await waitFor(
      () => r?.updates ?? [],
      (u) => u.length > 0,
      10_000,
    );
    expect(updates[0]).toBe(published);
    await expect(client().unsubscribeResource({ uri: published })).resolves.toEqual({});
    await toggleUpdates(client(), true);
  });

  it('completion/complete with ref/resource takes the published template and refuses the backend’s', async () => {
    const done = await client().complete({
      ref: { type: 'ref/resource', uri: gatewayUriTemplate(SERVICE, TEXT_TEMPLATE) ?? '' },
      argument: { name: 'resourceId', value: '42' },
    });
    expect(done.completion.values).toEqual(['42']);
    await expect(
      client().complete({
        ref: { type: 'ref/resource', uri: TEXT_TEMPLATE },
        argument: { name: 'resourceId', value: '42' },
      }),
    ).rejects.toThrow(/Unknown resource template/);
  });
});
