/** Merging profiles, overrides, classifiers and extractors (reference §1.3 with DESIGN §6's fixes). */
import { describe, expect, test } from 'vitest';
import { mergePolicy, unresolvedPlaceholders } from '../../src/policy/merge.js';
import type { PolicyFile, ProfileFile } from '../../src/policy/schema.js';
import { mustLoad, policyYaml } from './helpers.js';

const first: ProfileFile = {
  service: 'mail',
  tools: {
    send: {
      verb: 'create',
      openWorldHint: true,
      labels: ['category:communication'],
      classify: [{ field: 'to', contains: '@{company_domain}', set_labels: ['scope:internal'] }],
    },
    read: { verb: 'get', readOnlyHint: true, labels: ['category:communication'] },
  },
};

const second: ProfileFile = {
  service: 'mail',
  tools: { read: { verb: 'list', readOnlyHint: true, idempotentHint: true } },
};

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

function load(extra: Record<string, unknown>): PolicyFile {
  return mustLoad(policyYaml({ tenant: { company_domain: 'acme.com' }, ...extra }));
}

describe('profiles', () => {
  test('in order; a later profile replaces an earlier tool entry whole', () => {
    const { merged } = mergePolicy(load({}), [first, second]);
    expect(merged.tools['mail']?.['read']).toEqual({
      verb: 'list',
      hints: { readOnlyHint: true, idempotentHint: true },
      labels: [],
    });
    expect(merged.tools['mail']?.['send']?.verb).toBe('create');
  });

  test('a tool without a verb has verb null, not a guess', () => {
    const { merged } = mergePolicy(load({}), [{ service: 'x', tools: { thing: { readOnlyHint: true } } }]);
    expect(merged.tools['x']?.['thing']).toEqual({ verb: null, hints: { readOnlyHint: true }, labels: [] });
  });
});

describe('tool_overrides', () => {
  test('each hint given replaces; hints not given are kept', () => {
    const policy = load({ tool_overrides: { mail: { send: { openWorldHint: false, destructiveHint: true } } } });
    expect(mergePolicy(policy, [first]).merged.tools['mail']?.['send']?.hints).toEqual({
      openWorldHint: false,
      destructiveHint: true,
    });
  });

  test('verb replaces only when given', () => {
    const keep = mergePolicy(load({ tool_overrides: { mail: { send: { readOnlyHint: false } } } }), [first]);
    expect(keep.merged.tools['mail']?.['send']?.verb).toBe('create');
    const swap = mergePolicy(load({ tool_overrides: { mail: { send: { verb: 'update' } } } }), [first]);
    expect(swap.merged.tools['mail']?.['send']?.verb).toBe('update');
  });

  test('labels replace, they are not added', () => {
    const replaced = mergePolicy(load({ tool_overrides: { mail: { send: { labels: ['risk:high'] } } } }), [first]);
    expect(replaced.merged.tools['mail']?.['send']?.labels).toEqual(['risk:high']);
    const cleared = mergePolicy(load({ tool_overrides: { mail: { send: { labels: [] } } } }), [first]);
    expect(cleared.merged.tools['mail']?.['send']?.labels).toEqual([]);
  });

  test('an override of a service without a profile creates its entries', () => {
    const { merged } = mergePolicy(
      load({ tool_overrides: { files: { read_text_file: { verb: 'get', labels: ['data:private'] } } } }),
      [],
    );
    expect(merged.tools).toEqual({ files: { read_text_file: { verb: 'get', hints: {}, labels: ['data:private'] } } });
  });
});

describe('classifiers and extractors', () => {
  test("the file's classifiers replace the profile's list for that tool, and only that tool", () => {
    const policy = load({
      classifiers: { mail: { send: [{ field: 'cc', present: true, set_labels: ['data:cc-used'] }] } },
    });
    const { merged } = mergePolicy(policy, [first]);
    expect(merged.classifiers['mail']?.['send']?.rules).toEqual([
      { field: 'cc', present: true, set_labels: ['data:cc-used'] },
    ]);
    expect(merged.classifiers['mail']?.['send']?.origin).toEqual(['classifiers', 'mail', 'send']);
  });

  test('profile classifiers are kept where the file has none, and know where they came from', () => {
    const { merged } = mergePolicy(load({ profiles: ['@x/security-mail'] }), [first]);
    expect(merged.classifiers['mail']?.['send']).toEqual({
      rules: [{ field: 'to', contains: '@acme.com', set_labels: ['scope:internal'] }],
      origin: ['profiles', 0],
    });
  });

  test('value_extractors are set per tool', () => {
    const policy = load({
      value_extractors: { banking: { transfer: [{ field: 'amount', label_prefix: 'arg:amount' }] } },
    });
    expect(mergePolicy(policy, []).merged.extractors).toEqual({
      banking: { transfer: [{ field: 'amount', label_prefix: 'arg:amount' }] },
    });
  });
});

describe('tenant interpolation', () => {
  test('in condition values only: field names and labels stay as validated', () => {
    const policy = load({
      tenant: { company_domain: 'acme.com', team: 'ops' },
      classifiers: {
        mail: {
          send: [
            { field: '{team}', contains: '{team}@{company_domain}', set_labels: ['scope:internal'] },
            { field: 'amount', equals_value: 'x-{team}', set_labels: ['scope:x'] },
          ],
        },
      },
    });
    const rules = mergePolicy(policy, []).merged.classifiers['mail']?.['send']?.rules;
    expect(rules).toEqual([
      { field: '{team}', contains: 'ops@acme.com', set_labels: ['scope:internal'] },
      { field: 'amount', equals_value: 'x-ops', set_labels: ['scope:x'] },
    ]);
  });

  test('into a regex the value goes in as a literal', () => {
    const policy = load({
      classifiers: {
        mail: { send: [{ field: 'to', matches: '[^@]+@{company_domain}', set_labels: ['scope:internal'] }] },
      },
    });
    expect(mergePolicy(policy, []).merged.classifiers['mail']?.['send']?.rules[0]?.matches).toBe('[^@]+@acme\\.com');
  });

  test('an unknown placeholder stays and is noted where it was written', () => {
    const policy = mustLoad(
      policyYaml({
        classifiers: {
          mail: { send: [{ field: 'to', contains: '@{company_domain}', set_labels: ['scope:internal'] }] },
        },
      }),
    );
    const { merged, notes } = mergePolicy(policy, []);
    expect(merged.classifiers['mail']?.['send']?.rules[0]?.contains).toBe('@{company_domain}');
    expect(notes).toEqual([
      {
        at: ['classifiers', 'mail', 'send', 0],
        message: 'mail.send: {company_domain} in contains is not a tenant key, so it stays as written',
      },
    ]);
    expect(unresolvedPlaceholders('{a}{b}{2,3}', { a: 'x' })).toEqual(['b']);
  });
});

test('pure: inputs are not modified', () => {
  const policy = deepFreeze(
    load({
      tool_overrides: { mail: { send: { verb: 'update', labels: ['risk:high'] } } },
      classifiers: { mail: { read: [{ field: 'id', matches: '{company_domain}', set_labels: ['scope:x'] }] } },
    }),
  );
  const profiles = deepFreeze([structuredClone(first), structuredClone(second)]);
  const once = mergePolicy(policy, profiles);
  expect(mergePolicy(policy, profiles)).toEqual(once);
  expect(profiles[0]?.tools['send']?.classify?.[0]?.contains).toBe('@{company_domain}');
});
