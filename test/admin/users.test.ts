/**
 * Users, API keys and grants: a key is returned once, only its hash is stored (the database is
 * searched for the key), rotation revokes the old key, grants show up in the identity store, and
 * every change is audited without the key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createUserResponseSchema,
  grantsResponseSchema,
  revokeGrantResponseSchema,
  rotateKeyResponseSchema,
  userPageSchema,
  userSchema,
} from '../../src/admin/contract.js';
import { hashApiKey, parseApiKey } from '../../src/identity/api-keys.js';
import { authenticateApiKey } from '../../src/identity/store.js';
import { ALICE, expectError, expectOk, openHarness, type Harness } from './helpers.js';

let h: Harness;
beforeAll(async () => {
  h = await openHarness();
  await h.store.identity.createUser({ id: 'owner', role: 'admin' });
});
afterAll(async () => {
  await h.close();
});

/** Every text and bytea value in every table, as one string per row (a crude `pg_dump | grep`). */
async function dumpContains(needle: string): Promise<string[]> {
  const tables = await h.store.db.query<{ t: string }>(
    `SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public'`,
  );
  const hits: string[] = [];
  const hex = Buffer.from(needle).toString('hex');
  for (const { t } of tables.rows) {
    const r = await h.store.db.query<{ row: string }>(`SELECT x::text AS row FROM "${t}" AS x`);
    for (const { row } of r.rows) if (row.includes(needle) || row.includes(hex)) hits.push(`${t}: ${row}`);
  }
  return hits;
}

describe('users', () => {
  let agentKey = '';

  it('POST /users creates an agent with an sk key returned once; only its hash is stored', async () => {
    const res = expectOk(
      await h.call('POST', '/users', { body: { id: 'jarvis', role: 'agent' } }),
      createUserResponseSchema,
      201,
    );
    agentKey = res.apiKey;
    const parsed = parseApiKey(agentKey);
    expect(parsed.ok && parsed.kind).toBe('sk');
    expect(res.user).toMatchObject({ id: 'jarvis', role: 'agent', email: null, grants: {} });
    expect(res.user.keys).toEqual([
      { displayId: agentKey.slice(9, 17), kind: 'sk', createdAt: expect.any(String) as string },
    ]);

    // The key authenticates…
    const auth = await authenticateApiKey(h.store.identity, agentKey);
    expect(auth.ok && auth.principal.id).toBe('jarvis');
    // …and appears nowhere in the database, not even in the audit row; its hash does.
    expect(await dumpContains(agentKey)).toEqual([]);
    expect(await dumpContains(agentKey.slice(9))).toEqual([]);
    // (The search does see what is there: the display id, in the key row and the audit row.)
    expect((await dumpContains(agentKey.slice(9, 17))).length).toBeGreaterThanOrEqual(2);
    const stored = await h.store.db.query('SELECT hash FROM api_keys WHERE display_id = $1', [agentKey.slice(9, 17)]);
    expect(Buffer.from(stored.rows[0]?.['hash'] as Uint8Array).equals(hashApiKey(agentKey))).toBe(true);

    // Never shown again.
    const again = await h.call('GET', '/users/jarvis');
    expect(JSON.stringify(again.body)).not.toContain(agentKey);
    expect(JSON.stringify((await h.call('GET', '/users')).body)).not.toContain(agentKey);

    const audit = await h.store.db.query(`SELECT user_id, detail FROM audit_log WHERE method = 'admin/users.create'`);
    expect(audit.rows[0]).toMatchObject({
      user_id: 'owner',
      detail: { target: 'jarvis', targetRole: 'agent', key: agentKey.slice(9, 17) },
    });
  });

  it('approvers and admins get ak keys; email is kept', async () => {
    const res = expectOk(
      await h.call('POST', '/users', { body: { id: 'alice', role: 'approver', email: 'alice@example.com' } }),
      createUserResponseSchema,
      201,
    );
    expect(res.apiKey.startsWith('mcpgw_ak_')).toBe(true);
    expect(res.user.email).toBe('alice@example.com');
    const admin = expectOk(
      await h.call('POST', '/users', { body: { id: 'root2', role: 'admin' } }),
      createUserResponseSchema,
      201,
    );
    expect(admin.apiKey.startsWith('mcpgw_ak_')).toBe(true);
  });

  it('refuses duplicates, bad ids, unknown roles and extra fields', async () => {
    expectError(await h.call('POST', '/users', { body: { id: 'jarvis', role: 'agent' } }), 409, 'conflict');
    expectError(await h.call('POST', '/users', { body: { id: 'has space', role: 'agent' } }), 400, 'bad_request');
    expectError(await h.call('POST', '/users', { body: { id: 'x', role: 'root' } }), 400, 'bad_request');
    const e = expectError(
      await h.call('POST', '/users', { body: { id: 'x', role: 'agent', apiKey: 'mine' } }),
      400,
      'bad_request',
    );
    expect(e.details).toMatchObject({ issues: [expect.objectContaining({ path: '(root)' })] });
    expectError(await h.call('POST', '/users', { body: [] }), 400, 'bad_request');
  });

  it('GET /users pages with a cursor', async () => {
    for (const id of ['u1', 'u2', 'u3', 'u4']) await h.store.identity.createUser({ id, role: 'agent' });
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: Record<string, string> = { limit: '3', ...(cursor === null ? {} : { cursor }) };
      const page = expectOk(await h.call('GET', '/users', { query }), userPageSchema);
      expect(page.items.length).toBeLessThanOrEqual(3);
      seen.push(...page.items.map((u) => u.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor !== null && pages < 10);
    expect(seen).toEqual(['alice', 'jarvis', 'owner', 'root2', 'u1', 'u2', 'u3', 'u4']);
    expect(pages).toBe(3);
    expectError(await h.call('GET', '/users', { query: { cursor: 'garbage' } }), 400, 'bad_request');
    expectError(await h.call('GET', '/users', { query: { limit: '0' } }), 400, 'bad_request');
    expectError(await h.call('GET', '/users', { query: { limit: '501' } }), 400, 'bad_request');
    expectError(await h.call('GET', '/users', { query: { bogus: '1' } }), 400, 'bad_request');
  });

  it('GET /users/:id, and 404 for an unknown user', async () => {
    expect(expectOk(await h.call('GET', '/users/alice'), userSchema).role).toBe('approver');
    expectError(await h.call('GET', '/users/nobody'), 404, 'not_found');
  });

  it('rotate-key: a new key once, the old one revoked', async () => {
    const res = expectOk(await h.call('POST', '/users/jarvis/rotate-key'), rotateKeyResponseSchema);
    expect(res.apiKey).not.toBe(agentKey);
    expect(res.revoked).toEqual([agentKey.slice(9, 17)]);
    expect(res.user.keys.map((k) => k.displayId)).toEqual([res.apiKey.slice(9, 17)]);
    expect((await authenticateApiKey(h.store.identity, agentKey)).ok).toBe(false);
    expect((await authenticateApiKey(h.store.identity, res.apiKey)).ok).toBe(true);
    expect(await dumpContains(res.apiKey)).toEqual([]);
    expectError(await h.call('POST', '/users/nobody/rotate-key'), 404, 'not_found');
  });

  it('grants: add, list, revoke a tool, revoke a service; 404s for unknown users and grants', async () => {
    const added = expectOk(
      await h.call('POST', '/users/jarvis/grants', { body: { service: 'docs', tools: ['read_page', 'nope'] } }),
      grantsResponseSchema,
    );
    expect(added.grants).toEqual({ docs: ['nope', 'read_page'] });
    expect(added.warnings).toEqual([expect.stringContaining('tool nope is not in services.docs.tools')]);
    const all = expectOk(
      await h.call('POST', '/users/jarvis/grants', { body: { service: 'gmail', tools: ['*'] } }),
      grantsResponseSchema,
    );
    expect(all.grants).toEqual({ docs: ['nope', 'read_page'], gmail: ['*'] });
    expect(all.warnings).toEqual([]);
    const ghost = expectOk(
      await h.call('POST', '/users/jarvis/grants', { body: { service: 'ghost', tools: ['x'] } }),
      grantsResponseSchema,
    );
    expect(ghost.warnings).toEqual([expect.stringContaining('not in the policy')]);
    expect(h.grantsChanged).toContain('jarvis');
    expect((await h.store.identity.findUser('jarvis'))?.grants['gmail']).toEqual(['*']);

    const one = expectOk(await h.call('DELETE', '/users/jarvis/grants/docs/nope'), revokeGrantResponseSchema);
    expect(one).toMatchObject({ removed: 1, grants: { docs: ['read_page'] } });
    const svc = expectOk(await h.call('DELETE', '/users/jarvis/grants/ghost'), revokeGrantResponseSchema);
    expect(svc.removed).toBe(1);
    expect(svc.grants).not.toHaveProperty('ghost');

    expectError(await h.call('DELETE', '/users/jarvis/grants/docs/nope'), 404, 'not_found');
    expectError(await h.call('DELETE', '/users/nobody/grants/docs'), 404, 'not_found');
    expectError(
      await h.call('POST', '/users/nobody/grants', { body: { service: 'docs', tools: ['*'] } }),
      404,
      'not_found',
    );
    expectError(
      await h.call('POST', '/users/jarvis/grants', { body: { service: 'Bad_Name', tools: ['*'] } }),
      400,
      'bad_request',
    );
    expectError(
      await h.call('POST', '/users/jarvis/grants', { body: { service: 'docs', tools: [] } }),
      400,
      'bad_request',
    );

    const audit = await h.store.db.query(
      `SELECT method, service, detail FROM audit_log WHERE method LIKE 'admin/grants.%' ORDER BY id`,
    );
    expect(audit.rows.map((r) => r['method'])).toEqual([
      'admin/grants.add',
      'admin/grants.add',
      'admin/grants.add',
      'admin/grants.revoke',
      'admin/grants.revoke',
    ]);
  });

  it('percent-encoded names in the path (a resource URI grant)', async () => {
    const uri = 'file:///data/report.txt';
    expectOk(
      await h.call('POST', '/users/jarvis/grants', { body: { service: 'docs', tools: [uri] } }),
      grantsResponseSchema,
    );
    const res = expectOk(
      await h.call('DELETE', `/users/jarvis/grants/docs/${encodeURIComponent(uri)}`),
      revokeGrantResponseSchema,
    );
    expect(res.removed).toBe(1);
    expectError(await h.call('DELETE', '/users/jarvis/grants/docs/%E0%A4%A'), 400, 'bad_request');
  });

  it('DELETE /users/:id removes the user and keys; the last admin cannot be deleted', async () => {
    const res = await h.call('DELETE', '/users/jarvis');
    expect(res).toEqual({ status: 200, body: { id: 'jarvis', deleted: true } });
    expect(await h.store.identity.findUser('jarvis')).toBeNull();
    expect((await h.store.identity.listApiKeys('jarvis')).length).toBe(0);
    expectError(await h.call('DELETE', '/users/jarvis'), 404, 'not_found');

    expect((await h.call('DELETE', '/users/root2')).status).toBe(200);
    const e = expectError(await h.call('DELETE', '/users/owner'), 409, 'conflict');
    expect(e.message).toContain('last admin');
    expect(await h.store.identity.findUser('owner')).not.toBeNull();
  });

  it('approvers are refused on every user route', async () => {
    expectError(await h.call('GET', '/users', { as: ALICE }), 403, 'forbidden');
    expectError(await h.call('POST', '/users', { body: { id: 'z', role: 'admin' }, as: ALICE }), 403, 'forbidden');
    expectError(await h.call('POST', '/users/alice/rotate-key', { as: ALICE }), 403, 'forbidden');
  });
});
