/** The compiler: Layer 1 data, Layer 2 rules, approval defaults, revision, warnings. */
import { RE2 } from 're2-wasm';
import { describe, expect, test } from 'vitest';
import {
  APPROVAL_DEFAULTS,
  approvalSettingsFor,
  canonicalJson,
  compilePolicy,
  compilePolicyFile,
  compilePolicyText,
} from '../../src/policy/compile.js';
import { durationToSeconds, parseDuration } from '../../src/policy/duration.js';
import { layer1DataProblems } from '../../src/policy/layer1-data-schema.js';
import { anchorPattern, globToPattern, quoteMeta, re2Error } from '../../src/policy/regex.js';
import { compileFixture, fixturePath, mustCompile, mustLoad, policyYaml, yamlLines } from './helpers.js';

const FIXTURES = ['upstream-example', 'design-example', 'catalog', 's1', 's2', 's3', 's4', 'fallback', 'acme-gmail'];
const rule = (name: string, priority: number, extra: Record<string, unknown> = {}) => ({
  name,
  when: {},
  action: 'allow',
  priority,
  ...extra,
});

function re2Matches(pattern: string, text: string): boolean {
  return new RE2(pattern, 'u').test(text);
}

describe('rules', () => {
  test('sorted by priority; ties keep file order; index is the position in the file', () => {
    const { data } = mustCompile(
      policyYaml({
        policies: [
          rule('c', 50, { when: { verb: 'get' } }),
          rule('a', 10, { when: { verb: 'list' } }),
          rule('d', 50, { when: { verb: 'create' } }),
          rule('b', 10, { when: { verb: 'update' } }),
          rule('e', 999),
          rule('f', 0, { when: { verb: 'delete' } }),
        ],
      }),
    );
    expect(data.rules.map((r) => [r.name, r.priority, r.index])).toEqual([
      ['f', 0, 5],
      ['a', 10, 1],
      ['b', 10, 3],
      ['c', 50, 0],
      ['d', 50, 2],
      ['e', 999, 4],
    ]);
  });

  test('shape: npl_evaluate → require_approval, defaults filled, when as written', () => {
    const { data } = mustCompile(
      policyYaml({
        policies: [
          {
            name: 'approve',
            when: { labels: ['scope:external', 'scope:external'], openWorldHint: true, verb: 'create' },
            action: 'npl_evaluate',
            approvers: ['compliance', 'legal'],
            timeout: '60m',
            priority: 10,
          },
          rule('rest', 999, { match: 'all' }),
        ],
      }),
    );
    expect(data.rules).toEqual([
      {
        name: 'approve',
        index: 0,
        priority: 10,
        match: 'all',
        when: { openWorldHint: true, verb: 'create', labels: ['scope:external'] },
        action: 'require_approval',
        approvers: ['compliance', 'legal'],
        timeout: '60m',
      },
      { name: 'rest', index: 1, priority: 999, match: 'all', when: {}, action: 'allow', approvers: [], timeout: null },
    ]);
  });
});

describe('catalog: only services:', () => {
  const text = policyYaml({
    tenant: { company_domain: 'acme.com' },
    profiles: ['@openclaw/security-gmail'],
    services: {
      github: { transport: 'stdio', command: 'gh-mcp' },
      files: { transport: 'stdio', command: 'fs-mcp', enabled: false },
      calendar: {
        transport: 'http',
        url: 'http://127.0.0.1:9000/mcp',
        tools: ['list_events', 'create_event', 'list_events'],
      },
    },
    tool_overrides: { banking: { transfer: { verb: 'create' } } },
    policies: [rule('all', 999)],
  });

  test('enabled defaults to true, suspended is false, tools is the allow-list or null', () => {
    expect(mustCompile(text).data.catalog).toEqual({
      calendar: { enabled: true, suspended: false, tools: ['create_event', 'list_events'] },
      files: { enabled: false, suspended: false, tools: null },
      github: { enabled: true, suspended: false, tools: null },
    });
  });

  test('a service known only from profiles or overrides is not in the catalog, and apply says so', () => {
    const result = compilePolicyText(text, 'p.yaml');
    if (!result.ok) throw new Error('expected to compile');
    expect(Object.keys(result.compiled.data.catalog)).not.toContain('gmail');
    expect(Object.keys(result.compiled.data.catalog)).not.toContain('banking');
    expect(result.compiled.data.tools['gmail']).toBeDefined();
    const line = (key: string) => text.split('\n').findIndex((l) => l.startsWith(key)) + 1;
    expect(result.warnings.map((w) => [w.line, w.path, w.message])).toEqual([
      [
        line('profiles:') + 1,
        'profiles[0]',
        '@openclaw/security-gmail: service "gmail" is not in services:, so its calls are denied',
      ],
      [
        line('tool_overrides:') + 1,
        'tool_overrides.banking',
        'service "banking" is not in services:, so its calls are denied',
      ],
    ]);
  });

  test('classification of a tool outside the allow-list is pointed out', () => {
    const { warnings } = mustCompile(
      policyYaml({
        services: { calendar: { transport: 'stdio', command: 'x', tools: ['list_events'] } },
        tool_overrides: { calendar: { delete_event: { destructiveHint: true } } },
        policies: [rule('all', 999)],
      }),
    );
    expect(warnings.map((w) => w.message)).toEqual([
      'tool "delete_event" is not in services.calendar.tools, so its calls are denied',
    ]);
  });
});

describe('classifiers', () => {
  test('each condition becomes one op', () => {
    const { data } = mustCompile(
      policyYaml({
        tenant: { company_domain: 'acme.com' },
        classifiers: {
          mail: {
            send: [
              { field: 'to', contains: '@{company_domain}', set_labels: ['scope:internal'] },
              { field: 'to', not_contains: 'a.b*', set_labels: ['scope:external', 'scope:external'] },
              { field: 'bcc', present: true, set_labels: ['data:bcc-used'] },
              { field: 'cc', present: false, set_labels: ['data:no-cc'] },
              { field: 'amount', greater_than: 1000, set_labels: ['constraint:high-value'] },
              { field: 'amount', less_than: 10, set_labels: ['constraint:micro-payment'] },
              { field: 'currency', equals_value: 'BTC', set_labels: ['constraint:crypto'] },
              { field: 'count', equals_value: 3, set_labels: ['constraint:three'] },
              { field: 'to', matches: 'ceo|cfo@{company_domain}', set_labels: ['risk:executive'] },
            ],
          },
        },
      }),
    );
    expect(data.classifiers['mail']?.['send']).toEqual([
      { field: 'to', op: 'contains', value: '@acme.com', labels: ['scope:internal'] },
      { field: 'to', op: 'not_contains', value: 'a.b*', labels: ['scope:external'] },
      { field: 'bcc', op: 'present', labels: ['data:bcc-used'] },
      { field: 'cc', op: 'absent', labels: ['data:no-cc'] },
      { field: 'amount', op: 'greater_than', value: 1000, labels: ['constraint:high-value'] },
      { field: 'amount', op: 'less_than', value: 10, labels: ['constraint:micro-payment'] },
      { field: 'currency', op: 'equals', value: 'BTC', labels: ['constraint:crypto'] },
      { field: 'count', op: 'equals', value: 3, labels: ['constraint:three'] },
      { field: 'to', op: 'matches', value: '^(?:ceo|cfo@acme\\.com)$', labels: ['risk:executive'] },
    ]);
  });

  test('matches is anchored around the whole pattern, alternation included', () => {
    const pattern = anchorPattern('ceo|cfo');
    expect(re2Matches(pattern, 'ceo')).toBe(true);
    expect(re2Matches(pattern, 'ceo@x')).toBe(false);
    expect(re2Matches(pattern, 'x-cfo')).toBe(false);
  });

  test('extractors', () => {
    expect(compileFixture('s4').data.extractors).toEqual({
      banking: {
        transfer: [
          { field: 'amount', prefix: 'arg:amount' },
          { field: 'currency', prefix: 'arg:currency' },
        ],
      },
    });
  });
});

describe('selectors: globs → anchored RE2', () => {
  test.each([
    ['gmail', '^gmail$', ['gmail'], ['gmail2', 'xgmail']],
    ['send_*', '^send_.*$', ['send_email', 'send_'], ['resend_email']],
    ['*', '^.*$', ['', 'anything'], []],
    ['a.b', '^a\\.b$', ['a.b'], ['aXb']],
    ['data:*', '^data:.*$', ['data:private', 'data:pii:ssn'], ['metadata:x']],
    ['*:external', '^.*:external$', ['scope:external'], ['scope:external-ish']],
  ])('%s → %s', (glob, pattern, yes, no) => {
    expect(globToPattern(glob)).toBe(pattern);
    expect(re2Error(pattern)).toBeNull();
    for (const s of yes) expect(re2Matches(pattern, s), s).toBe(true);
    for (const s of no) expect(re2Matches(pattern, s), s).toBe(false);
  });

  test('every RE2 operator is escaped', () => {
    const literal = '\\.+*?()|[]{}^$';
    expect(re2Matches(`^${quoteMeta(literal)}$`, literal)).toBe(true);
  });

  test('compiled into the data, keys only when given', () => {
    const { data } = mustCompile(
      policyYaml({
        limits: [
          {
            name: 'l',
            select: {
              service: 'g*',
              tool: 'send_*',
              verb: 'create',
              labels: ['scope:*'],
              hints: { readOnlyHint: false },
            },
            max: 10,
            per: '1h',
          },
        ],
        flows: [{ name: 'f', after: { labels: ['data:private'] }, then: { service: 'gmail' } }],
        policies: [rule('all', 999)],
      }),
    );
    expect(data.layer2.limits).toEqual([
      {
        name: 'l',
        select: {
          service: '^g.*$',
          tool: '^send_.*$',
          verb: '^create$',
          labels: ['^scope:.*$'],
          hints: { readOnlyHint: false },
        },
      },
    ]);
    expect(data.layer2.flows).toEqual([
      { name: 'f', after: { labels: ['^data:private$'] }, then: { service: '^gmail$' } },
    ]);
  });
});

describe('Layer 2 rules and approval', () => {
  test('durations in seconds; names as keys', () => {
    const { layer2 } = compileFixture('design-example');
    expect(layer2).toEqual({
      limits: { 'mail burst': { name: 'mail burst', max: 10, perSeconds: 3600, scope: 'user', action: 'deny' } },
      budgets: { transfers: { name: 'transfers', max: 3, scope: 'user' } },
      preconditions: { 'market open': { name: 'market open', require: { market_status: 'open' } } },
      flows: {
        'no exfiltration after private reads': {
          name: 'no exfiltration after private reads',
          scope: 'user',
          ttlSeconds: 86_400,
          action: 'deny',
        },
      },
      duties: { 'four eyes on payouts': { name: 'four eyes on payouts', kind: 'four_eyes', entity: ['payout_id'] } },
    });
  });

  test('a flow without ttl lasts until cleared; precondition values are compared as strings', () => {
    const select = { service: 'x' };
    const { layer2 } = mustCompile(
      policyYaml({
        flows: [{ name: 'f', after: select, then: select, scope: 'session', action: 'require_approval' }],
        preconditions: [{ name: 'p', select, require: { open: true, level: 3, zone: 'eu' } }],
      }),
    );
    expect(layer2.flows['f']).toEqual({ name: 'f', scope: 'session', ttlSeconds: null, action: 'require_approval' });
    expect(layer2.preconditions['p']?.require).toEqual({ level: '3', open: 'true', zone: 'eu' });
  });

  test('approval defaults, and the file overriding them', () => {
    expect(mustCompile(policyYaml({})).approval).toEqual(APPROVAL_DEFAULTS);
    expect(APPROVAL_DEFAULTS).toEqual({
      consumeWithinSeconds: 900,
      maxPendingPerUser: 20,
      waitSeconds: 0,
      timeoutSeconds: 86_400,
    });
    const approval = { consume_within: '5m', max_pending_per_user: 3, wait: '10s', timeout: '2h' };
    expect(mustCompile(policyYaml({ approval })).approval).toEqual({
      consumeWithinSeconds: 300,
      maxPendingPerUser: 3,
      waitSeconds: 10,
      timeoutSeconds: 7200,
    });
  });

  test('approvalSettingsFor: the rule timeout, else the default', () => {
    expect(approvalSettingsFor({ approvers: ['a'], timeout: '30m' }, APPROVAL_DEFAULTS)).toEqual({
      approvers: ['a'],
      timeoutSeconds: 1800,
      consumeWithinSeconds: 900,
    });
    expect(approvalSettingsFor({ approvers: [], timeout: null }, APPROVAL_DEFAULTS).timeoutSeconds).toBe(86_400);
  });

  test('durations', () => {
    expect([parseDuration('45s'), parseDuration('2m'), parseDuration('3h'), parseDuration('7d')]).toEqual([
      45, 120, 10_800, 604_800,
    ]);
    expect(parseDuration('1.5h')).toBeNull();
    expect(() => durationToSeconds('soon')).toThrow(RangeError);
  });
});

describe('revision and determinism', () => {
  test('16 hex characters; the same input gives byte-equal output', () => {
    const a = compileFixture('acme-gmail');
    const b = compileFixture('acme-gmail');
    expect(a.data.revision).toMatch(/^[0-9a-f]{16}$/);
    expect(canonicalJson(a)).toBe(canonicalJson(b));
    expect(JSON.stringify(a)).toBe(JSON.stringify(b));
  });

  test('map order in the file does not matter, rule order does', () => {
    const services = { a: { transport: 'stdio', command: 'a' }, b: { transport: 'stdio', command: 'b' } };
    const reversed = { b: services.b, a: services.a };
    const rev = (extra: Record<string, unknown>) => mustCompile(policyYaml(extra)).data.revision;
    expect(rev({ services })).toBe(rev({ services: reversed }));
    const rules = [rule('x', 1, { when: { verb: 'get' } }), rule('y', 1, { when: { verb: 'list' } })];
    expect(rev({ policies: rules })).not.toBe(rev({ policies: [...rules].reverse() }));
  });

  test('covers the Layer 2 rules and approval settings too', () => {
    const limit = (max: number) => ({ limits: [{ name: 'l', select: { service: 'x' }, max, per: '1h' }] });
    expect(mustCompile(policyYaml(limit(10))).data.revision).not.toBe(mustCompile(policyYaml(limit(11))).data.revision);
    expect(mustCompile(policyYaml({ approval: { wait: '1s' } })).data.revision).not.toBe(
      mustCompile(policyYaml({})).data.revision,
    );
  });

  test('canonicalJson sorts keys at every depth and keeps array order', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, 1], c: null } })).toBe('{"a":{"c":null,"d":[3,1]},"b":1}');
  });

  test('compilePolicy does not modify its input', () => {
    const policy = mustLoad(policyYaml({ policies: [rule('b', 2), rule('a', 1, { when: { verb: 'get' } })] }));
    const before = structuredClone(policy);
    compilePolicy(policy);
    expect(policy).toEqual(before);
  });
});

describe('warnings', () => {
  test('rules after a catch-all never apply', () => {
    const { warnings } = mustCompile(
      policyYaml({ policies: [rule('early default', 100), rule('never', 200, { when: { verb: 'get' } })] }),
    );
    expect(warnings).toEqual([
      {
        at: ['policies', 1],
        path: 'policies[1]',
        message: 'rule "never" never applies: the catch-all "early default" (priority 100) comes first',
      },
    ]);
  });

  test('match: any with no condition; approvers on a rule that asks no one', () => {
    const { warnings } = mustCompile(
      policyYaml({
        policies: [
          rule('nothing', 1, { match: 'any' }),
          rule('allow', 2, { approvers: ['alice'], when: { verb: 'get' } }),
        ],
      }),
    );
    expect(warnings.map((w) => w.message)).toEqual([
      'rule "nothing" never matches: match: any needs at least one condition',
      'rule "allow" is allow: its approvers and timeout are never used',
    ]);
  });

  test('a tenant placeholder with no value, once per place', () => {
    const result = compilePolicyText(
      yamlLines(
        'version: "1.0"',
        'profiles: ["@openclaw/security-gmail"]',
        'services: {gmail: {transport: stdio, command: gmail-mcp}}',
        'policies: [{name: d, when: {}, action: deny, priority: 999}]',
      ),
      'p.yaml',
    );
    expect(result.ok && result.warnings.map((w) => `${w.line}:${w.column} ${w.message}`)).toEqual([
      '2:12 gmail.send_email: {company_domain} in contains is not a tenant key, so it stays as written',
      '2:12 gmail.send_email: {company_domain} in not_contains is not a tenant key, so it stays as written',
      '2:12 gmail.draft_email: {company_domain} in not_contains is not a tenant key, so it stays as written',
    ]);
  });

  test('the fixtures compile without warnings (the upstream example aside: it has no services)', () => {
    for (const name of FIXTURES.filter((n) => n !== 'upstream-example')) {
      expect(compileFixture(name).warnings, name).toEqual([]);
    }
    expect(compileFixture('upstream-example').warnings).toHaveLength(4);
  });
});

describe('compilePolicyText / compilePolicyFile', () => {
  test('errors are located the same way as the loader', () => {
    expect(compilePolicyText('version: "1.0"\nbogus: 1\n', 'p.yaml')).toEqual({
      ok: false,
      errors: [{ file: 'p.yaml', line: 2, column: 1, path: 'bogus', message: 'unknown key "bogus"' }],
    });
  });

  test('compilePolicyFile', async () => {
    const result = await compilePolicyFile(fixturePath('s4'));
    expect(result.ok && result.compiled.data.tools['banking']?.['transfer']?.labels).toEqual(['category:banking']);
    expect((await compilePolicyFile('/nonexistent.yaml')).ok).toBe(false);
  });

  test('compilePolicy refuses to guess a profile it was not given', () => {
    const policy = mustLoad(policyYaml({ profiles: ['@openclaw/security-gmail'] }));
    expect(() => compilePolicy(policy)).toThrow(/not resolved/);
  });
});

test.each(FIXTURES)('%s: the compiled data satisfies the Layer 1 data contract', (name) => {
  expect(layer1DataProblems(compileFixture(name).data)).toEqual([]);
});
