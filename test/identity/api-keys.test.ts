import { createHash } from 'node:crypto';
import { beforeEach, describe, expect, it, vi } from 'vitest';

// randomBytes is wrapped so one test can feed chosen bytes; every other test gets real randomness.
const feed: Buffer[] = [];
vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:crypto')>();
  return {
    ...real,
    randomBytes: (n: number) => (feed.length > 0 ? (feed.shift() as Buffer) : real.randomBytes(n)),
  };
});

const { API_KEY_LENGTH, API_KEY_SCAN_PATTERN, generateApiKey, hashApiKey, looksLikeApiKey, parseApiKey } =
  await import('../../src/identity/api-keys.js');

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

beforeEach(() => {
  feed.length = 0;
});

describe('generateApiKey', () => {
  it.each(['sk', 'ak'] as const)('makes %s keys of the documented shape that parse back', (kind) => {
    const key = generateApiKey(kind);
    expect(key).toMatch(new RegExp(`^mcpgw_${kind}_[0-9A-Za-z]{38}$`));
    expect(key).toHaveLength(API_KEY_LENGTH);
    expect(API_KEY_LENGTH).toBe(47);
    const parsed = parseApiKey(key);
    expect(parsed).toEqual({
      ok: true,
      kind,
      displayId: key.slice(9, 17),
      hash: createHash('sha256').update(key).digest(),
    });
  });

  it('never repeats', () => {
    const keys = new Set(Array.from({ length: 2000 }, () => generateApiKey('sk')));
    expect(keys.size).toBe(2000);
  });

  it('uses every base62 digit about equally often', () => {
    const counts = new Map<string, number>();
    const n = 3000;
    for (let i = 0; i < n; i++) {
      for (const c of generateApiKey('sk').slice(9, 41)) counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    expect(counts.size).toBe(62);
    const expected = (n * 32) / 62;
    for (const c of BASE62) {
      const got = counts.get(c) ?? 0;
      // ±20% is more than 7 standard deviations at this sample size.
      expect(Math.abs(got - expected) / expected).toBeLessThan(0.2);
    }
  });

  it('drops random bytes at or above 248 instead of reducing them modulo 62', () => {
    // 248..255 would map to 0..7 under a plain modulo and favour those digits.
    feed.push(Buffer.from([248, 249, 250, 251, 252, 253, 254, 255, ...Array.from({ length: 32 }, (_, i) => i)]));
    const key = generateApiKey('sk');
    expect(key.slice(9, 41)).toBe(BASE62.slice(0, 32));
  });

  it('asks for more bytes when too many were rejected', () => {
    feed.push(Buffer.alloc(40, 255), Buffer.from(Array.from({ length: 40 }, (_, i) => 61 - (i % 62))));
    const key = generateApiKey('ak');
    expect(parseApiKey(key).ok).toBe(true);
    expect(key.slice(9, 41)).toBe(Array.from({ length: 32 }, (_, i) => BASE62[61 - i]).join(''));
  });
});

describe('parseApiKey', () => {
  it('accepts the fixed test vectors (the checksum format is a contract with secret scanners)', () => {
    // CRC32 of prefix + random, base62 (0-9A-Za-z), left-padded to six; computed independently.
    expect(parseApiKey('mcpgw_sk_0123456789abcdefghijABCDEFGHIJkl1wtOSA')).toMatchObject({
      ok: true,
      kind: 'sk',
      displayId: '01234567',
    });
    expect(parseApiKey('mcpgw_ak_0123456789abcdefghijABCDEFGHIJkl1n3Ega')).toMatchObject({ ok: true, kind: 'ak' });
  });

  it('catches every single-character typo with bad_checksum', () => {
    const key = generateApiKey('sk');
    for (let i = 9; i < key.length; i++) {
      for (const replacement of ['0', 'z', 'Q']) {
        if (key[i] === replacement) continue;
        const typo = key.slice(0, i) + replacement + key.slice(i + 1);
        expect(parseApiKey(typo)).toEqual({ ok: false, code: 'bad_checksum' });
      }
    }
  });

  it('catches swapped neighbours', () => {
    const key = generateApiKey('ak');
    for (let i = 9; i < key.length - 1; i++) {
      if (key[i] === key[i + 1]) continue;
      const swapped = key.slice(0, i) + key[i + 1] + key[i] + key.slice(i + 2);
      expect(parseApiKey(swapped)).toEqual({ ok: false, code: 'bad_checksum' });
    }
  });

  it('binds the kind: relabelling sk as ak breaks the checksum', () => {
    const key = generateApiKey('sk');
    expect(parseApiKey(key.replace('mcpgw_sk_', 'mcpgw_ak_'))).toEqual({ ok: false, code: 'bad_checksum' });
  });

  it.each([
    ['empty', ''],
    ['truncated', 'TRUNC'],
    ['one extra character', 'EXTRA'],
    ['unknown kind', 'mcpgw_xk_0123456789abcdefghijABCDEFGHIJkl1wtOSA'],
    ['upper-case prefix', 'MCPGW_SK_0123456789abcdefghijABCDEFGHIJkl1wtOSA'],
    ['dash in body', 'mcpgw_sk_0123456789abcdefghij-BCDEFGHIJkl1wtOSA'],
    ['non-ASCII', 'mcpgw_sk_0123456789abcdefghijÄBCDEFGHIJkl1wtOSA'],
    ['trailing newline', 'mcpgw_sk_0123456789abcdefghijABCDEFGHIJkl1wtOSA\n'],
    ['bearer prefix', 'Bearer mcpgw_sk_0123456789abcdefghijABCDEFGHIJkl1wtOSA'],
    ['a JWT', 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln'],
  ])('rejects %s as malformed', (_label, input) => {
    const good = 'mcpgw_sk_0123456789abcdefghijABCDEFGHIJkl1wtOSA';
    const s = input === 'TRUNC' ? good.slice(0, -1) : input === 'EXTRA' ? `${good}A` : input;
    expect(parseApiKey(s)).toEqual({ ok: false, code: 'malformed' });
  });

  it('rejects a non-string without throwing', () => {
    expect(parseApiKey(undefined as unknown as string)).toEqual({ ok: false, code: 'malformed' });
  });
});

describe('helpers', () => {
  it('hashApiKey is SHA-256 of the key text', () => {
    const key = generateApiKey('sk');
    const h = hashApiKey(key);
    expect(Buffer.isBuffer(h)).toBe(true);
    expect(h.toString('hex')).toBe(createHash('sha256').update(key, 'utf8').digest('hex'));
  });

  it('looksLikeApiKey tells keys from JWTs', () => {
    expect(looksLikeApiKey(generateApiKey('ak'))).toBe(true);
    expect(looksLikeApiKey('eyJhbGciOiJFUzI1NiJ9.e30.sig')).toBe(false);
  });

  it('API_KEY_SCAN_PATTERN finds keys in text', () => {
    const key = generateApiKey('sk');
    expect(API_KEY_SCAN_PATTERN.exec(`export TOKEN="${key}"\n`)?.[0]).toBe(key);
    expect(API_KEY_SCAN_PATTERN.test('mcpgw_sk_short')).toBe(false);
  });
});
