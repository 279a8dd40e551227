/**
 * The database-backed key ring: on embedded PGlite (two rings on one store) and on a real
 * PostgreSQL 15 (each ring on its own store and pool, as replicas are), skipped loudly without
 * initdb/pg_ctl and failing then under MCPGW_REQUIRE_ALL=1.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  DbKeyRing,
  SIGNING_KEY_FILE,
  SigningKeyError,
  type DbKeyRingOptions,
  type SigningKeyTable,
} from '../../src/identity/db-key-ring.js';
import {
  createInternalJwtIssuer,
  MemoryKeyRing,
  RETIRED_KEY_GRACE_SECONDS,
  verifyInternalJwt,
  type KeyRing,
} from '../../src/identity/internal-jwt.js';
import { keyRefresher } from '../../src/gateway/index.js';
import { openStore, type Layer2Store } from '../../src/state/index.js';
import { describeWith } from '../helpers/components.js';
import { startPostgres, type PgServer } from '../helpers/postgres.js';

type Kind = 'pglite' | 'postgres';

interface Backend {
  kind: Kind;
  /** `n` handles on one fresh database: the same store on PGlite, separate stores (pools) on PostgreSQL. */
  replicas(n: number): Promise<Layer2Store[]>;
  tmp(): string;
}

/** A clock the rings share, starting at real time (rows carry the database's clock). */
function clock() {
  let offset = 0;
  return { now: () => Date.now() + offset, advance: (seconds: number) => (offset += seconds * 1000) };
}

async function activeKids(store: Layer2Store): Promise<string[]> {
  return (await store.listSigningKeys()).filter((k) => k.status === 'active').map((k) => k.kid);
}

function suite(kind: Kind): void {
  let server: PgServer | null = null;
  let url = '';
  const rings: DbKeyRing[] = [];
  const dirs: string[] = [];
  const auditKey = randomBytes(32);

  const tmp = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'mcpgw-ring-'));
    dirs.push(d);
    return d;
  };
  /** Opened once per suite (opening runs the migrations); each test starts from an empty table. */
  let pool: Layer2Store[] = [];
  const backend: Backend = {
    kind,
    tmp,
    async replicas(n) {
      if (kind === 'pglite') {
        if (pool.length === 0) {
          pool = [
            await openStore({ databaseUrl: null, pgliteDataDir: null, sealer: false, env: {}, home: tmp(), auditKey }),
          ];
        }
        const s = pool[0] as Layer2Store;
        await s.db.query('DELETE FROM signing_keys');
        return Array.from({ length: n }, () => s);
      }
      if (!server) throw new Error('no PostgreSQL server');
      while (pool.length < n) {
        pool.push(await openStore({ databaseUrl: url, sealer: false, env: {}, home: tmp(), auditKey }));
      }
      await pool[0]?.db.query('DELETE FROM signing_keys');
      return pool.slice(0, n);
    },
  };
  const sealingKey = randomBytes(32);
  const open = async (store: SigningKeyTable, opts: Partial<DbKeyRingOptions> = {}): Promise<DbKeyRing> => {
    const ring = await DbKeyRing.open({ store, sealingKey, refreshEveryMs: 0, ...opts });
    rings.push(ring);
    return ring;
  };

  if (kind === 'postgres') {
    beforeAll(async () => {
      server = await startPostgres();
      url = await server.createDatabase();
    });
  }
  afterAll(async () => {
    for (const r of rings) r.close();
    for (const s of pool) await s.close().catch(() => undefined);
    await server?.destroy();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('creates one Ed25519 key on first open, and a second ring on the database adopts it', async () => {
    const [s1, s2] = (await backend.replicas(2)) as [Layer2Store, Layer2Store];
    const a = await open(s1);
    const b = await open(s2);
    const ka = await a.signingKey();
    expect((await b.signingKey()).kid).toBe(ka.kid);
    expect(ka.privateKey.asymmetricKeyType).toBe('ed25519');
    const jwks = await a.jwks();
    expect(jwks).toEqual(await b.jwks());
    expect(jwks.keys).toEqual([
      {
        kty: 'OKP',
        crv: 'Ed25519',
        x: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
        kid: ka.kid,
        alg: 'EdDSA',
        use: 'sig',
      },
    ]);
    const rows = await s1.listSigningKeys();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ kid: ka.kid, alg: 'EdDSA', status: 'active', retireAt: null });
    expect(rows[0]?.publicJwk).toEqual(jwks.keys[0]);
  });

  it('replicas starting at the same moment end up with one current key', async () => {
    const replicas = await backend.replicas(6);
    const opened = await Promise.all(replicas.map((s) => open(s)));
    const kids = await Promise.all(opened.map(async (r) => (await r.signingKey()).kid));
    expect(new Set(kids).size).toBe(1);
    expect(await activeKids(replicas[0] as Layer2Store)).toEqual([kids[0]]);
    expect(await replicas[0]?.listSigningKeys()).toHaveLength(1);
  });

  it('a token minted by one replica verifies on another', async () => {
    const [s1, s2] = (await backend.replicas(2)) as [Layer2Store, Layer2Store];
    const a = await open(s1);
    const b = await open(s2);
    const token = await createInternalJwtIssuer({ ring: a }).mint({ sub: 'alice', role: 'agent' });
    expect(await verifyInternalJwt(b, token)).toMatchObject({ ok: true, sub: 'alice', role: 'agent' });
    // And the other way round.
    const back = await createInternalJwtIssuer({ ring: b }).mint({ sub: 'bob', role: 'approver' });
    expect(await verifyInternalJwt(a, back)).toMatchObject({ ok: true, sub: 'bob', role: 'approver' });
  });

  it('rotation on one replica is seen by the other after reload(); the old key verifies until its grace ends', async () => {
    const c = clock();
    const [s1, s2] = (await backend.replicas(2)) as [Layer2Store, Layer2Store];
    const a = await open(s1, { now: c.now });
    const b = await open(s2, { now: c.now });
    const oldKid = (await a.signingKey()).kid;
    const oldToken = await createInternalJwtIssuer({ ring: a }).mint({ sub: 'alice', role: 'agent' });

    await a.rotate();
    const newKid = (await a.signingKey()).kid;
    expect(newKid).not.toBe(oldKid);
    // b has not looked yet.
    expect((await b.signingKey()).kid).toBe(oldKid);
    await b.reload();
    expect((await b.signingKey()).kid).toBe(newKid);
    expect((await b.jwks()).keys.map((k) => k.kid)).toEqual([newKid, oldKid]);
    expect(await verifyInternalJwt(b, oldToken)).toMatchObject({ ok: true });
    const newToken = await createInternalJwtIssuer({ ring: b }).mint({ sub: 'alice', role: 'agent' });
    expect(await verifyInternalJwt(a, newToken)).toMatchObject({ ok: true, kid: newKid });

    const rows = await s1.listSigningKeys();
    const old = rows.find((r) => r.kid === oldKid);
    expect(old?.status).toBe('previous');
    expect(old?.retireAt?.getTime()).toBeGreaterThan(c.now() + (RETIRED_KEY_GRACE_SECONDS - 5) * 1000);
    expect(old?.retireAt?.getTime()).toBeLessThanOrEqual(c.now() + RETIRED_KEY_GRACE_SECONDS * 1000);
    expect(await activeKids(s1)).toEqual([newKid]);

    // Past the grace period the old key leaves the JWKS, even without a reload.
    c.advance(RETIRED_KEY_GRACE_SECONDS + 1);
    expect((await b.jwks()).keys.map((k) => k.kid)).toEqual([newKid]);
    expect((await a.verificationKeys()).map((k) => k.kid)).toEqual([newKid]);

    // The next change under the lock marks it retired in the table.
    await b.rotate();
    const after = await s2.listSigningKeys();
    expect(after.find((r) => r.kid === oldKid)?.status).toBe('retired');
    expect(after.find((r) => r.kid === newKid)?.status).toBe('previous');
    await a.reload();
    expect((await a.jwks()).keys.map((k) => k.kid)).toEqual([(await b.signingKey()).kid, newKid]);
  });

  it('automatic rotation: replicas checking at once rotate once', async () => {
    const c = clock();
    const replicas = await backend.replicas(4);
    const opened = await Promise.all(replicas.map((s) => open(s, { now: c.now, rotateEveryMs: 3_600_000 })));
    const first = (await opened[0]?.signingKey())?.kid;
    expect(await Promise.all(opened.map((r) => r.rotateIfDue()))).toEqual([false, false, false, false]);

    c.advance(3601);
    const rotated = await Promise.all(opened.map((r) => r.rotateIfDue()));
    expect(rotated.filter(Boolean)).toHaveLength(1);
    const kids = await Promise.all(opened.map(async (r) => (await r.signingKey()).kid));
    expect(new Set(kids).size).toBe(1);
    expect(kids[0]).not.toBe(first);
    const rows = await replicas[0]?.listSigningKeys();
    expect(rows?.map((r) => r.status).sort()).toEqual(['active', 'previous']);
  });

  it('the refresh timer rotates when due and picks up other replicas; close() stops it', async () => {
    const [s1, s2] = (await backend.replicas(2)) as [Layer2Store, Layer2Store];
    const a = await open(s1, { rotateEveryMs: 400, refreshEveryMs: 50 });
    const b = await open(s2, { refreshEveryMs: 50 });
    const first = (await a.signingKey()).kid;
    await vi.waitFor(
      async () => {
        const ka = (await a.signingKey()).kid;
        expect(ka).not.toBe(first);
        expect((await b.signingKey()).kid).toBe(ka);
      },
      { timeout: 5000, interval: 50 },
    );
    a.close();
    b.close();
    const settled = (await a.signingKey()).kid;
    await new Promise((r) => setTimeout(r, 600));
    expect((await s1.listSigningKeys()).filter((r) => r.status === 'active').map((r) => r.kid)).toEqual([settled]);
  });

  it('the database holds only ciphertext: no form of the private keys is in the table', async () => {
    const [store] = (await backend.replicas(1)) as [Layer2Store];
    const ring = await open(store);
    const secrets: { kid: string; forms: string[]; seed: Buffer; pkcs8: Buffer }[] = [];
    const capture = async (): Promise<void> => {
      const { kid, privateKey } = await ring.signingKey();
      const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
      const seed = pkcs8.subarray(pkcs8.length - 32);
      const d = privateKey.export({ format: 'jwk' }).d;
      if (typeof d !== 'string') throw new Error('no d');
      const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
      const pemBody = pem.split('\n').slice(1, -2).join('');
      secrets.push({
        kid,
        seed,
        pkcs8,
        forms: [
          d,
          pemBody,
          pkcs8.toString('hex'),
          seed.toString('hex'),
          seed.toString('base64'),
          pkcs8.toString('base64'),
        ],
      });
    };
    await capture();
    await ring.rotate();
    await capture();

    const dump = await store.db.query<{ row: string; enc: string; raw: Uint8Array }>(
      `SELECT t::text AS row, encode(private_enc, 'hex') AS enc, private_enc AS raw FROM signing_keys t`,
    );
    expect(dump.rows).toHaveLength(2);
    const text = dump.rows
      .map((r) => `${r.row}\n${r.enc}`)
      .join('\n')
      .toLowerCase();
    for (const s of secrets) {
      for (const f of s.forms) expect(text).not.toContain(f.toLowerCase());
      for (const r of dump.rows) {
        const raw = Buffer.from(r.raw);
        expect(raw.indexOf(s.seed)).toBe(-1);
        expect(raw.indexOf(s.pkcs8)).toBe(-1);
      }
    }
    // And each ciphertext is 1 format byte + 12-byte nonce + 48 bytes of PKCS#8 + 16-byte tag.
    for (const r of dump.rows) {
      const raw = Buffer.from(r.raw);
      expect(raw.length).toBe(1 + 12 + 48 + 16);
      expect(raw[0]).toBe(1);
    }
  });

  it('refuses, with a message naming the key file, keys sealed under another signing.key', async () => {
    const [s1, s2] = (await backend.replicas(2)) as [Layer2Store, Layer2Store];
    const homeA = tmp();
    const homeB = tmp();
    const a = await open(s1, { sealingKey: undefined, home: homeA });
    const keyFile = join(homeA, 'keys', SIGNING_KEY_FILE);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(keyFile)).toHaveLength(32);
    // Same key file: fine.
    const again = await open(s2, { sealingKey: undefined, home: homeA });
    expect((await again.signingKey()).kid).toBe((await a.signingKey()).kid);

    // A replica that made its own signing.key (not the shared one) cannot read the keys.
    const err = await open(s2, { sealingKey: undefined, home: homeB }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SigningKeyError);
    const msg = (err as Error).message;
    expect(msg).toContain(join(homeB, 'keys', SIGNING_KEY_FILE));
    expect(msg).toMatch(/cannot be decrypted/);
    expect(msg).toMatch(/same signing\.key/);
    await expect(open(s2, { sealingKey: randomBytes(32) })).rejects.toThrow(/cannot be decrypted with/);
    await expect(open(s2, { sealingKey: randomBytes(16) })).rejects.toThrow(/32 bytes/);
  });

  it('rejects rows altered in the database: a swapped public key, or ciphertext moved to another kid', async () => {
    const [s1] = (await backend.replicas(1)) as [Layer2Store];
    const ring = await open(s1);
    const kid = (await ring.signingKey()).kid;
    const [row] = await s1.listSigningKeys();
    if (!row) throw new Error('no row');

    // Someone with write access to the database publishes their own public key under our kid.
    const foreign = (await (await MemoryKeyRing.create()).jwks()).keys[0];
    await s1.db.query('UPDATE signing_keys SET public_jwk = $2::jsonb WHERE kid = $1', [
      kid,
      JSON.stringify({ ...foreign, kid }),
    ]);
    await expect(ring.reload()).rejects.toThrow(/public key does not match its private key/);
    // The ring keeps serving what it had.
    expect((await ring.signingKey()).kid).toBe(kid);
    await s1.db.query('UPDATE signing_keys SET public_jwk = $2::jsonb WHERE kid = $1', [
      kid,
      JSON.stringify(row.publicJwk),
    ]);
    await ring.reload();

    // A row whose ciphertext was sealed for another kid does not decrypt (the kid is bound in).
    const copyKid = 'A'.repeat(43);
    await s1.putSigningKey({
      kid: copyKid,
      alg: 'EdDSA',
      publicJwk: { ...row.publicJwk, kid: copyKid },
      privateEnc: row.privateEnc,
      status: 'previous',
      retireAt: new Date(Date.now() + 60_000),
    });
    await expect(ring.reload()).rejects.toThrow(new RegExp(`signing key ${copyKid} .*cannot be decrypted`));
    expect((await ring.jwks()).keys.map((k) => k.kid)).toEqual([kid]);
    // Nor does the ring change a table it cannot fully read.
    await expect(ring.rotate()).rejects.toThrow(/cannot be decrypted/);
    expect(await activeKids(s1)).toEqual([kid]);
    expect(await s1.listSigningKeys()).toHaveLength(2);
  });

  it('recovers from a rotation that stopped half way (two active rows)', async () => {
    const c = clock();
    const [s1, s2] = (await backend.replicas(2)) as [Layer2Store, Layer2Store];
    const a = await open(s1, { now: c.now });
    const oldKid = (await a.signingKey()).kid;
    await a.rotate();
    const newKid = (await a.signingKey()).kid;
    // As if the rotating process died after inserting the new key, before demoting the old one.
    await s1.updateSigningKey(oldKid, { status: 'active', retireAt: null });
    expect((await activeKids(s1)).sort()).toEqual([newKid, oldKid].sort());

    // Readers pick the newest, and keep the other published.
    await a.reload();
    expect((await a.signingKey()).kid).toBe(newKid);
    expect((await a.jwks()).keys.map((k) => k.kid)).toEqual([newKid, oldKid]);
    // A ring opening (under the lock) demotes the older one for the grace period.
    const b = await open(s2, { now: c.now });
    expect((await b.signingKey()).kid).toBe(newKid);
    expect(await activeKids(s1)).toEqual([newKid]);
    const old = (await s1.listSigningKeys()).find((r) => r.kid === oldKid);
    expect(old?.status).toBe('previous');
    expect(old?.retireAt).not.toBeNull();
  });

  it('a slow read that started before a rotation never replaces the rotated state', async () => {
    const [store] = (await backend.replicas(1)) as [Layer2Store];
    let hold: (() => void) | null = null;
    const slow: SigningKeyTable = {
      db: store.db,
      putSigningKey: (k) => store.putSigningKey(k),
      updateSigningKey: (kid, change) => store.updateSigningKey(kid, change),
      async listSigningKeys() {
        const rows = await store.listSigningKeys();
        if (hold === null) return rows;
        // This read has its rows; it answers only after the rotation below finished.
        await new Promise<void>((resume) => {
          const release = hold;
          hold = null;
          release?.();
          setTimeout(resume, 200);
        });
        return rows;
      },
    };
    const ring = await open(slow);
    const before = (await ring.signingKey()).kid;
    const reading = new Promise<void>((r) => (hold = r));
    const reload = ring.reload();
    await reading;
    await ring.rotate();
    const rotated = (await ring.signingKey()).kid;
    expect(rotated).not.toBe(before);
    await reload;
    expect((await ring.signingKey()).kid).toBe(rotated);
  });

  it('fits the KeyRing contract and the gateway key refresher', async () => {
    const [s1] = (await backend.replicas(1)) as [Layer2Store];
    const ring: KeyRing & { reload(): Promise<void> } = await open(s1);
    const refresh = keyRefresher(ring);
    expect(await refresh()).toBe(true);
  });
}

describe('DbKeyRing [pglite]', () => suite('pglite'));
describeWith(['initdb', 'pg_ctl'], 'DbKeyRing [postgres]', () => suite('postgres'));
