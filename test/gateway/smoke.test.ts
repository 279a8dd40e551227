import { afterAll, beforeAll, expect, it } from 'vitest';
import { startGateway, type GatewayServer } from '../../src/gateway/index.js';
import {
  authzFetch,
  connect,
  FIXTURE_SERVER,
  identities,
  quietLogger,
  testKeys,
  testPolicy,
  textOf,
  type TestKeys,
} from './helpers.js';

let gw: GatewayServer;
let keys: TestKeys;
beforeAll(async () => {
  keys = await testKeys();
  const policy = await testPolicy(`version: "1.0"
services:
  fx: {transport: stdio, command: node, args: [${JSON.stringify(FIXTURE_SERVER)}, stdio]}
policies:
  - {name: allow all, when: {}, action: allow, priority: 100}
`);
  gw = await startGateway({
    port: 0,
    policy: policy.get,
    identities: identities([{ id: 'alice', role: 'agent', grants: { fx: ['*'] } }]),
    keys,
    logger: quietLogger(),
  });
});
afterAll(async () => {
  await gw?.close();
});

it('smoke', async () => {
  const { client } = await connect(`http://127.0.0.1:${gw.port}/mcp`, authzFetch(keys, 'alice'));
  const t0 = Date.now();
  const tools = await client.listTools();
  console.log(
    tools.tools.map((t) => t.name),
    Date.now() - t0,
  );
  const r = await client.callTool({ name: 'fx__echo', arguments: { text: 'hi' } });
  expect(textOf(r)).toBe('echo: hi');
  await client.close();
});
