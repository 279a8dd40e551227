/**
 * The schema of mcp-security.yaml: our fixes of upstream's gaps (DESIGN §6) and our additions.
 * Upstream's own 21 cases are in upstream-compat.test.ts.
 */
import { resolveConfig, format } from 'prettier';
import { describe, expect, test } from 'vitest';
import { fileURLToPath } from 'node:url';
import {
  LABEL_PATTERN,
  policyFileSchema,
  policyJsonSchema,
  profileFileSchema,
  SERVICE_NAME_PATTERN,
} from '../../src/policy/schema.js';
import { loadErrors, mustLoad, policyYaml } from './helpers.js';

const rule = { name: 'r', when: {}, action: 'allow', priority: 1 };
const select = { service: 'gmail', tool: 'send_email' };

/** The single error a policy gets; fails when there are none or several. */
function onlyError(policy: Record<string, unknown>) {
  const errors = loadErrors(policyYaml(policy));
  expect(errors.map((e) => `${e.path}: ${e.message}`)).toHaveLength(1);
  return errors[0]!;
}

describe('durations: one grammar, ^\\d+(s|m|h|d)$, everywhere', () => {
  test.each(['30s', '15m', '1h', '7d', '3600s'])('%s is a duration', (timeout) => {
    expect(
      mustLoad(policyYaml({ policies: [{ ...rule, action: 'require_approval', timeout }] })).policies[0]?.timeout,
    ).toBe(timeout);
  });

  test.each(['1.5h', '60', '1w', '1h30m', '-1h', 'PT1H', ' 1h', '1H', ''])('%j is not', (timeout) => {
    expect(onlyError({ policies: [{ ...rule, timeout }] }).path).toBe('policies[0].timeout');
  });

  test('zero is refused where it would mean "never" or "always"', () => {
    expect(onlyError({ policies: [{ ...rule, timeout: '0m' }] }).message).toMatch(/longer than 0/);
    expect(onlyError({ limits: [{ name: 'l', select, max: 1, per: '0s' }] }).path).toBe('limits[0].per');
    expect(mustLoad(policyYaml({ approval: { wait: '0s' } })).approval?.wait).toBe('0s');
  });

  test('a duration too long to count in seconds exactly is refused', () => {
    expect(onlyError({ policies: [{ ...rule, timeout: '99999999999999999d' }] }).message).toMatch(/too long/);
  });

  test('per, ttl, consume_within, wait and approval.timeout use the same grammar', () => {
    expect(onlyError({ limits: [{ name: 'l', select, max: 1, per: '1 hour' }] }).path).toBe('limits[0].per');
    expect(onlyError({ flows: [{ name: 'f', after: select, then: select, ttl: '24hours' }] }).path).toBe(
      'flows[0].ttl',
    );
    expect(onlyError({ approval: { consume_within: '15min' } }).path).toBe('approval.consume_within');
    expect(onlyError({ approval: { wait: '2.5s' } }).path).toBe('approval.wait');
    expect(onlyError({ approval: { timeout: '1y' } }).path).toBe('approval.timeout');
  });
});

describe('labels: ns:value with optional further :segments', () => {
  test.each([
    'scope:external',
    'data:bcc-used',
    'arg:amount:500',
    'arg:amount:12.5',
    'arg:amount:-3',
    'arg:currency:USD',
    'arg:to:bob@acme.com',
    'arg:phone:+4712345678',
    'a:b:c:d',
    'risk-level:high',
  ])('%s is a label', (label) => {
    expect(LABEL_PATTERN.test(label)).toBe(true);
    expect(mustLoad(policyYaml({ policies: [{ ...rule, when: { labels: [label] } }] })).policies).toHaveLength(1);
  });

  test.each(['INVALID', 'scope', 'Scope:x', 'scope:', 'scope::x', '1ns:x', 'scope:a b', 'scope:x/y', ':x', 'sc_ope:x'])(
    '%j is not',
    (label) => {
      expect(LABEL_PATTERN.test(label)).toBe(false);
      expect(onlyError({ policies: [{ ...rule, when: { labels: [label] } }] }).path).toBe('policies[0].when.labels[0]');
    },
  );

  test('the labels extractors produce can be named by rules (upstream rejected them)', () => {
    const policy = mustLoad(
      policyYaml({
        value_extractors: { banking: { transfer: [{ field: 'amount', label_prefix: 'arg:amount' }] } },
        policies: [{ ...rule, when: { labels: ['arg:amount:500', 'arg:currency:USD'] } }],
      }),
    );
    expect(policy.value_extractors['banking']?.['transfer']).toEqual([{ field: 'amount', label_prefix: 'arg:amount' }]);
  });

  test('label_prefix is a namespace or a label', () => {
    const extractor = (label_prefix: string) => ({
      value_extractors: { banking: { transfer: [{ field: 'amount', label_prefix }] } },
    });
    expect(mustLoad(policyYaml(extractor('arg')))).toBeTruthy();
    expect(mustLoad(policyYaml(extractor('arg:amount')))).toBeTruthy();
    for (const bad of ['Arg', 'arg:', 'arg amount', '']) {
      expect(onlyError(extractor(bad)).path).toBe('value_extractors.banking.transfer[0].label_prefix');
    }
  });

  test('empty label lists are refused (an empty `all` would match everything)', () => {
    expect(onlyError({ policies: [{ ...rule, when: { labels: [] } }] }).path).toBe('policies[0].when.labels');
    expect(onlyError({ limits: [{ name: 'l', select: { labels: [] }, max: 1, per: '1m' }] }).path).toBe(
      'limits[0].select.labels',
    );
  });
});

describe('classifiers', () => {
  const classify = (entry: Record<string, unknown>) => ({ classifiers: { gmail: { send_email: [entry] } } });
  const at = 'classifiers.gmail.send_email[0]';

  test.each([
    { contains: '@acme.com' },
    { not_contains: '@acme.com' },
    { present: true },
    { present: false },
    { greater_than: 1000 },
    { less_than: 10.5 },
    { equals_value: 'BTC' },
    { equals_value: 42 },
    { matches: '[a-z]+@acme\\.com' },
  ])('one condition: %j', (condition) => {
    expect(mustLoad(policyYaml(classify({ field: 'to', set_labels: ['scope:x'], ...condition })))).toBeTruthy();
  });

  test('exactly one condition per entry (upstream documented it, never enforced it)', () => {
    const two = onlyError(classify({ field: 'to', contains: 'a', not_contains: 'b', set_labels: ['scope:x'] }));
    expect(two).toMatchObject({ path: at, message: expect.stringContaining('found contains and not_contains') });
    const none = onlyError(classify({ field: 'to', set_labels: ['scope:x'] }));
    expect(none).toMatchObject({ path: at, message: expect.stringContaining('needs one condition') });
  });

  test('set_labels is required and not empty; field is required', () => {
    expect(onlyError(classify({ field: 'to', contains: 'a', set_labels: [] })).path).toBe(`${at}.set_labels`);
    expect(onlyError(classify({ field: 'to', contains: 'a' })).path).toBe(`${at}.set_labels`);
    expect(onlyError(classify({ contains: 'a', set_labels: ['scope:x'] })).path).toBe(`${at}.field`);
  });

  test.each([
    ['(?=x)', 'lookahead'],
    ['(a)\\1', 'backreference'],
    ['a(b', 'unbalanced'],
    ['a{1001}', 'repeat too large'],
    ['\\u0041', 'JavaScript escape'],
  ])('%s is refused at load (%s)', (matches) => {
    const error = onlyError(classify({ field: 'to', matches, set_labels: ['scope:x'] }));
    expect(error).toMatchObject({
      path: `${at}.matches`,
      message: expect.stringMatching(/^not an RE2 regular expression/),
    });
  });

  test.each(['[[:alpha:]]+', '\\pL+', '(?i)acme', '(?P<user>[^@]+)@acme\\.com', '\\x{41}'])(
    'RE2 syntax %s is accepted',
    (matches) => {
      expect(mustLoad(policyYaml(classify({ field: 'to', matches, set_labels: ['scope:x'] })))).toBeTruthy();
    },
  );

  test('YAML 1.2: yes/no are strings, so `present: yes` is not a boolean', () => {
    expect(onlyError(classify({ field: 'to', present: 'yes', set_labels: ['scope:x'] })).path).toBe(`${at}.present`);
  });
});

describe('rules', () => {
  test('match defaults to all; any is accepted', () => {
    const policy = mustLoad(
      policyYaml({ policies: [rule, { ...rule, name: 'q', match: 'any', when: { verb: 'get' } }] }),
    );
    expect(policy.policies.map((r) => r.match)).toEqual(['all', 'any']);
  });

  test('names are unique within each list', () => {
    expect(onlyError({ policies: [rule, { ...rule, priority: 2 }] })).toMatchObject({
      path: 'policies[1].name',
      message: '"r" is already policies[0].name',
    });
    expect(
      onlyError({
        limits: [
          { name: 'l', select, max: 1, per: '1m' },
          { name: 'l', select, max: 2, per: '1m' },
        ],
      }).path,
    ).toBe('limits[1].name');
    // Lists are separate namespaces: Layer 2 looks each kind up on its own.
    expect(mustLoad(policyYaml({ policies: [rule], budgets: [{ name: 'r', select, max: 1 }] }))).toBeTruthy();
  });

  test('names are printable ASCII without edge spaces (they travel in headers)', () => {
    for (const name of ['', ' lead', 'trail ', 'tab\there', 'naïve', 'x'.repeat(129)]) {
      expect(onlyError({ policies: [{ ...rule, name }] }).path).toBe('policies[0].name');
    }
    expect(mustLoad(policyYaml({ policies: [{ ...rule, name: 'Approve external email (p10)' }] }))).toBeTruthy();
  });

  test('priority is an integer 0-999', () => {
    for (const priority of [-1, 1000, 1.5, '1']) {
      expect(onlyError({ policies: [{ ...rule, priority }] }).path).toBe('policies[0].priority');
    }
    expect(onlyError({ policies: [{ name: 'r', when: {}, action: 'allow' }] }).message).toBe(
      'missing required key "priority"',
    );
  });

  test('when accepts the four hints, verb and labels only', () => {
    expect(onlyError({ policies: [{ ...rule, when: { service: 'gmail' } }] })).toMatchObject({
      path: 'policies[0].when.service',
      message: 'unknown key "service"',
    });
    expect(onlyError({ policies: [{ ...rule, when: { readOnlyHint: 'true' } }] }).path).toBe(
      'policies[0].when.readOnlyHint',
    );
  });
});

describe('service names: ^[a-z][a-z0-9-]{0,30}$, never containing "__"', () => {
  const stdio = { transport: 'stdio', command: 'x' };

  test.each(['gmail', 'mock-calendar', 'a', 'a'.repeat(31), 's3'])('%s is a service name', (name) => {
    expect(SERVICE_NAME_PATTERN.test(name)).toBe(true);
    expect(mustLoad(policyYaml({ services: { [name]: stdio } })).services[name]).toBeTruthy();
  });

  test.each(['Gmail', '1svc', 'my_svc', 'a__b', 'a'.repeat(32), '-x', 'a.b', ''])('%j is not', (name) => {
    expect(onlyError({ services: { [name]: stdio } }).message).toMatch(/^invalid key: a service name/);
    expect(onlyError({ tool_overrides: { [name]: { t: { verb: 'get' } } } }).message).toMatch(/^invalid key/);
  });

  test('profiles obey the same grammar', () => {
    expect(profileFileSchema.safeParse({ service: 'Gmail', tools: {} }).success).toBe(false);
  });
});

describe('services', () => {
  test('the three transports', () => {
    const policy = mustLoad(
      policyYaml({
        services: {
          github: { transport: 'stdio', command: 'mcp-server-github', args: ['--x'], secrets: ['GITHUB_TOKEN'] },
          calendar: {
            transport: 'http',
            url: 'http://127.0.0.1:9000/mcp',
            headers: { Authorization: 'Bearer ${CAL_TOKEN}' },
          },
          legacy: { transport: 'sse', url: 'https://example.com/sse', enabled: false, tools: ['a', 'b'] },
        },
      }),
    );
    expect(policy.services['github']).toMatchObject({ enabled: true, isolation: 'shared' });
    expect(policy.services['legacy']).toMatchObject({ enabled: false, tools: ['a', 'b'] });
  });

  test('each transport has its own keys', () => {
    expect(onlyError({ services: { s: { transport: 'stdio' } } }).path).toBe('services.s.command');
    expect(onlyError({ services: { s: { transport: 'http' } } }).path).toBe('services.s.url');
    expect(onlyError({ services: { s: { transport: 'http', url: 'http://x/mcp', command: 'x' } } }).path).toBe(
      'services.s.command',
    );
    expect(onlyError({ services: { s: { transport: 'stdio', command: 'x', url: 'http://x' } } }).path).toBe(
      'services.s.url',
    );
    expect(onlyError({ services: { s: { transport: 'ws', url: 'http://x' } } }).path).toBe('services.s.transport');
    expect(onlyError({ services: { s: { transport: 'http', url: 'file:///etc/passwd' } } }).path).toBe(
      'services.s.url',
    );
    expect(onlyError({ services: { s: { transport: 'stdio', command: 'x', isolation: 'none' } } }).path).toBe(
      'services.s.isolation',
    );
  });

  test('secret references in headers name a secret of the same service', () => {
    const http = (headers: Record<string, string>, secrets?: string[]) => ({
      services: { s: { transport: 'http', url: 'http://x/mcp', headers, ...(secrets ? { secrets } : {}) } },
    });
    expect(mustLoad(policyYaml(http({ Authorization: 'Bearer ${TOKEN}' }, ['TOKEN'])))).toBeTruthy();
    expect(mustLoad(policyYaml(http({ Authorization: 'Bearer ${TOKEN}' })))).toBeTruthy();
    expect(onlyError(http({ Authorization: 'Bearer ${OTHER}' }, ['TOKEN']))).toMatchObject({
      path: 'services.s.headers.Authorization',
      message: "${OTHER} is not in this service's secrets list",
    });
    expect(onlyError(http({ Authorization: 'Bearer ${lower}' })).message).toMatch(/not a secret name/);
  });

  test('a service without a secrets list may not name a secret another service declares', () => {
    const doc = {
      services: {
        github: { transport: 'stdio', command: 'gh-mcp', secrets: ['GITHUB_TOKEN'] },
        calendar: { transport: 'http', url: 'http://x/mcp', headers: { Authorization: 'Bearer ${GITHUB_TOKEN}' } },
      },
    };
    expect(onlyError(doc)).toMatchObject({
      path: 'services.calendar.headers.Authorization',
      message: '${GITHUB_TOKEN} is a secret of github, not of calendar',
    });
    // Its own, undeclared name stays fine: it can only resolve calendar's own secret.
    const own = structuredClone(doc);
    own.services.calendar.headers.Authorization = 'Bearer ${CAL_TOKEN}';
    expect(mustLoad(policyYaml(own))).toBeTruthy();
  });

  test('env holds no secrets, secrets are environment variable names', () => {
    expect(onlyError({ services: { s: { transport: 'stdio', command: 'x', env: { A: '${B}' } } } }).path).toBe(
      'services.s.env.A',
    );
    expect(onlyError({ services: { s: { transport: 'stdio', command: 'x', secrets: ['api-key'] } } }).path).toBe(
      'services.s.secrets[0]',
    );
  });

  test('an allow-listed tool whose wire name exceeds 64 characters is refused', () => {
    const tool = 't'.repeat(60);
    expect(onlyError({ services: { gmail: { transport: 'stdio', command: 'x', tools: [tool] } } })).toMatchObject({
      path: 'services.gmail.tools[0]',
      message: expect.stringContaining('longer than 64'),
    });
  });
});

describe('Layer 2 rules and approval settings', () => {
  test('defaults', () => {
    const policy = mustLoad(
      policyYaml({
        limits: [{ name: 'l', select, max: 10, per: '1h' }],
        flows: [{ name: 'f', after: { labels: ['data:*'] }, then: { labels: ['scope:external'] } }],
        budgets: [{ name: 'b', select, max: 0 }],
        preconditions: [{ name: 'p', select, require: { market_status: 'open', armed: true } }],
        duties: [{ name: 'd', kind: 'four_eyes', first: select, then: select, entity: ['payout_id'] }],
      }),
    );
    expect(policy.limits[0]).toMatchObject({ scope: 'user', action: 'deny' });
    expect(policy.flows[0]).toMatchObject({ scope: 'user', action: 'deny' });
    expect(policy.flows[0]?.ttl).toBeUndefined();
    expect(policy.budgets[0]).toMatchObject({ max: 0, scope: 'user' });
  });

  test('selectors take globs and nothing else', () => {
    const limit = (s: Record<string, unknown>) => ({ limits: [{ name: 'l', select: s, max: 1, per: '1m' }] });
    expect(
      mustLoad(
        policyYaml(
          limit({ service: 'g*', tool: '*_email', labels: ['data:*', '*:external'], hints: { readOnlyHint: false } }),
        ),
      ),
    ).toBeTruthy();
    expect(onlyError(limit({ service: 'Gmail' })).path).toBe('limits[0].select.service');
    expect(onlyError(limit({ tool: 'send email' })).path).toBe('limits[0].select.tool');
    expect(onlyError(limit({ verb: 'execute' })).path).toBe('limits[0].select.verb');
    expect(onlyError(limit({ hints: { dangerous: true } })).path).toBe('limits[0].select.hints.dangerous');
    expect(onlyError(limit({ user: 'alice' })).path).toBe('limits[0].select.user');
  });

  test('bounds and enums', () => {
    expect(onlyError({ limits: [{ name: 'l', select, max: 0, per: '1m' }] }).path).toBe('limits[0].max');
    expect(onlyError({ limits: [{ name: 'l', select, max: 1, per: '1m', scope: 'tenant' }] }).path).toBe(
      'limits[0].scope',
    );
    expect(onlyError({ flows: [{ name: 'f', after: select, then: select, scope: 'global' }] }).path).toBe(
      'flows[0].scope',
    );
    expect(onlyError({ budgets: [{ name: 'b', select, max: -1 }] }).path).toBe('budgets[0].max');
    expect(onlyError({ preconditions: [{ name: 'p', select, require: {} }] }).path).toBe('preconditions[0].require');
    expect(
      onlyError({ duties: [{ name: 'd', kind: 'two_man', first: select, then: select, entity: ['id'] }] }).path,
    ).toBe('duties[0].kind');
    expect(
      onlyError({ duties: [{ name: 'd', kind: 'four_eyes', first: select, then: select, entity: [] }] }).path,
    ).toBe('duties[0].entity');
    expect(onlyError({ approval: { max_pending_per_user: 0 } }).path).toBe('approval.max_pending_per_user');
    expect(onlyError({ approval: { quorum: 2 } }).path).toBe('approval.quorum');
  });
});

describe('the JSON Schema', () => {
  const committed = fileURLToPath(new URL('../../schema/mcp-security.schema.json', import.meta.url));

  test('is generated from the zod schema and committed fresh (update: npx vitest run -u test/policy)', async () => {
    const options = { ...(await resolveConfig(committed)), parser: 'json' };
    const text = await format(JSON.stringify(policyJsonSchema()), options);
    await expect(text).toMatchFileSnapshot(committed);
  });

  test('says what an editor needs: strict objects, the grammars, exactly one classifier condition', () => {
    const schema = policyJsonSchema() as {
      additionalProperties: boolean;
      required: string[];
      $defs: Record<string, { oneOf?: unknown[]; pattern?: string }>;
    };
    expect(schema.additionalProperties).toBe(false);
    expect(schema.required).toEqual(['version']);
    expect(schema.$defs['ClassifierRule']?.oneOf).toHaveLength(7);
    expect(schema.$defs['Label']?.pattern).toBe(LABEL_PATTERN.source);
    expect(schema.$defs['Duration']?.pattern).toBe('^\\d+(s|m|h|d)$');
  });

  test('the zod schema itself is the one the loader uses', () => {
    expect(policyFileSchema.safeParse({ version: '1.0' }).success).toBe(true);
  });
});
