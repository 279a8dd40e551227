import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { requestMac, verifyRequestMac } from '../../src/identity/request-mac.js';

const key = randomBytes(32);
const body = new TextEncoder().encode('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github__x"}}');

describe('request MAC', () => {
  it('is a 43-character base64url HMAC that verifies', () => {
    const mac = requestMac(key, 'dec-1', body);
    expect(mac).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(requestMac(key, 'dec-1', body)).toBe(mac);
    expect(verifyRequestMac(key, 'dec-1', body, mac)).toBe(true);
  });

  it('binds the body', () => {
    const mac = requestMac(key, 'dec-1', body);
    const other = new TextEncoder().encode(
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github__y"}}',
    );
    expect(verifyRequestMac(key, 'dec-1', other, mac)).toBe(false);
    expect(verifyRequestMac(key, 'dec-1', new Uint8Array(), mac)).toBe(false);
    expect(verifyRequestMac(key, 'dec-1', body.subarray(0, body.length - 1), mac)).toBe(false);
  });

  it('binds the decision id', () => {
    const mac = requestMac(key, 'dec-1', body);
    expect(verifyRequestMac(key, 'dec-2', body, mac)).toBe(false);
    expect(verifyRequestMac(key, 'dec-1 ', body, mac)).toBe(false);
  });

  it('binds the key', () => {
    expect(verifyRequestMac(randomBytes(32), 'dec-1', body, requestMac(key, 'dec-1', body))).toBe(false);
  });

  it('works for an empty body', () => {
    const mac = requestMac(key, 'dec-1', new Uint8Array());
    expect(verifyRequestMac(key, 'dec-1', new Uint8Array(), mac)).toBe(true);
  });

  it('refuses tampered, truncated, padded and non-canonical MACs', () => {
    const mac = requestMac(key, 'dec-1', body);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    // 32 bytes in 43 characters leave 2 padding bits in the last one.
    const last = alphabet.indexOf(mac[42] as string);
    const nonCanonical = mac.slice(0, 42) + alphabet[last ^ 1];
    for (const bad of [mac.slice(0, -1), `${mac}=`, `${mac}A`, nonCanonical, '', mac.toUpperCase()]) {
      if (bad === mac) continue;
      expect(verifyRequestMac(key, 'dec-1', body, bad)).toBe(false);
    }
    for (let i = 0; i < mac.length; i++) {
      const flipped = mac.slice(0, i) + (mac[i] === 'A' ? 'B' : 'A') + mac.slice(i + 1);
      expect(verifyRequestMac(key, 'dec-1', body, flipped)).toBe(false);
    }
  });

  it('never confuses two (decision id, body) pairs', () => {
    fc.assert(
      fc.property(fc.string(), fc.uint8Array(), fc.string(), fc.uint8Array(), (d1, b1, d2, b2) => {
        const same = d1 === d2 && Buffer.from(b1).equals(Buffer.from(b2));
        expect(requestMac(key, d1, b1) === requestMac(key, d2, b2)).toBe(same);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses short keys', () => {
    expect(() => requestMac(randomBytes(8), 'd', body)).toThrow(/at least 32 bytes/);
    expect(() => verifyRequestMac(randomBytes(8), 'd', body, 'x')).toThrow(/at least 32 bytes/);
  });
});
