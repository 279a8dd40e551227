import { realpathSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { childEnv, resolveCommand, substituteHeaders, type StdioServiceConfig } from '../../src/aggregator/index.js';

const base: StdioServiceConfig = { transport: 'stdio', command: 'x', enabled: true, isolation: 'shared' };
const gatewayEnv = {
  PATH: '/usr/bin:/bin',
  HOME: '/home/gw',
  LANG: 'C.UTF-8',
  USER: 'gw',
  MCPGW_ADMIN_KEY: 'mcpgw_ak_secret',
  SHELL: '/bin/sh',
};

describe('child environment', () => {
  it('is PATH, HOME, LANG, the service env and its injected variables, nothing else of the gateway', () => {
    const env = childEnv('svc', { ...base, env: { MODE: 'demo' } }, { API_TOKEN: 't0ken-value' }, gatewayEnv);
    expect(env).toEqual({
      PATH: '/usr/bin:/bin',
      HOME: '/home/gw',
      LANG: 'C.UTF-8',
      MODE: 'demo',
      API_TOKEN: 't0ken-value',
    });
  });

  it('lets the secrets list of the service decide which injected variables reach it', () => {
    const env = childEnv('svc', { ...base, secrets: ['API_TOKEN'] }, { API_TOKEN: 'a', OTHER_TOKEN: 'b' }, gatewayEnv);
    expect(env['API_TOKEN']).toBe('a');
    expect(env['OTHER_TOKEN']).toBeUndefined();
  });

  it('refuses injected names that are not environment names', () => {
    expect(() => childEnv('svc', base, { 'BAD-NAME': 'x' }, gatewayEnv)).toThrow(/invalid/);
  });
});

describe('header templates', () => {
  it('fills ${VAR} from the injected values and names (never shows) a missing one', () => {
    expect(
      substituteHeaders('cal', { Authorization: 'Bearer ${CAL_TOKEN}', 'X-Static': 'v' }, { CAL_TOKEN: 'abc' }),
    ).toEqual({
      Authorization: 'Bearer abc',
      'X-Static': 'v',
    });
    expect(() => substituteHeaders('cal', { Authorization: 'Bearer ${CAL_TOKEN}' }, {})).toThrow(/CAL_TOKEN .*not set/);
    expect(() => substituteHeaders('cal', { A: '${T}' }, { T: 'x\r\ny' })).toThrow(/cannot go in a header/);
  });
});

describe('command resolution', () => {
  it('runs `node` as this Node', async () => {
    expect(await resolveCommand('node', ['a.js'], {})).toEqual({ file: process.execPath, args: ['a.js'] });
  });

  it('finds the demo servers among the package dependencies, run by this Node, without PATH', async () => {
    const r = await resolveCommand('mcp-server-everything', ['stdio'], { PATH: '' });
    expect(r.file).toBe(process.execPath);
    expect(r.args[0]).toBe(realpathSync('node_modules/@modelcontextprotocol/server-everything/dist/index.js'));
    expect(r.args[1]).toBe('stdio');
  });

  it('looks on the child PATH, and says so when nothing is found', async () => {
    const r = await resolveCommand('sh', [], { PATH: '/usr/bin:/bin' });
    expect(r.file).toMatch(/\/sh$/);
    await expect(resolveCommand('no-such-mcp-server', [], { PATH: '/usr/bin' })).rejects.toThrow(/command not found/);
  });
});
