/** Pure helpers of the state store: the approval digest, approval ids, scope keys, duty entities. */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { argumentsDigest } from '../../src/util/jcs.js';
import { normalizeApprovalPrefix, newApprovalId, APPROVAL_ID_PATTERN } from '../../src/state/ids.js';
import { dutyEntity, scopeKey } from '../../src/state/decide.js';

describe('approval digest', () => {
  // RFC 8785 itself is tested with src/util/jcs.ts; here only what the approval key relies on.
  it('digests params.arguments: key order and number spelling do not matter, values do', () => {
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
