import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AhoCorasick } from '../../src/vault/aho-corasick.js';

/** For every end position, the longest pattern ending there: what `scan` must report. */
function naive(patterns: string[], text: string): [number, number, number][] {
  const out: [number, number, number][] = [];
  for (let end = 1; end <= text.length; end++) {
    let best = -1;
    for (let p = 0; p < patterns.length; p++) {
      const pat = patterns[p] as string;
      if (end >= pat.length && text.startsWith(pat, end - pat.length)) {
        if (best === -1 || pat.length > (patterns[best] as string).length) best = p;
      }
    }
    if (best !== -1) out.push([end, (patterns[best] as string).length, best]);
  }
  return out;
}

function scanAll(ac: AhoCorasick, text: string): [number, number, number][] {
  const out: [number, number, number][] = [];
  ac.scan(text, 0, (end, length, pattern) => out.push([end, length, pattern]));
  return out;
}

function findAll(ac: AhoCorasick, text: string): [number, number, number][] {
  const out: [number, number, number][] = [];
  ac.find(text, (end, length, pattern) => {
    out.push([end, length, pattern]);
  });
  return out;
}

describe('AhoCorasick', () => {
  it('finds overlapping and nested patterns', () => {
    const patterns = ['he', 'she', 'his', 'hers', 'ushers'];
    const ac = new AhoCorasick(patterns);
    expect(scanAll(ac, 'ushers')).toEqual(naive(patterns, 'ushers'));
    expect(scanAll(ac, 'ushers').map(([end, len]) => 'ushers'.slice(end - len, end))).toEqual(['she', 'ushers']);
    expect(ac.test('a his b')).toBe(true);
    expect(ac.test('no match at all')).toBe(false);
    expect(ac.maxLength).toBe(6);
    expect(ac.minLength).toBe(2);
  });

  it('handles characters outside every pattern and non-BMP text', () => {
    const patterns = ['𝄞clef', 'ünï'];
    const ac = new AhoCorasick(patterns);
    const text = 'x𝄞clef ünï 𝄞 clef ün ï';
    expect(scanAll(ac, text)).toEqual(naive(patterns, text));
  });

  it('continues a match across calls through the returned state', () => {
    const ac = new AhoCorasick(['secretvalue']);
    const found: number[] = [];
    let s = ac.scan('xxsecr', 0, (end) => found.push(end));
    s = ac.scan('etval', s, (end) => found.push(end));
    ac.scan('uexx', s, (end) => found.push(end));
    expect(found).toEqual([2]);
  });

  it('refuses empty and duplicate patterns', () => {
    expect(() => new AhoCorasick([''])).toThrow(/empty/);
    expect(() => new AhoCorasick(['abc', 'abc'])).toThrow(/duplicate/);
    expect(new AhoCorasick([]).test('anything')).toBe(false);
  });

  it('agrees with a naive search, with full and with minimal dense tables (property)', () => {
    const alphabet = fc.constantFrom('a', 'b', 'c', 'é', '\ud83d', '\ude00');
    const str = (min: number, max: number) =>
      fc.array(alphabet, { minLength: min, maxLength: max }).map((a) => a.join(''));
    fc.assert(
      fc.property(
        fc.uniqueArray(str(1, 6), { minLength: 1, maxLength: 12 }),
        str(0, 80),
        fc.integer({ min: 1, max: 64 }),
        (patterns, text, budget) => {
          const expected = naive(patterns, text);
          expect(scanAll(new AhoCorasick(patterns), text)).toEqual(expected);
          expect(scanAll(new AhoCorasick(patterns, { denseBudget: budget }), text)).toEqual(expected);
          expect(new AhoCorasick(patterns, { denseBudget: budget }).test(text)).toBe(expected.length > 0);
          expect(findAll(new AhoCorasick(patterns), text)).toEqual(expected);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('skips ahead only where no pattern can start, reporting exactly what a full scan reports (property)', () => {
    // Patterns long enough for the skip filter, texts made of their pieces so that matches, near
    // misses and overlaps are frequent.
    const alphabet = fc.constantFrom('a', 'b', 'c', 'd', 'é');
    const str = (min: number, max: number) =>
      fc.array(alphabet, { minLength: min, maxLength: max }).map((a) => a.join(''));
    fc.assert(
      fc.property(
        fc.uniqueArray(str(6, 14), { minLength: 1, maxLength: 10 }),
        fc.array(fc.oneof(str(1, 5), fc.constant('zzzzzzzzzz')), { maxLength: 60 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        fc.integer({ min: 1, max: 4096 }),
        (patterns, pieces, picks, budget) => {
          let text = pieces.join('');
          for (const p of picks) {
            const at = p % (text.length + 1);
            text = text.slice(0, at) + (patterns[p % patterns.length] as string) + text.slice(at);
          }
          const expected = naive(patterns, text);
          const ac = new AhoCorasick(patterns, { denseBudget: budget });
          expect(findAll(ac, text)).toEqual(expected);
          expect(scanAll(ac, text)).toEqual(expected);
          expect(ac.test(text)).toBe(expected.length > 0);
        },
      ),
      { numRuns: 1500 },
    );
  });

  it('stops when the sink says so', () => {
    const ac = new AhoCorasick(['abcdefgh', 'bcdefghi']);
    const seen: number[] = [];
    ac.find(`${'x'.repeat(40)}abcdefghi${'x'.repeat(40)}abcdefgh`, (end) => {
      seen.push(end);
      return true;
    });
    expect(seen).toEqual([48]);
  });
});
