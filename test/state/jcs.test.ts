/** RFC 8785 canonical JSON and the approval digest (pure functions, no database). */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { argumentsDigest, canonicalize } from '../../src/state/jcs.js';
import { normalizeApprovalPrefix, newApprovalId, APPROVAL_ID_PATTERN } from '../../src/state/ids.js';
import { dutyEntity, scopeKey } from '../../src/state/decide.js';

describe('JCS (RFC 8785)', () => {
  it('sorts keys by UTF-16 code units, at every depth, without whitespace', () => {
    expect(canonicalize({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } })).toBe(
      '{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}',
    );
    // RFC 8785 §3.2.3: "\u20ac" sorts after "\r" and before "\ud83d\ude00" (code units, not code points).
    expect(canonicalize({ '\u20ac': 1, '\r': 2, '\ud83d\ude00': 3, '1': 4, '\u0080': 5, ö: 6 })).toBe(
      '{"\\r":2,"1":4,"\u0080":5,"ö":6,"\u20ac":1,"\ud83d\ude00":3}',
    );
  });

  it('serializes numbers as ECMAScript does, as RFC 8785 §3.2.2.3 prescribes', () => {
    expect(canonicalize([0, -0, 1e21, 1e-7, 333333333.3333333, 4.5, 2 ** 53, -1.5e-10])).toBe(
      '[0,0,1e+21,1e-7,333333333.3333333,4.5,9007199254740992,-1.5e-10]',
    );
    expect(() => canonicalize(Number.NaN)).toThrow();
    expect(() => canonicalize(Infinity)).toThrow();
  });

  it('escapes strings minimally and refuses lone surrogates and non-JSON values', () => {
    expect(canonicalize('\u0000\u001f"\\/\u007f\u2028')).toBe('"\\u0000\\u001f\\"\\\\/\u007f\u2028"');
    expect(canonicalize('\b\t\n\f\r')).toBe('"\\b\\t\\n\\f\\r"');
    expect(() => canonicalize('\ud800')).toThrow(/surrogate/);
    expect(() => canonicalize({ ['\udc00']: 1 })).toThrow(/surrogate/);
    expect(() => canonicalize(10n)).toThrow();
    expect(() => canonicalize(new Date(0))).toThrow();
  });

  it('digests params.arguments: key order does not matter, values do', () => {
    const d = argumentsDigest({ to: 'a', n: 1 });
    expect(d).toBe(createHash('sha256').update('{"n":1,"to":"a"}').digest('hex'));
    expect(argumentsDigest({ n: 1, to: 'a' })).toBe(d);
    expect(argumentsDigest({ n: 1.0, to: 'a' })).toBe(d);
    expect(argumentsDigest({ n: 2, to: 'a' })).not.toBe(d);
  });
});

describe('ids and keys', () => {
  it('approval ids are ap- + 10 Crockford base32 characters', () => {
    const ids = new Set(Array.from({ length: 200 }, newApprovalId));
    expect(ids.size).toBe(200);
    for (const id of ids) expect(id).toMatch(APPROVAL_ID_PATTERN);
  });

  it('normalizes what a human types', () => {
    expect(normalizeApprovalPrefix('ap-7f3k')).toBe('7F3K');
    expect(normalizeApprovalPrefix(' AP-7F3K-9Q2M ')).toBe('7F3K9Q2M');
    expect(normalizeApprovalPrefix('ilo0')).toBe('1100');
    expect(normalizeApprovalPrefix('7F3U')).toBeNull();
    expect(normalizeApprovalPrefix('7F3K9Q2M1X0')).toBeNull();
  });

  it('scope keys cannot collide between users and sessions; entities hash the named fields', () => {
    expect(scopeKey('user', 'x', 's')).toBe('u:x');
    expect(scopeKey('session', 'x', 'x')).toBe('s:x');
    expect(scopeKey('session', 'x', null)).toBeNull();
    expect(scopeKey('global', 'x', null)).toBe('g');
    const e = dutyEntity(['id'], { id: 'p1', other: 1 });
    expect(e).toBe(dutyEntity(['id'], { other: 2, id: 'p1' }));
    expect(e).not.toBe(dutyEntity(['id'], { id: 'p2' }));
    expect(dutyEntity(['id', 'v'], { id: 'p1' })).toBeNull();
    expect(dutyEntity([], { id: 'p1' })).toBeNull();
  });
});
