/**
 * The native mode end to end, as a person runs it: `mcpgw init --yes --json`, `mcpgw up --native`
 * (a background `serve --role all`: PGlite, authz, gateway with the demo backends, and the front),
 * the official MCP SDK client through the front, `status`, `down`. Once with the built-in front and
 * once with the real Envoy.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeWith } from '../helpers/components.js';
import { freePort } from '../helpers/net.js';

const bin = new URL('../../bin/mcpgw.js', import.meta.url).pathname;

function mcpgw(home: string, front: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8',
    timeout: 90_000,
    env: { ...process.env, MCPGW_HOME: home, MCPGW_FRONT: front, MCPGW_AUTHZ_PORT: '0', MCPGW_GATEWAY_PORT: '0' },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function lifecycle(front: 'builtin' | 'envoy') {
  const home = mkdtempSync(join(tmpdir(), `mcpgw-life-${front}-`));
  afterAll(() => {
    mcpgw(home, front, 'down');
    rmSync(home, { recursive: true, force: true });
  });

  it(`init → up → MCP client → status → down (${front} front)`, async () => {
    const port = await freePort();
    const init = mcpgw(home, front, 'init', '--yes', '--json', '--port', String(port));
    expect(init.code, init.err).toBe(0);
    const keys = JSON.parse(init.out) as {
      url: string;
      apiKey: string;
      adminKey: string;
      configPath: string;
      policyPath: string;
    };
    expect(keys.url).toBe(`http://127.0.0.1:${port}/mcp`);
    expect(keys.apiKey).toMatch(/^mcpgw_sk_[0-9A-Za-z]{38}$/);
    expect(keys.adminKey).toMatch(/^mcpgw_ak_[0-9A-Za-z]{38}$/);
    // Keys never live in config files.
    expect(readFileSync(keys.configPath, 'utf8')).not.toContain(keys.apiKey.slice(9));
    expect(statSync(keys.configPath).mode & 0o077).toBe(0);
    expect(mcpgw(home, front, 'init', '--yes').code).toBe(1);

    const up = mcpgw(home, front, 'up', '--native', '--json');
    expect(up.code, up.err).toBe(0);
    const upInfo = JSON.parse(up.out) as { url: string; front: string };
    expect(upInfo).toMatchObject({ url: keys.url, front });

    const st = mcpgw(home, front, 'status', '--json');
    expect(st.code).toBe(0);
    expect(JSON.parse(st.out)).toMatchObject({ running: true, healthy: true });

    const client = new Client({ name: 'lifecycle-test', version: '1' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(keys.url), {
        requestInit: { headers: { Authorization: `Bearer ${keys.apiKey}` } },
      }),
    );
    const tools = (await client.listTools()).tools.map((t) => t.name);
    expect(tools).toContain('everything__echo');
    expect(tools).toContain('memory__create_entities');
    expect(await client.callTool({ name: 'everything__echo', arguments: { message: 'hi' } })).toMatchObject({
      content: [{ type: 'text', text: 'Echo: hi' }],
    });
    const pending = await client.callTool({ name: 'memory__delete_entities', arguments: { entityNames: ['x'] } });
    expect(pending.isError).toBe(true);
    expect(JSON.stringify(pending.content)).toMatch(/approval \(ap-[0-9A-Z]{10}\)/);
    await client.close();

    // An unauthenticated client gets a 401 with a JSON-RPC body from the front.
    const res = await fetch(keys.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { jsonrpc: string }).jsonrpc).toBe('2.0');

    const down = mcpgw(home, front, 'down', '--json');
    expect(down.code).toBe(0);
    expect(JSON.parse(down.out)).toMatchObject({ stopped: true });
    expect(mcpgw(home, front, 'status').code).toBe(3);
    const log = readFileSync(join(home, 'logs', 'mcpgw.log'), 'utf8');
    expect(log).toContain('"mcpgw ready"');
    expect(log).not.toContain(keys.apiKey);
    expect(log).not.toContain(keys.adminKey);
  }, 120_000);
}

describe('native mode with the built-in front', () => lifecycle('builtin'));
describeWith(['envoy'], 'native mode with the real Envoy front', () => lifecycle('envoy'));
