/**
 * The path normalizer as a plain function. Every row was observed on Envoy 1.40 (the differential
 * suite re-checks the routable ones against the binary through CheckRequest paths).
 */
import { describe, expect, it } from 'vitest';
import { canonicalizePath, mergeSlashes, normalizeRequestPath } from '../../src/front/builtin/path.js';

const OBSERVED: [string, string | null][] = [
  ['/admin/v1/a/./b', '/admin/v1/a/b'],
  ['/admin/v1/a/../b', '/admin/v1/b'],
  ['/admin/v1/../../../mcp', '/mcp'],
  ['/admin/v1/a/%2E/b', '/admin/v1/a/b'],
  ['/admin/v1/a/.%2e/b', '/admin/v1/b'],
  ['/admin/v1/%41%42%7e%2D%5f%2e', '/admin/v1/AB~-_.'],
  ['/admin/v1/%3a%3A%40%21%24%26%27%28%29%2a%2b%2c%3b%3d', '/admin/v1/%3a%3A%40%21%24%26%27%28%29%2a%2b%2c%3b%3d'],
  ['/admin/v1/%zz%', '/admin/v1/%zz%'],
  ['/admin/v1/%4', '/admin/v1/%4'],
  ['/admin/v1/a%20b', '/admin/v1/a%20b'],
  ['/admin/v1/"<>`{}|^', '/admin/v1/%22%3C%3E%60%7B%7D%7C%5E'],
  ['/admin/v1/\\x', '/admin/v1/x'],
  ['/admin/v1/a\\..\\b', '/admin/v1/b'],
  ['/admin/v1/;a=b/../c', '/admin/v1/c'],
  ['/admin/v1/a//b///c', '/admin/v1/a/b/c'],
  ['/admin/v1/a/.', '/admin/v1/a/'],
  ['/admin/v1/a/..', '/admin/v1/'],
  ['/admin/v1/a/...', '/admin/v1/a/...'],
  ['/admin/v1/a/.b', '/admin/v1/a/.b'],
  ['/admin/v1/x?%zz', '/admin/v1/x?%zz'],
  ['/admin/v1/%00', null],
  ['/admin/v1/%e9', '/admin/v1/%e9'],
  ['/admin/v1/%C3%A9', '/admin/v1/%C3%A9'],
  ["/admin/v1/~!$&'()*+,;=:@", "/admin/v1/~!$&'()*+,;=:@"],
  ['/admin/v1/%7B%7d', '/admin/v1/%7B%7d'],
  ['/admin/v1/%25', '/admin/v1/%25'],
  ['/admin/v1/%2541', '/admin/v1/%2541'],
  ['/admin/v1/.', '/admin/v1/'],
  ['//admin//v1//x', '/admin/v1/x'],
  ['/admin/v1/x/..//y', '/admin/v1/y'],
  ['/admin/v1/a//../b', '/admin/v1/a/b'],
  ['/admin/v1/x?q=/../a/./b//c%41', '/admin/v1/x?q=/../a/./b//c%41'],
  ['/admin/v1/a%2eb', '/admin/v1/a.b'],
  ['/admin/v1/%01', '/admin/v1/%01'],
  ['/admin/v1/%7f', '/admin/v1/%7f'],
  ['/admin/v1/x\\?a\\b', '/admin/v1/x/?a\\b'],
  ['/%2e%2e/admin/v1/z', '/admin/v1/z'],
  ['/admin/v1/%%41', '/admin/v1/%A'],
  ['/admin/v1/%%41%42', '/admin/v1/%25AB'],
  ['/admin/v1/%%41B', '/admin/v1/%25AB'],
  ['/admin/v1/%4%31', '/admin/v1/%2541'],
  ['/admin/v1/%%34%31', '/admin/v1/%2541'],
  ['/admin/v1/%z%41', '/admin/v1/%zA'],
  ['/admin/v1/%%%41', '/admin/v1/%%A'],
  ['/admin/v1/%2%65', '/admin/v1/%252e'],
  ['/admin/v1/%2%65/..', '/admin/v1/'],
  ['/admin/v1/%4%3a', '/admin/v1/%4%3a'],
  ['/admin/v1/%a%62%63', '/admin/v1/%25abc'],
  ['/admin/v1/%%%41%42', '/admin/v1/%%25AB'],
  ['/admin/v1/%/..', '/admin/v1/'],
  ['/admin/v1/%2E%2e%41', '/admin/v1/..A'],
  ['/admin/v1/x%', '/admin/v1/x%'],
  ['/admin/v1/[x]', '/admin/v1/[x]'],
  ['/admin/v1/a?', '/admin/v1/a?'],
  ['/admin/v1/a??b', '/admin/v1/a??b'],
  ['/admin/v1/a%3Fb', '/admin/v1/a%3Fb'],
  ['/admin/v1/a%23b', '/admin/v1/a%23b'],
  ['/admin/v1/x/..%2f', null],
  ['/admin/v1/..', '/admin/'],
  ['/admin/v1', '/admin/v1'],
  ['//', '//'],
  ['/admin/v1/.;x/y', '/admin/v1/y'],
  ['/admin/v1/a/..;x/y', '/admin/v1/y'],
  ['/admin/v1/.;', '/admin/v1/'],
  ['/admin/v1/x.;/y', '/admin/v1/x.;/y'],
  ['/admin/v1/%2e;x/y', '/admin/v1/.;x/y'],
  ['/admin/v1/x/%2e%2e;x/y', '/admin/v1/x/..;x/y'],
  ['/admin/v1/x/.;x;y/z', '/admin/v1/x/z'],
  ['/admin/v1/x/.;x\\y', '/admin/v1/x/'],
  ['/admin/v1/x/..;x\\y', '/admin/v1/'],
  ['/admin/v1/x/...;/y', '/admin/v1/x/...;/y'],
  ['/admin/v1/x/.;..;/y', '/admin/v1/x/y'],
  ['/admin/v1/x/\\.;q/y', '/admin/v1/x/.;q/y'],
  ['/admin/v1/x//.;q/y', '/admin/v1/x/y'],
  ['/admin/v1/x/.;?a=/.;/', '/admin/v1/x/?a=/.;/'],
  ['/admin/v1/.;%2b//%3a%2', '/admin/v1/%3a%2'],
  ['/mcp', '/mcp'],
  ['//mcp', '/mcp'],
  ['/x/../mcp', '/mcp'],
  ['/./mcp', '/mcp'],
  ['/%6dcp', '/mcp'],
  ['/mcp%2Fx', null],
  ['/mcp%5cx', null],
  ['/mcp?x=%2F&y=/../', '/mcp?x=%2F&y=/../'],
];

describe('normalizeRequestPath (escaped slashes, normalize_path, merge_slashes)', () => {
  it.each(OBSERVED)('%s → %s', (input, expected) => {
    expect(normalizeRequestPath(input)).toBe(expected);
  });

  it('returns the very string it was given when there is nothing to do (no copy on the hot path)', () => {
    const p = '/mcp?session=abc';
    expect(normalizeRequestPath(p)).toBe(p);
  });
});

describe('canonicalizePath', () => {
  it('never climbs above the root', () => {
    expect(canonicalizePath('/../../..')).toBe('/');
    expect(canonicalizePath('/a/b/../../../..')).toBe('/');
  });

  it('keeps escapes of reserved characters byte for byte and decodes unreserved ones', () => {
    expect(canonicalizePath('/%2a%2A%7E%7e%30')).toBe('/%2a%2A~~0');
  });

  it('refuses %00', () => {
    expect(canonicalizePath('/a%00b')).toBeNull();
  });
});

describe('mergeSlashes', () => {
  it.each([
    ['/a//b', '/a/b'],
    ['//a//', '/a/'],
    ['/a/b', '/a/b'],
    ['//', '//'],
    ['///', '//'],
  ])('%s → %s', (input, expected) => {
    expect(mergeSlashes(input)).toBe(expected);
  });
});
