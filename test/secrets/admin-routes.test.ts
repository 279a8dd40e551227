/**
 * `/admin/v1/secrets` as plain `handle()` calls over a real in-memory store and a real builtin
 * secret store: who may call, what is refused and why, what the listing and the test report say,
 * and that no answer ever holds a value.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdminApi } from '../../src/admin/api.js';
import {
  deleteSecretResponseSchema,
  secretPageSchema,
  secretTestResponseSchema,
  setSecretResponseSchema,
} from '../../src/admin/contract.js';
import { PolicyHolder } from '../../src/authz/runtime.js';
import { BuiltinSecretStore, NoneSecretStore, type SecretStore } from '../../src/vault/index.js';
import { AGENT, ALICE, expectError, expectOk, openHarness, type Harness } from '../admin/helpers.js';
import { SECRET_SERVER } from './helpers.js';

const POLICY = `version: "1.0"
services:
  gh: {transport: stdio, command: node, args: [${JSON.stringify(SECRET_SERVER)}], secrets: [GH_TOKEN, GH_EXTRA]}
  cal:
    transport: http
    url: http://127.0.0.1:9/mcp
    headers: {Authorization: "Bearer \${CAL_TOKEN}", X-Other: "\${CAL_MISSING}"}
  broken: {transport: stdio, command: no-such-mcp-server-anywhere}
policies:
  - {name: default deny, when: {}, action: deny, priority: 999}
`;

const VALUE = 'gh-value-Zx81Qm2Lr0';
const CAL = 'cal-value-Pq7Wn3Ks';

describe('/admin/v1/secrets', () => {
  let h: Harness;
  let secrets: SecretStore;
  const keyDir = mkdtempSync(join(tmpdir(), 'mcpgw-secret-routes-'));
  const answers: string[] = [];
  const changed: string[] = [];

  beforeAll(async () => {
    // The harness's own store and key handling, with this suite's policy swapped in.
    h = await openHarness();
    const created = await PolicyHolder.create(POLICY, 'mcp-security.yaml', {
      onSwap: (active) => h.store.setRules(active.engine.revision, active.compiled.layer2),
    });
    if ('errors' in created) throw new Error(JSON.stringify(created.errors));
    h.holder = created.holder;
    secrets = await BuiltinSecretStore.open({ db: h.store.db, keyDir });
    h.api = createAdminApi({
      store: h.store,
      policy: h.holder,
      secrets: { store: secrets, onChanged: (s, v) => void changed.push(`${s}/${v}`) },
    });
  });

  afterAll(async () => {
    await secrets.close();
    await h.close();
    rmSync(keyDir, { recursive: true, force: true });
    // No answer of this suite held a value.
    for (const a of answers) for (const v of [VALUE, CAL]) expect(a).not.toContain(v);
  });

  const call = async (method: string, path: string, body?: unknown, as = undefined as typeof ALICE | undefined) => {
    const r = await h.call(method, path, { body, ...(as ? { as } : {}) });
    answers.push(JSON.stringify(r));
    return r;
  };

  it('only admins: approvers and agents get 403', async () => {
    expectError(await call('GET', '/secrets', undefined, ALICE), 403, 'forbidden');
    expectError(await call('PUT', '/secrets/gh/GH_TOKEN', { value: VALUE }, AGENT), 403, 'forbidden');
    expectError(await call('POST', '/secrets/gh/test', {}, ALICE), 403, 'forbidden');
  });

  it('refuses short values with the reason, bad names, and unknown fields, never quoting the value', async () => {
    const short = expectError(await call('PUT', '/secrets/gh/GH_TOKEN', { value: 'short12' }), 400, 'bad_request');
    expect(short.message).toMatch(/7 characters; secrets shorter than 8 are refused because redaction/);
    expect(short.message).not.toContain('short12');
    expectError(await call('PUT', '/secrets/gh/gh_token', { value: VALUE }), 400, 'bad_request');
    expectError(await call('PUT', '/secrets/GH/GH_TOKEN', { value: VALUE }), 400, 'bad_request');
    expectError(await call('PUT', '/secrets/gh/1TOKEN', { value: VALUE }), 400, 'bad_request');
    expectError(await call('PUT', '/secrets/gh/GH_TOKEN', { value: 12345678 }), 400, 'bad_request');
    expectError(await call('PUT', '/secrets/gh/GH_TOKEN', { value: VALUE, extra: 1 }), 400, 'bad_request');
    expect(await secrets.list()).toEqual([]);
  });

  it('stores, replaces, audits (names only) and rebuilds redaction', async () => {
    const first = expectOk(await call('PUT', '/secrets/gh/GH_TOKEN', { value: VALUE }), setSecretResponseSchema);
    expect(first).toMatchObject({ created: true, backend: 'builtin', warnings: [], restart: { needed: false } });
    const again = expectOk(await call('PUT', '/secrets/gh/GH_TOKEN', { value: `${VALUE}-2` }), setSecretResponseSchema);
    expect(again.created).toBe(false);
    await call('PUT', '/secrets/gh/GH_TOKEN', { value: VALUE });
    const odd = expectOk(await call('PUT', '/secrets/gh/UNLISTED', { value: VALUE }), setSecretResponseSchema);
    expect(odd.warnings[0]).toMatch(/not in services.gh.secrets/);
    const nowhere = expectOk(await call('PUT', '/secrets/nowhere/X_TOKEN', { value: VALUE }), setSecretResponseSchema);
    expect(nowhere.warnings[0]).toMatch(/not in the policy in force/);
    expectOk(await call('PUT', '/secrets/cal/CAL_TOKEN', { value: CAL }), setSecretResponseSchema);
    expect(changed).toContain('gh/GH_TOKEN');
    expect(await secrets.get('gh', 'GH_TOKEN')).toBe(VALUE);
    const audit = await h.store.db.query(
      `SELECT method, service, detail FROM audit_log WHERE method LIKE 'admin/secrets%'`,
    );
    expect(audit.rows.length).toBeGreaterThanOrEqual(5);
    expect(JSON.stringify(audit.rows)).not.toContain(VALUE);
  });

  it('lists stored names and the declared ones that are missing', async () => {
    const page = expectOk(await call('GET', '/secrets'), secretPageSchema);
    expect(page.backend).toBe('builtin');
    expect(page.items.map((i) => [i.service, i.variable, i.stored, i.declared])).toEqual([
      ['cal', 'CAL_TOKEN', true, false],
      ['gh', 'GH_EXTRA', false, true],
      ['gh', 'GH_TOKEN', true, true],
      ['gh', 'UNLISTED', true, false],
      ['nowhere', 'X_TOKEN', true, false],
    ]);
    const first = expectOk(await h.call('GET', '/secrets', { query: { limit: '2' } }), secretPageSchema);
    expect(first.items).toHaveLength(2);
    const rest = await h.call('GET', '/secrets', { query: { limit: '10', cursor: first.nextCursor ?? '' } });
    expect(secretPageSchema.parse(rest.body).items).toHaveLength(3);
  });

  it('test: a stdio backend is started with the injected environment; names only', async () => {
    const r = expectOk(await call('POST', '/secrets/gh/test', {}), secretTestResponseSchema);
    expect(r).toMatchObject({ transport: 'stdio', started: true, error: null, ok: false, missing: ['GH_EXTRA'] });
    expect(r.ignored).toEqual(['UNLISTED']);
    expect(r.variables).toEqual([
      { name: 'GH_EXTRA', stored: false, declared: true, delivered: false },
      { name: 'GH_TOKEN', stored: true, declared: true, delivered: true },
      { name: 'UNLISTED', stored: true, declared: false, delivered: false },
    ]);
  });

  it('test: http headers report which ${VAR} resolve; a command that cannot start is reported', async () => {
    const cal = expectOk(await call('POST', '/secrets/cal/test', {}), secretTestResponseSchema);
    expect(cal).toMatchObject({ transport: 'http', started: null, ok: false, missing: ['CAL_MISSING'] });
    expect(cal.error).toBe('cal: secret CAL_MISSING (header X-Other) is not set');
    expect(cal.variables.find((v) => v.name === 'CAL_TOKEN')).toMatchObject({ delivered: true });
    const broken = expectOk(await call('POST', '/secrets/broken/test', {}), secretTestResponseSchema);
    expect(broken).toMatchObject({
      started: false,
      ok: false,
      error: 'command not found: no-such-mcp-server-anywhere',
    });
    expectError(await call('POST', '/secrets/absent/test', {}), 404, 'not_found');
  });

  it('deletes, and says so when there is nothing to delete', async () => {
    expectOk(await call('DELETE', '/secrets/gh/UNLISTED'), deleteSecretResponseSchema);
    expectError(await call('DELETE', '/secrets/gh/UNLISTED'), 404, 'not_found');
    expect(await secrets.get('gh', 'UNLISTED')).toBeNull();
  });

  it('with secrets.backend none: 409 with the reason; without a store: 503', async () => {
    const none = createAdminApi({ store: h.store, policy: h.holder, secrets: { store: new NoneSecretStore() } });
    const caller = { id: 'owner', role: 'admin' as const };
    const r = await none.handle({ method: 'PUT', path: '/secrets/gh/GH_TOKEN', body: { value: VALUE }, caller });
    expectError(r, 409, 'conflict');
    answers.push(JSON.stringify(r));
    const bare = createAdminApi({ store: h.store, policy: h.holder });
    expectError(await bare.handle({ method: 'GET', path: '/secrets', caller }), 503, 'unavailable');
  });
});
