/** The loader: YAML 1.2 strictness, located errors, warnings, and never throwing. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { describe, expect, test } from 'vitest';
import { formatPath, loadPolicyFile, loadPolicyText } from '../../src/policy/load.js';
import { fixturePath, loadErrors, yamlLines } from './helpers.js';

describe('errors are {file, line, column, path, message}', () => {
  test('an unknown key, at the key itself', () => {
    const text = yamlLines(
      'version: "1.0"',
      'policies:',
      '  - name: Default deny',
      '    when: {}',
      '    action: deny',
      '    priority: 999',
      '    severity: high',
    );
    expect(loadErrors(text, 'policy/mcp-security.yaml')).toEqual([
      {
        file: 'policy/mcp-security.yaml',
        line: 7,
        column: 5,
        path: 'policies[0].severity',
        message: 'unknown key "severity"',
      },
    ]);
  });

  test('one error per unknown key, top level too', () => {
    const errors = loadErrors(yamlLines('version: "1.0"', 'rules: []', 'polices: []'));
    expect(errors.map((e) => [e.line, e.column, e.path, e.message])).toEqual([
      [2, 1, 'rules', 'unknown key "rules"'],
      [3, 1, 'polices', 'unknown key "polices"'],
    ]);
  });

  test('a bad value, at the value', () => {
    const text = yamlLines(
      'version: "1.0"',
      'policies:',
      '  - {name: a, when: {labels: [scope:external, BAD]}, action: deny, priority: 1}',
    );
    expect(loadErrors(text)[0]).toMatchObject({ line: 3, column: 47, path: 'policies[0].when.labels[1]' });
  });

  test('a missing key, at the object that lacks it', () => {
    const text = yamlLines('version: "1.0"', 'policies:', '  - name: a', '    when: {}', '    action: deny');
    expect(loadErrors(text)).toEqual([
      expect.objectContaining({
        line: 3,
        column: 5,
        path: 'policies[0].priority',
        message: 'missing required key "priority"',
      }),
    ]);
  });

  test('a bad map key, at the key; odd keys are quoted in the path', () => {
    const text = yamlLines('version: "1.0"', 'tool_overrides:', '  gmail:', '    "send email": {verb: create}');
    expect(loadErrors(text)[0]).toMatchObject({ line: 4, column: 5, path: 'tool_overrides.gmail["send email"]' });
  });

  test('every error at once, in file order', () => {
    const text = yamlLines(
      'version: "1.0"',
      'policies:',
      '  - {name: a, when: {}, action: block, priority: 1}',
      '  - {name: b, when: {verb: execute}, action: deny, priority: 1000}',
    );
    expect(loadErrors(text).map((e) => `${e.line}:${e.column} ${e.path}`)).toEqual([
      '3:33 policies[0].action',
      '4:28 policies[1].when.verb',
      '4:62 policies[1].priority',
    ]);
  });

  test('formatPath', () => {
    expect(formatPath([])).toBe('');
    expect(formatPath(['policies', 2, 'when', 'labels', 0])).toBe('policies[2].when.labels[0]');
    expect(formatPath(['classifiers', 'mock-calendar', 'a.b', 0])).toBe('classifiers.mock-calendar["a.b"][0]');
  });
});

describe('YAML 1.2, strictly', () => {
  test('duplicate keys are rejected with the line of the second one', () => {
    const text = yamlLines('version: "1.0"', 'policies:', '  - name: a', '    when: {}', '    name: b');
    expect(loadErrors(text)).toEqual([
      expect.objectContaining({
        line: 5,
        column: 5,
        path: 'policies[0].name',
        message: 'duplicate key "name" (keys must be unique)',
      }),
    ]);
  });

  test('duplicate top-level keys too (a second `policies:` would silently replace the first)', () => {
    const errors = loadErrors(yamlLines('version: "1.0"', 'policies: []', 'services: {}', 'policies: []'));
    expect(errors[0]).toMatchObject({ line: 4, column: 1, message: 'duplicate key "policies" (keys must be unique)' });
  });

  test('syntax errors carry their position', () => {
    expect(loadErrors(yamlLines('version: "1.0"', 'policies: [', '  - a'))[0]).toMatchObject({ line: 3 });
  });

  test('one document only', () => {
    expect(loadErrors(yamlLines('version: "1.0"', '---', 'version: "1.0"'))[0]?.message).toMatch(/multiple documents/);
  });

  test('a %YAML 1.1 directive is refused (it would turn yes/no into booleans)', () => {
    expect(loadErrors(yamlLines('%YAML 1.1', '---', 'version: "1.0"'))[0]?.message).toMatch(/only YAML 1\.2/);
  });

  test('only core tags', () => {
    expect(loadErrors(yamlLines('version: "1.0"', 'tenant: {k: !!binary aGk=}'))[0]).toMatchObject({
      line: 2,
      path: 'tenant.k',
      message: expect.stringMatching(/tag .*binary is not allowed/),
    });
    expect(loadErrors(yamlLines('version: "1.0"', 'tenant: {k: !custom x}'))[0]?.message).toMatch(/Unresolved tag/);
    expect(loadPolicyText(yamlLines('version: !!str 1.0'), 'f').ok).toBe(true);
  });

  test('keys are scalars', () => {
    expect(loadErrors(yamlLines('version: "1.0"', '? [a, b]', ': 1'))[0]?.message).toBe('a key must be a plain scalar');
  });

  test('an empty document, or one that is not a map', () => {
    expect(loadErrors('')[0]).toMatchObject({ line: 1, column: 1, path: '', message: 'the document is empty' });
    expect(loadErrors('# nothing\n')[0]?.message).toBe('the document is empty');
    expect(loadErrors('- version\n')[0]?.message).toMatch(/expected object/);
  });

  test('the version is the string "1.0"', () => {
    expect(loadErrors('version: 1.0\n')[0]).toMatchObject({
      line: 1,
      column: 10,
      message: 'version must be the string "1.0" (quote it in YAML)',
    });
  });

  test('alias bombs are refused, not expanded', () => {
    const lines = ['version: "1.0"', 'a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 8; i++)
      lines.push(
        `a${i}: &a${i} [${Array(10)
          .fill(`*a${i - 1}`)
          .join(', ')}]`,
      );
    expect(loadErrors(yamlLines(...lines))[0]?.message).toMatch(/alias/i);
  });

  test('aliases still work for ordinary reuse', () => {
    const text = yamlLines(
      'version: "1.0"',
      'limits:',
      '  - {name: a, select: &mail {service: gmail, tool: send_email}, max: 1, per: 1m}',
      '  - {name: b, select: *mail, max: 5, per: 1h}',
    );
    const loaded = loadPolicyText(text, 'f');
    expect(loaded.ok && loaded.policy.limits[1]?.select).toEqual({ service: 'gmail', tool: 'send_email' });
  });

  test('__proto__ is an unknown key, not a prototype', () => {
    const errors = loadErrors(yamlLines('version: "1.0"', '__proto__: {polluted: true}'));
    expect(errors[0]).toMatchObject({ path: '__proto__', message: 'unknown key "__proto__"' });
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });
});

describe('warnings', () => {
  const base = ['version: "1.0"', 'policies:'];

  test('no catch-all rule', () => {
    const loaded = loadPolicyText(
      yamlLines(...base, '  - {name: a, when: {verb: get}, action: allow, priority: 1}'),
      'f',
    );
    expect(loaded.ok && loaded.warnings).toEqual([
      expect.objectContaining({ line: 2, column: 1, path: 'policies', message: expect.stringMatching(/no catch-all/) }),
    ]);
  });

  test('`when: {}` under match: any is no catch-all (it never matches)', () => {
    const rule = '  - {name: a, when: {}, match: any, action: deny, priority: 1}';
    const loaded = loadPolicyText(yamlLines(...base, rule), 'f');
    expect(loaded.ok && loaded.warnings.map((w) => w.message)).toEqual([expect.stringMatching(/no catch-all/)]);
  });

  test('no policies at all', () => {
    const loaded = loadPolicyText(yamlLines('version: "1.0"'), 'f');
    expect(loaded.ok && loaded.warnings.map((w) => w.message)).toEqual([
      'no policies: every tools/call will be denied',
    ]);
  });

  test('a catch-all: no warning', () => {
    const loaded = loadPolicyText(yamlLines(...base, '  - {name: d, when: {}, action: deny, priority: 999}'), 'f');
    expect(loaded.ok && loaded.warnings).toEqual([]);
  });
});

describe('files', () => {
  test('loadPolicyFile reads a file and names it in errors', async () => {
    const loaded = await loadPolicyFile(fixturePath('s1'));
    expect(loaded.ok).toBe(true);
    const dir = mkdtempSync(join(tmpdir(), 'mcpgw-policy-'));
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'version: "1.0"\nnope: 1\n');
    expect(await loadPolicyFile(bad)).toEqual({
      ok: false,
      errors: [{ file: bad, line: 2, column: 1, path: 'nope', message: 'unknown key "nope"' }],
    });
  });

  test('a missing file is an error, not an exception', async () => {
    const loaded = await loadPolicyFile('/nonexistent/mcp-security.yaml');
    expect(loaded).toMatchObject({
      ok: false,
      errors: [{ line: 1, column: 1, message: expect.stringMatching(/^cannot read/) }],
    });
  });

  test('bytes that are not UTF-8 are refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mcpgw-policy-'));
    const file = join(dir, 'latin1.yaml');
    writeFileSync(file, Buffer.from([0x76, 0x65, 0x72, 0x3a, 0x20, 0xe9, 0x0a]));
    expect((await loadPolicyFile(file)).ok).toBe(false);
  });
});

describe('never throws on bad input', () => {
  test('arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (text) => {
        const result = loadPolicyText(text, 'f');
        if (!result.ok) expect(result.errors.length).toBeGreaterThan(0);
      }),
      { numRuns: 300 },
    );
  });

  test('arbitrary YAML-shaped data under known keys', () => {
    const keys = fc.constantFrom(
      'version',
      'tenant',
      'profiles',
      'services',
      'tool_overrides',
      'classifiers',
      'policies',
      'limits',
      'flows',
      'duties',
      'approval',
    );
    fc.assert(
      fc.property(fc.dictionary(keys, fc.jsonValue({ maxDepth: 4 })), (doc) => {
        const result = loadPolicyText(stringify(doc), 'f');
        for (const e of result.ok ? result.warnings : result.errors) {
          expect(e.line).toBeGreaterThanOrEqual(1);
          expect(e.column).toBeGreaterThanOrEqual(1);
        }
      }),
      { numRuns: 300 },
    );
  });
});
