import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';

// timingSafeEqual is wrapped in a spy so the tests can see that the accept decision uses it.
const tse = vi.hoisted(() => ({ calls: [] as Array<[Buffer, Buffer]> }));
vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:crypto')>();
  return {
    ...real,
    timingSafeEqual: (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
      tse.calls.push([
        Buffer.from(a.buffer, a.byteOffset, a.byteLength),
        Buffer.from(b.buffer, b.byteOffset, b.byteLength),
      ]);
      return real.timingSafeEqual(a, b);
    },
  };
});

const { generateApiKey, hashApiKey } = await import('../../src/identity/api-keys.js');
const {
  authenticateApiKey,
  IdentityFileError,
  isValidUserId,
  keyKindAllowsRole,
  loadIdentityFile,
  MemoryIdentityStore,
  parseIdentityDocument,
} = await import('../../src/identity/store.js');
type IdentityStore = import('../../src/identity/store.js').IdentityStore;

beforeEach(() => {
  tse.calls.length = 0;
});

function storeWithUsers() {
  const store = new MemoryIdentityStore();
  store.addUser({ id: 'bot', role: 'agent', grants: { github: ['*'] } });
  store.addUser({ id: 'owner', role: 'admin', grants: {}, email: 'owner@example.com' });
  store.addUser({ id: 'alice', role: 'approver', grants: {} });
  const botKey = generateApiKey('sk');
  const ownerKey = generateApiKey('ak');
  store.addKeyHash('bot', 'sk', hashApiKey(botKey));
  store.addKeyHash('owner', 'ak', hashApiKey(ownerKey));
  return { store, botKey, ownerKey };
}

describe('MemoryIdentityStore', () => {
  it('finds the principal and key kind by hash', async () => {
    const { store, botKey, ownerKey } = storeWithUsers();
    expect(await store.findByApiKeyHash(hashApiKey(botKey))).toEqual({
      principal: { id: 'bot', role: 'agent', grants: { github: ['*'] } },
      keyKind: 'sk',
    });
    expect(await store.findByApiKeyHash(hashApiKey(ownerKey))).toMatchObject({
      principal: { id: 'owner', role: 'admin', email: 'owner@example.com' },
      keyKind: 'ak',
    });
  });

  it('decides a hit with timingSafeEqual over the full stored and presented hashes', async () => {
    const { store, botKey } = storeWithUsers();
    const probe = hashApiKey(botKey);
    await store.findByApiKeyHash(probe);
    expect(tse.calls).toHaveLength(1);
    const [stored, presented] = tse.calls[0] as [Buffer, Buffer];
    expect(stored.equals(probe)).toBe(true);
    expect(presented.equals(probe)).toBe(true);
    expect(stored.length).toBe(32);
  });

  it('returns null for unknown, short and long hashes', async () => {
    const { store } = storeWithUsers();
    expect(await store.findByApiKeyHash(hashApiKey(generateApiKey('sk')))).toBeNull();
    expect(await store.findByApiKeyHash(Buffer.alloc(31))).toBeNull();
    expect(await store.findByApiKeyHash(Buffer.alloc(33))).toBeNull();
    expect(await store.findByApiKeyHash('deadbeef' as unknown as Buffer)).toBeNull();
  });

  it('hands out copies, so callers cannot change the store', async () => {
    const { store, botKey } = storeWithUsers();
    const hit = await store.findByApiKeyHash(hashApiKey(botKey));
    hit?.principal.grants['github']?.push('evil');
    (hit?.principal as { role: string }).role = 'admin';
    expect(await store.findUser('bot')).toEqual({ id: 'bot', role: 'agent', grants: { github: ['*'] } });
    const grants = { files: ['read'] };
    store.setGrants('bot', grants);
    grants.files.push('write');
    expect((await store.findUser('bot'))?.grants).toEqual({ files: ['read'] });
  });

  it('also copies the stored hash, so a caller reusing its buffer cannot alter it', async () => {
    const store = new MemoryIdentityStore();
    store.addUser({ id: 'bot', role: 'agent', grants: {} });
    const key = generateApiKey('sk');
    const h = hashApiKey(key);
    store.addKeyHash('bot', 'sk', h);
    h.fill(0);
    expect(await store.findByApiKeyHash(hashApiKey(key))).not.toBeNull();
  });

  it('refuses keys whose kind does not fit the role', () => {
    const { store } = storeWithUsers();
    expect(() => store.addKeyHash('bot', 'ak', hashApiKey(generateApiKey('ak')))).toThrow(/cannot belong to bot/);
    expect(() => store.addKeyHash('owner', 'sk', hashApiKey(generateApiKey('sk')))).toThrow(/role is admin/);
    expect(() => store.addKeyHash('alice', 'sk', hashApiKey(generateApiKey('sk')))).toThrow();
    expect(() => store.addKeyHash('alice', 'ak', hashApiKey(generateApiKey('ak')))).not.toThrow();
    expect(keyKindAllowsRole('sk', 'agent')).toBe(true);
    expect(keyKindAllowsRole('ak', 'approver')).toBe(true);
    expect(keyKindAllowsRole('ak', 'agent')).toBe(false);
  });

  it('refuses unknown users, duplicate users, duplicate hashes and bad hashes', () => {
    const { store, botKey } = storeWithUsers();
    expect(() => store.addKeyHash('nobody', 'sk', hashApiKey(generateApiKey('sk')))).toThrow(/unknown user/);
    expect(() => store.addUser({ id: 'bot', role: 'agent', grants: {} })).toThrow(/already exists/);
    expect(() => store.addKeyHash('bot', 'sk', hashApiKey(botKey))).toThrow(/already registered/);
    expect(() => store.addKeyHash('bot', 'sk', Buffer.alloc(20))).toThrow(/32 bytes/);
  });

  it('validates principals and grants', async () => {
    const store = new MemoryIdentityStore();
    expect(() => store.addUser({ id: 'has space', role: 'agent', grants: {} })).toThrow(/user ids/);
    expect(() => store.addUser({ id: 'x', role: 'root' as 'admin', grants: {} })).toThrow(/invalid principal/);
    expect(() => store.addUser({ id: 'x', role: 'agent', grants: { 'Bad Service': ['*'] } })).toThrow(/service names/);
    store.addUser({ id: 'x', role: 'agent', grants: {} });
    const proto = JSON.parse('{"__proto__": ["*"]}') as Record<string, string[]>;
    // zod drops a `__proto__` key instead of copying it, so it can neither pollute nor grant anything.
    store.setGrants('x', proto);
    expect(Object.keys((await store.findUser('x'))?.grants ?? { bad: 1 })).toEqual([]);
    expect(() => store.setGrants('x', { github: [''] })).toThrow(/invalid grants/);
    expect(() => store.setGrants('nobody', {})).toThrow(/unknown user/);
  });

  it('removeUser drops the user and their keys; removeKeyHash revokes one key', async () => {
    const { store, botKey, ownerKey } = storeWithUsers();
    expect(store.removeUser('bot')).toBe(true);
    expect(await store.findByApiKeyHash(hashApiKey(botKey))).toBeNull();
    expect(await store.findUser('bot')).toBeNull();
    expect(store.removeKeyHash(hashApiKey(ownerKey))).toBe(true);
    expect(await store.findByApiKeyHash(hashApiKey(ownerKey))).toBeNull();
    expect(await store.findUser('owner')).not.toBeNull();
  });

  it('isValidUserId accepts IdP subjects and refuses header-unsafe ids', () => {
    for (const ok of ['owner', 'f81d4fae-7dec-11d0-a765-00a0c91e6bf6', 'auth0|123', 'a@b.example']) {
      expect(isValidUserId(ok)).toBe(true);
    }
    for (const bad of ['', 'a b', 'a\r\nx-mcpgw-user: admin', 'é', 'x'.repeat(257), 42, null]) {
      expect(isValidUserId(bad)).toBe(false);
    }
  });
});

describe('authenticateApiKey', () => {
  it('resolves a good key to its principal', async () => {
    const { store, botKey } = storeWithUsers();
    const r = await authenticateApiKey(store, botKey);
    expect(r).toMatchObject({ ok: true, keyKind: 'sk', displayId: botKey.slice(9, 17), principal: { id: 'bot' } });
  });

  it('rejects typos and junk without asking the store', async () => {
    const { store, botKey } = storeWithUsers();
    const spy = vi.spyOn(store, 'findByApiKeyHash');
    const last = botKey.at(-1) === 'A' ? 'B' : 'A';
    expect(await authenticateApiKey(store, botKey.slice(0, -1) + last)).toEqual({ ok: false, code: 'bad_checksum' });
    expect(await authenticateApiKey(store, 'hunter2')).toEqual({ ok: false, code: 'malformed' });
    expect(spy).not.toHaveBeenCalled();
  });

  it('reports an unknown but well-formed key', async () => {
    const { store } = storeWithUsers();
    expect(await authenticateApiKey(store, generateApiKey('ak'))).toEqual({ ok: false, code: 'unknown_key' });
  });

  it('refuses a store answer whose kind or role contradicts the presented key', async () => {
    const key = generateApiKey('sk');
    const lying = (keyKind: 'sk' | 'ak', role: 'agent' | 'admin'): IdentityStore => ({
      findByApiKeyHash: async () => ({ principal: { id: 'x', role, grants: {} }, keyKind }),
      findUser: async () => null,
    });
    expect(await authenticateApiKey(lying('ak', 'agent'), key)).toEqual({ ok: false, code: 'kind_mismatch' });
    expect(await authenticateApiKey(lying('sk', 'admin'), key)).toEqual({ ok: false, code: 'kind_mismatch' });
    expect((await authenticateApiKey(lying('sk', 'agent'), key)).ok).toBe(true);
  });
});

describe('identity file', () => {
  const bot = generateApiKey('sk');
  const owner = generateApiKey('ak');
  const hex = (k: string) => hashApiKey(k).toString('hex');
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mcpgw-identities-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads YAML', async () => {
    const path = join(dir, 'identities.yaml');
    await writeFile(
      path,
      [
        'users:',
        '  - id: bot',
        '    role: agent',
        '    grants: {github: ["*"], files: [read_text_file]}',
        `    apiKeySha256: [${hex(bot)}]`,
        '  - id: owner',
        '    role: admin',
        '    email: owner@example.com',
        `    apiKeySha256: ["ak:${hex(owner).toUpperCase()}"]`,
        '  - id: carol',
        '    role: approver',
        '',
      ].join('\n'),
    );
    const store = await loadIdentityFile(path);
    expect(await authenticateApiKey(store, bot)).toMatchObject({
      ok: true,
      principal: { id: 'bot', role: 'agent', grants: { github: ['*'], files: ['read_text_file'] } },
    });
    expect(await authenticateApiKey(store, owner)).toMatchObject({
      ok: true,
      keyKind: 'ak',
      principal: { id: 'owner' },
    });
    expect(await store.findUser('carol')).toEqual({ id: 'carol', role: 'approver', grants: {} });
  });

  it('loads JSON', async () => {
    const path = join(dir, 'identities.json');
    await writeFile(
      path,
      JSON.stringify({ users: [{ id: 'bot', role: 'agent', grants: {}, apiKeySha256: [`sk:${hex(bot)}`] }] }),
    );
    const store = await loadIdentityFile(path);
    expect((await authenticateApiKey(store, bot)).ok).toBe(true);
  });

  function issuesOf(text: string): Array<{ path: string; message: string; line?: number }> {
    try {
      parseIdentityDocument(text, 'ids.yaml');
    } catch (err) {
      expect(err).toBeInstanceOf(IdentityFileError);
      return (err as InstanceType<typeof IdentityFileError>).issues;
    }
    throw new Error('expected the document to be refused');
  }

  it('refuses an sk key on an admin and an ak key on an agent', () => {
    expect(issuesOf(`users: [{id: owner, role: admin, apiKeySha256: ["sk:${hex(bot)}"]}]`)).toEqual([
      expect.objectContaining({ path: 'users.0.apiKeySha256.0', message: expect.stringMatching(/mcpgw_sk_.*admin/) }),
    ]);
    expect(issuesOf(`users: [{id: bot, role: agent, apiKeySha256: ["ak:${hex(owner)}"]}]`)[0]?.message).toMatch(
      /mcpgw_ak_ key cannot belong to role agent/,
    );
  });

  it('refuses duplicate users and a hash listed twice', () => {
    expect(issuesOf('users: [{id: a, role: agent}, {id: a, role: agent}]')[0]?.message).toMatch(/duplicate user id a/);
    const twice = `users: [{id: a, role: agent, apiKeySha256: [${hex(bot)}]}, {id: b, role: agent, apiKeySha256: [${hex(bot)}]}]`;
    expect(issuesOf(twice)[0]?.message).toMatch(/already listed for a/);
  });

  it('refuses duplicate YAML keys with a line number', () => {
    const issues = issuesOf('users:\n  - id: a\n    role: agent\n    role: admin\n');
    expect(issues[0]?.line).toBe(4);
  });

  it.each([
    ['unknown field', 'users: [{id: a, role: agent, password: x}]'],
    ['unknown top-level field', 'users: []\nextra: 1'],
    ['bad role', 'users: [{id: a, role: root}]'],
    ['short hash', 'users: [{id: a, role: agent, apiKeySha256: [abcd]}]'],
    ['bad kind prefix', `users: [{id: a, role: agent, apiKeySha256: ["xk:${'0'.repeat(64)}"]}]`],
    ['bad email', 'users: [{id: a, role: agent, email: not-an-address}]'],
    ['bad service', 'users: [{id: a, role: agent, grants: {GitHub: ["*"]}}]'],
    ['grants not a list', 'users: [{id: a, role: agent, grants: {github: "*"}}]'],
    ['no users', 'people: []'],
  ])('refuses %s', (_label, text) => {
    expect(issuesOf(text).length).toBeGreaterThan(0);
  });

  it('names the file in the error message', () => {
    expect(() => parseIdentityDocument('users: [{id: a, role: root}]', '/etc/mcpgw/ids.yaml')).toThrow(
      /\/etc\/mcpgw\/ids\.yaml: users\.0\.role/,
    );
  });
});
