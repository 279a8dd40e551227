/**
 * Identities, policy revisions and signing keys in the database, on both stores: the
 * IdentityStore contract the Check handler uses, cache invalidation by NOTIFY (also for changes
 * made with plain SQL, and across replicas on PostgreSQL).
 */
import { beforeAll, expect, it } from 'vitest';
import { authenticateApiKey } from '../../src/identity/store.js';
import { generateApiKey, hashApiKey, parseApiKey } from '../../src/identity/api-keys.js';
import type { Layer2Store } from '../../src/state/store.js';
import { describeStores, sleep, uniq } from './harness.js';

async function eventually(check: () => Promise<boolean>, ms = 3000): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > until) return false;
    await sleep(20);
  }
}

describeStores('identities and shared records', (env) => {
  let store: Layer2Store;
  beforeAll(async () => {
    store = await env.open();
  });

  async function userWithKey(role: 'agent' | 'admin' = 'agent'): Promise<{ id: string; key: string; hash: Buffer }> {
    const id = uniq('user');
    await store.identity.createUser({ id, role, email: `${id}@example.com` });
    const key = generateApiKey(role === 'agent' ? 'sk' : 'ak');
    const parsed = parseApiKey(key);
    if (!parsed.ok) throw new Error('generated key does not parse');
    await store.identity.addApiKey({ userId: id, kind: parsed.kind, hash: parsed.hash, displayId: parsed.displayId });
    return { id, key, hash: parsed.hash };
  }

  it('finds a principal with its grants by key hash, and authenticates a presented key end to end', async () => {
    const u = await userWithKey();
    await store.identity.grant(u.id, 'github', 'create_issue');
    await store.identity.grant(u.id, 'github', 'list_issues');
    await store.identity.grant(u.id, 'files', '*');
    const m = await store.identity.findByApiKeyHash(u.hash);
    expect(m).toEqual({
      principal: {
        id: u.id,
        role: 'agent',
        email: `${u.id}@example.com`,
        grants: { files: ['*'], github: ['create_issue', 'list_issues'] },
      },
      keyKind: 'sk',
    });
    expect(await authenticateApiKey(store.identity, u.key)).toMatchObject({ ok: true, principal: { id: u.id } });
    expect(await store.identity.findByApiKeyHash(hashApiKey('mcpgw_sk_unknown'))).toBeNull();
    expect(await store.identity.findUser(u.id)).toMatchObject({ id: u.id, role: 'agent' });
    expect(await store.identity.findUser('nobody')).toBeNull();
    // The key itself is never stored.
    const raw = await store.db.query('SELECT * FROM api_keys WHERE user_id = $1', [u.id]);
    expect(JSON.stringify(raw.rows)).not.toContain(u.key.slice(9));
  });

  it('revoked keys, disabled users and removed grants take effect at once in this replica', async () => {
    const u = await userWithKey();
    await store.identity.grant(u.id, 'svc', 'a');
    expect((await store.identity.findByApiKeyHash(u.hash))?.principal.grants).toEqual({ svc: ['a'] });
    expect(await store.identity.revokeGrant(u.id, 'svc')).toBe(1);
    expect((await store.identity.findByApiKeyHash(u.hash))?.principal.grants).toEqual({});
    await store.identity.updateUser(u.id, { disabled: true });
    expect(await store.identity.findByApiKeyHash(u.hash)).toBeNull();
    expect(await store.identity.findUser(u.id)).toBeNull();
    await store.identity.updateUser(u.id, { disabled: false });
    const keys = await store.identity.listApiKeys(u.id);
    expect(keys).toHaveLength(1);
    expect(await store.identity.revokeApiKey(keys[0]!.displayId)).toBe(true);
    expect(await store.identity.findByApiKeyHash(u.hash)).toBeNull();
  });

  it('refuses a key kind that does not fit the role', async () => {
    const id = uniq('approver');
    await store.identity.createUser({ id, role: 'approver' });
    await expect(
      store.identity.addApiKey({ userId: id, kind: 'sk', hash: hashApiKey('x'), displayId: uniq('d').slice(0, 20) }),
    ).rejects.toThrow(/cannot belong to role approver/);
  });

  it('a change made with plain SQL reaches the cache through NOTIFY', async () => {
    const u = await userWithKey();
    expect((await store.identity.findByApiKeyHash(u.hash))?.principal.role).toBe('agent');
    await store.db.query(`INSERT INTO grants (user_id, service, tool) VALUES ($1, 'late', 'tool')`, [u.id]);
    expect(
      await eventually(
        async () => (await store.identity.findByApiKeyHash(u.hash))?.principal.grants['late']?.[0] === 'tool',
      ),
    ).toBe(true);
  });

  if (env.kind === 'postgres') {
    it('another replica sees a change within the staleness bound (NOTIFY, in practice milliseconds)', async () => {
      const url = await env.freshUrl();
      const a = await env.open({ databaseUrl: url });
      const b = await env.open({ databaseUrl: url, migrate: false });
      await a.identity.createUser({ id: 'rep', role: 'agent' });
      const hash = hashApiKey('mcpgw_sk_replica');
      await a.identity.addApiKey({ userId: 'rep', kind: 'sk', hash, displayId: 'replica1' });
      expect((await b.identity.findByApiKeyHash(hash))?.principal.grants).toEqual({});
      const t0 = Date.now();
      await a.identity.grant('rep', 'svc', 'x');
      expect(
        await eventually(async () => (await b.identity.findByApiKeyHash(hash))?.principal.grants['svc'] !== undefined),
      ).toBe(true);
      expect(Date.now() - t0).toBeLessThan(5000);
    });
  }

  it('stores policy revisions and tells replicas about new ones', async () => {
    const seen: (string | null)[] = [];
    const stop = await store.onPolicyRevision((id) => seen.push(id));
    const id1 = uniq('rev');
    const id2 = uniq('rev');
    await store.putPolicyRevision({
      id: id1,
      source: 'version: "1.0"\n',
      compiled: { layer2: {} },
      createdBy: 'owner',
    });
    await store.putPolicyRevision({ id: id2, source: 'version: "1.0"\n# 2\n', compiled: { n: 2 } });
    expect((await store.latestPolicyRevision())?.id).toBe(id2);
    expect(await store.getPolicyRevision(id1)).toMatchObject({ id: id1, createdBy: 'owner', compiled: { layer2: {} } });
    expect(await eventually(async () => seen.includes(id1) && seen.includes(id2))).toBe(true);
    await stop();
  });

  it('stores signing keys as opaque encrypted blobs with their status', async () => {
    const kid = uniq('kid');
    await store.putSigningKey({
      kid,
      alg: 'EdDSA',
      publicJwk: { kty: 'OKP', crv: 'Ed25519', x: 'abc' },
      privateEnc: Buffer.from([1, 2, 3, 250]),
      status: 'active',
      retireAt: null,
    });
    expect(await store.updateSigningKey(kid, { status: 'previous', retireAt: new Date(Date.now() + 300_000) })).toBe(
      true,
    );
    const k = (await store.listSigningKeys()).find((x) => x.kid === kid);
    expect(k).toMatchObject({ alg: 'EdDSA', status: 'previous', publicJwk: { crv: 'Ed25519' } });
    expect([...(k?.privateEnc ?? [])]).toEqual([1, 2, 3, 250]);
    expect(k?.retireAt).toBeInstanceOf(Date);
  });
});
