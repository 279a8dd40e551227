import { generateKeyPairSync } from 'node:crypto';
import { decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
import {
  createInternalJwtIssuer,
  createInternalJwtVerifier,
  MemoryKeyRing,
  RETIRED_KEY_GRACE_SECONDS,
  type PublicKeySource,
  type RingPublicKey,
} from '../../src/identity/internal-jwt.js';

const T0 = Date.UTC(2030, 0, 1);

async function setup(verifierOptions: { maxEntries?: number; maxAgeMs?: number; clockToleranceSeconds?: number } = {}) {
  let t = T0;
  const now = () => t;
  const ring = await MemoryKeyRing.create({ now });
  const issuer = createInternalJwtIssuer({ ring, now });
  const verifier = createInternalJwtVerifier(ring, { now, maxAgeMs: 10 * 60_000, ...verifierOptions });
  return {
    ring,
    issuer,
    verifier,
    advance: (seconds: number) => (t += seconds * 1000),
    setTime: (ms: number) => (t = ms),
  };
}

/** The same token with one claim changed, under the original signature. */
function tamper(token: string, claims: Record<string, unknown>): string {
  const [h, , s] = token.split('.');
  const payload = Buffer.from(JSON.stringify({ ...decodeJwt(token), ...claims })).toString('base64url');
  return `${h}.${payload}.${s}`;
}

describe('createInternalJwtVerifier', () => {
  it('accepts a good token, and answers a repeat from the cache', async () => {
    const s = await setup();
    const token = await s.issuer.mint({ sub: 'alice', role: 'agent' });
    const first = await s.verifier.verify(token);
    expect(first).toMatchObject({ ok: true, sub: 'alice', role: 'agent', kid: (await s.ring.signingKey()).kid });
    expect(s.verifier.size).toBe(1);
    // The cached answer is the very object of the first check, frozen so no caller can alter it.
    const second = await s.verifier.verify(token);
    expect(second).toBe(first);
    expect(Object.isFrozen(second)).toBe(true);
  });

  it('does not verify the signature again on a hit (a key object swapped under the same kid and x)', async () => {
    const ring = await MemoryKeyRing.create({ now: () => T0 });
    const token = await createInternalJwtIssuer({ ring, now: () => T0 }).mint({ sub: 'alice', role: 'agent' });
    let swap = false;
    const other = generateKeyPairSync('ed25519').publicKey;
    const keys: PublicKeySource = {
      verificationKeys: async () =>
        (await ring.verificationKeys()).map((k): RingPublicKey => (swap ? { ...k, publicKey: other } : k)),
    };
    const verifier = createInternalJwtVerifier(keys, { now: () => T0 });
    expect((await verifier.verify(token)).ok).toBe(true);
    swap = true;
    // Only a full check would notice the swapped key object: the hit does not run one.
    expect((await verifier.verify(token)).ok).toBe(true);
    verifier.clear();
    expect(await verifier.verify(token)).toMatchObject({ ok: false, code: 'bad_signature' });
  });

  it('refuses a cached token once it has expired', async () => {
    const s = await setup({ clockToleranceSeconds: 0 });
    const token = await s.issuer.mint({ sub: 'alice', role: 'agent' });
    const exp = decodeJwt(token).exp ?? 0;
    expect((await s.verifier.verify(token)).ok).toBe(true);
    s.setTime(exp * 1000 - 1);
    expect((await s.verifier.verify(token)).ok).toBe(true);
    s.setTime(exp * 1000);
    expect(await s.verifier.verify(token)).toMatchObject({ ok: false, code: 'expired' });
    expect(s.verifier.size).toBe(0);
  });

  it('grants the clock tolerance past exp only through the full check, and caches nothing then', async () => {
    const s = await setup(); // tolerance 5 s
    const token = await s.issuer.mint({ sub: 'alice', role: 'agent' });
    const exp = decodeJwt(token).exp ?? 0;
    const first = await s.verifier.verify(token);
    s.setTime(exp * 1000 + 2000);
    const late = await s.verifier.verify(token);
    expect(late).toMatchObject({ ok: true });
    expect(late).not.toBe(first);
    expect(s.verifier.size).toBe(0);
    s.setTime(exp * 1000 + 5000);
    expect(await s.verifier.verify(token)).toMatchObject({ ok: false, code: 'expired' });
  });

  it('keeps different tokens apart', async () => {
    const s = await setup();
    const alice = await s.issuer.mint({ sub: 'alice', role: 'agent' });
    const bob = await s.issuer.mint({ sub: 'bob', role: 'admin' });
    expect(await s.verifier.verify(alice)).toMatchObject({ ok: true, sub: 'alice', role: 'agent' });
    expect(await s.verifier.verify(bob)).toMatchObject({ ok: true, sub: 'bob', role: 'admin' });
    expect(await s.verifier.verify(alice)).toMatchObject({ ok: true, sub: 'alice', role: 'agent' });
    expect(await s.verifier.verify(bob)).toMatchObject({ ok: true, sub: 'bob', role: 'admin' });
    expect(s.verifier.size).toBe(2);
  });

  it('refuses a tampered copy of a cached token', async () => {
    const s = await setup();
    const token = await s.issuer.mint({ sub: 'alice', role: 'agent' });
    expect((await s.verifier.verify(token)).ok).toBe(true);
    expect(await s.verifier.verify(tamper(token, { role: 'admin' }))).toMatchObject({
      ok: false,
      code: 'bad_signature',
    });
    expect(await s.verifier.verify(tamper(token, { sub: 'mallory' }))).toMatchObject({
      ok: false,
      code: 'bad_signature',
    });
    const [h, p, sig] = token.split('.') as [string, string, string];
    // A character in the middle: the last ones of a base64url Ed25519 signature partly carry
    // padding bits, so changing them can decode to the very same signature.
    const flipped = `${h}.${p}.${sig.slice(0, 10)}${sig[10] === 'A' ? 'B' : 'A'}${sig.slice(11)}`;
    expect(await s.verifier.verify(flipped)).toMatchObject({ ok: false });
    expect(await s.verifier.verify(`${token}x`)).toMatchObject({ ok: false });
    // The original is unaffected, and the failures were not remembered.
    expect(await s.verifier.verify(token)).toMatchObject({ ok: true, sub: 'alice', role: 'agent' });
    expect(s.verifier.size).toBe(1);
  });

  it('stops accepting a cached token the moment its key leaves the ring', async () => {
    const ring = await MemoryKeyRing.create({ now: () => T0 });
    const token = await createInternalJwtIssuer({ ring, now: () => T0 }).mint({ sub: 'alice', role: 'agent' });
    let trusted = true;
    const keys: PublicKeySource = { verificationKeys: async () => (trusted ? ring.verificationKeys() : []) };
    const verifier = createInternalJwtVerifier(keys, { now: () => T0 });
    expect((await verifier.verify(token)).ok).toBe(true);
    trusted = false;
    expect(await verifier.verify(token)).toMatchObject({ ok: false, code: 'unknown_key' });
    trusted = true;
    expect((await verifier.verify(token)).ok).toBe(true);
  });

  it('refuses a cached token when the key source fails, as the full check does', async () => {
    const ring = await MemoryKeyRing.create({ now: () => T0 });
    const token = await createInternalJwtIssuer({ ring, now: () => T0 }).mint({ sub: 'alice', role: 'agent' });
    let down = false;
    const keys: PublicKeySource = {
      verificationKeys: async () => {
        if (down) throw new Error('db down');
        return ring.verificationKeys();
      },
    };
    const verifier = createInternalJwtVerifier(keys, { now: () => T0 });
    expect((await verifier.verify(token)).ok).toBe(true);
    down = true;
    expect(await verifier.verify(token)).toMatchObject({ ok: false, code: 'jwks_unavailable' });
  });

  it('after a rotation, accepts the old key’s tokens while the ring does, and not after', async () => {
    const s = await setup({ clockToleranceSeconds: 0, maxAgeMs: 24 * 3600_000 });
    const token = await s.issuer.mint({ sub: 'alice', role: 'agent' });
    const first = await s.verifier.verify(token);
    await s.ring.rotate();
    expect(await s.verifier.verify(token)).toBe(first);
    // The token's own expiry comes before the end of the grace period.
    s.advance(RETIRED_KEY_GRACE_SECONDS);
    expect((await s.verifier.verify(token)).ok).toBe(false);
  });

  it('verifies in full again after maxAgeMs, and after clear()', async () => {
    const s = await setup({ maxAgeMs: 1000 });
    const token = await s.issuer.mint({ sub: 'alice', role: 'agent' });
    const a = await s.verifier.verify(token);
    s.advance(0.999);
    expect(await s.verifier.verify(token)).toBe(a);
    s.advance(0.001);
    const b = await s.verifier.verify(token);
    expect(b).toMatchObject({ ok: true, sub: 'alice' });
    expect(b).not.toBe(a);
    s.verifier.clear();
    expect(s.verifier.size).toBe(0);
    expect(await s.verifier.verify(token)).not.toBe(b);
  });

  it('verifies in full again when the clock went back', async () => {
    const s = await setup();
    const token = await s.issuer.mint({ sub: 'alice', role: 'agent' });
    s.advance(10);
    const a = await s.verifier.verify(token);
    s.advance(-1);
    const b = await s.verifier.verify(token);
    expect(b).toMatchObject({ ok: true });
    expect(b).not.toBe(a);
  });

  it('is bounded, evicting the least recently used', async () => {
    const s = await setup({ maxEntries: 2 });
    const [t1, t2, t3] = [
      await s.issuer.mint({ sub: 'u1', role: 'agent' }),
      await s.issuer.mint({ sub: 'u2', role: 'agent' }),
      await s.issuer.mint({ sub: 'u3', role: 'agent' }),
    ] as const;
    const r1 = await s.verifier.verify(t1);
    const r2 = await s.verifier.verify(t2);
    expect(await s.verifier.verify(t1)).toBe(r1); // t1 is now the most recent
    await s.verifier.verify(t3); // evicts t2
    expect(s.verifier.size).toBe(2);
    expect(await s.verifier.verify(t1)).toBe(r1);
    const again = await s.verifier.verify(t2);
    expect(again).toMatchObject({ ok: true, sub: 'u2' });
    expect(again).not.toBe(r2);
    expect(s.verifier.size).toBe(2);
  });

  it('refuses bad options', () => {
    const keys: PublicKeySource = { verificationKeys: async () => [] };
    expect(() => createInternalJwtVerifier(keys, { maxEntries: 0 })).toThrow();
    expect(() => createInternalJwtVerifier(keys, { maxAgeMs: 0 })).toThrow();
  });
});
