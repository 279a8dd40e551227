import { createHmac, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { mintSessionId, SESSION_ID_LENGTH, verifySessionId } from '../../src/identity/session.js';

const key = randomBytes(32);

function flipChar(s: string, i: number): string {
  const c = s[i] === 'A' ? 'B' : 'A';
  return s.slice(0, i) + c + s.slice(i + 1);
}

describe('session ids', () => {
  it('have the documented shape and verify for their user', () => {
    const id = mintSessionId(key, 'alice');
    expect(id).toMatch(/^[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}$/);
    expect(id).toHaveLength(SESSION_ID_LENGTH);
    expect(verifySessionId(key, id, 'alice')).toBe(true);
  });

  it('are random', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => mintSessionId(key, 'alice')));
    expect(ids.size).toBe(1000);
  });

  it("refuse another user's session", () => {
    const id = mintSessionId(key, 'alice');
    expect(verifySessionId(key, id, 'bob')).toBe(false);
    expect(verifySessionId(key, id, 'alice ')).toBe(false);
    expect(verifySessionId(key, id, 'Alice')).toBe(false);
  });

  it('refuse a session minted with another key', () => {
    expect(verifySessionId(randomBytes(32), mintSessionId(key, 'alice'), 'alice')).toBe(false);
  });

  it('refuse any single changed character', () => {
    const id = mintSessionId(key, 'alice');
    for (let i = 0; i < id.length; i++) expect(verifySessionId(key, flipChar(id, i), 'alice')).toBe(false);
  });

  it('refuse truncated, extended and re-shaped ids', () => {
    const id = mintSessionId(key, 'alice');
    const [r, m] = id.split('.') as [string, string];
    for (const bad of [
      id.slice(0, -1),
      `${id}A`,
      `${id}=`,
      `${r}.${m}.`,
      `${r}${m}`,
      `${r}:${m}`,
      `${r}.${m.slice(0, -1)}+`,
      `${r}.${m.slice(0, -1)}/`,
      ` ${id}`,
      '',
      '.',
    ]) {
      expect(verifySessionId(key, bad, 'alice')).toBe(false);
    }
    expect(verifySessionId(key, 42 as unknown as string, 'alice')).toBe(false);
  });

  it('refuse a non-canonical base64url spelling of a valid id', () => {
    const id = mintSessionId(key, 'alice');
    // 16 bytes use 128 of the 132 bits of 22 characters: the last character's low 4 bits are
    // padding. Setting one gives another string for the same bytes.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(id[21] as string);
    const variant = id.slice(0, 21) + alphabet[last | 1] + id.slice(22);
    expect(variant).not.toBe(id);
    expect(Buffer.from(variant.slice(0, 22), 'base64url').equals(Buffer.from(id.slice(0, 22), 'base64url'))).toBe(true);
    expect(verifySessionId(key, variant, 'alice')).toBe(false);
  });

  it('frame the user id unambiguously in the MAC', () => {
    // Without a length prefix, random ‖ "ab" and random' ‖ "b" could collide; here the naive MAC
    // over the plain concatenation is not what we compute.
    const id = mintSessionId(key, 'ab');
    const [r] = id.split('.') as [string];
    const naive = createHmac('sha256', key)
      .update(Buffer.concat([Buffer.from(r, 'base64url'), Buffer.from('ab')]))
      .digest('base64url');
    expect(verifySessionId(key, `${r}.${naive}`, 'ab')).toBe(false);
    expect(verifySessionId(key, id, 'a')).toBe(false);
  });

  it('handle any user id', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 300 }), fc.string({ minLength: 1 }), (user, other) => {
        const id = mintSessionId(key, user);
        expect(verifySessionId(key, id, user)).toBe(true);
        if (other !== user) expect(verifySessionId(key, id, other)).toBe(false);
      }),
      { numRuns: 200 },
    );
  });

  it('refuse short keys', () => {
    expect(() => mintSessionId(randomBytes(16), 'alice')).toThrow(/at least 32 bytes/);
    expect(() => verifySessionId(randomBytes(16), 'x', 'alice')).toThrow(/at least 32 bytes/);
  });
});
