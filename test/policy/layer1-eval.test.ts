/**
 * Layer 1 through the committed rego/policy.wasm and the npm SDK, as the gateway runs it: the
 * fixture corpus (test/fixtures/layer1/cases.json), failing closed, and the atomic swap.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  compileLayer1Policy,
  createLayer1Engine,
  failClosedDecision,
  Layer1DataError,
  LAYER1_WASM_URL,
  type Layer1Engine,
} from '../../src/policy/layer1.js';
import { layer1DataProblems } from '../../src/policy/layer1-data-schema.js';
import { patternIndex, patternShortcut } from '../../src/policy/layer1-patterns.js';
import {
  layer1DecisionSchema,
  type Layer1Data,
  type Layer1Decision,
  type Layer1Input,
} from '../../src/policy/layer1-types.js';

const FIXTURES = new URL('../fixtures/layer1/', import.meta.url);

interface Case {
  name: string;
  data: string;
  dataPatch?: Partial<Layer1Data>;
  input: Partial<Layer1Input>;
  expect: Record<string, unknown>;
}

const corpus = JSON.parse(readFileSync(new URL('cases.json', FIXTURES), 'utf8')) as {
  defaults: { input: Layer1Input };
  cases: Case[];
};

function fixture(name: string): Layer1Data {
  return JSON.parse(readFileSync(new URL(`${name}.json`, FIXTURES), 'utf8')) as Layer1Data;
}

const gmail = fixture('gmail');

function input(patch: Partial<Layer1Input> = {}): Layer1Input {
  return { ...corpus.defaults.input, ...patch };
}

function expectFailClosed(d: Layer1Decision, why: RegExp): void {
  expect(layer1DecisionSchema.parse(d)).toEqual(d);
  expect(d.outcome).toBe('deny');
  expect(d.code).toBe('evaluation_error');
  expect(d.rule).toBeNull();
  expect(d.approval).toBeNull();
  expect(d.layer2).toEqual(failClosedDecision('x').layer2);
  expect(d.reasons).toHaveLength(1);
  expect(d.reasons[0]).toMatch(/^policy evaluation failed: /);
  expect(d.reasons[0]).toMatch(why);
}

describe('Layer 1 fixture corpus (committed Wasm)', () => {
  const engines = new Map<string, Promise<Layer1Engine>>();
  const engineFor = (c: Case) => {
    const key = `${c.data}:${JSON.stringify(c.dataPatch ?? {})}`;
    let e = engines.get(key);
    if (!e) engines.set(key, (e = createLayer1Engine({ ...fixture(c.data), ...c.dataPatch })));
    return e;
  };

  it('has cases for every decision code', () => {
    const codes = new Set(corpus.cases.map((c) => c.expect['code']).filter((c) => c !== undefined));
    expect([...codes].sort()).toEqual(
      [
        'no_grant',
        'no_matching_rule',
        'no_policies',
        'rule',
        'service_disabled',
        'service_suspended',
        'tool_disabled',
        'unknown_service',
      ].sort(),
    );
  });

  it.each(corpus.cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const engine = await engineFor(c);
    const d = engine.evaluate(input(c.input));
    expect(layer1DecisionSchema.parse(d)).toEqual(d);
    expect(d).toMatchObject(c.expect);
  });
});

describe('evaluate', () => {
  it('a decision (cached and shared) cannot be tampered with to change later answers', async () => {
    const engine = await createLayer1Engine(gmail);
    const a = engine.evaluate(input({ name: 'read_email' }));
    expect(() => a.classification.labels.push('tampered:yes')).toThrow(TypeError);
    expect(engine.evaluate(input({ name: 'read_email' })).classification.labels).toEqual(['data:private']);
  });

  it('the decision cache belongs to one revision: a swap answers from the new data', async () => {
    const engine = await createLayer1Engine(gmail);
    expect(engine.evaluate(input({ name: 'read_email' })).classification.labels).toEqual(['data:private']);
    const relabelled = structuredClone(gmail) as typeof gmail;
    const entry = relabelled.tools['gmail']?.['read_email'];
    if (!entry) throw new Error('fixture lacks gmail.read_email');
    entry.labels = ['data:public'];
    relabelled.revision = 'relabelled';
    await engine.swap(relabelled);
    expect(engine.evaluate(input({ name: 'read_email' })).classification.labels).toEqual(['data:public']);
  });

  it('ignores arguments no classifier or extractor reads, however large', async () => {
    const engine = await createLayer1Engine(gmail);
    const small = engine.evaluate(input({ arguments: { to: 'bob@acme.com' } }));
    const big = engine.evaluate(input({ arguments: { to: 'bob@acme.com', body: 'x'.repeat(4 << 20) } }));
    expect(big).toEqual(small);
    expect(big.rule).toBe('Internal mail');
  });

  it('reads only the grants of the called service', async () => {
    const engine = await createLayer1Engine(gmail);
    const grants = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`svc${i}`, ['*']]));
    expect(engine.evaluate(input({ grants: { ...grants, gmail: ['read_email'] }, name: 'read_email' })).outcome).toBe(
      'allow',
    );
    expect(engine.evaluate(input({ grants, name: 'read_email' })).code).toBe('no_grant');
  });

  it('keeps working after many evaluations and a large input (memory is reused)', async () => {
    const engine = await createLayer1Engine(gmail);
    const before = engine.evaluate(input({ arguments: { to: ['eve@evil.com'] } }));
    engine.evaluate(input({ arguments: { to: Array.from({ length: 50_000 }, (_, i) => `u${i}@acme.com`) } }));
    for (let i = 0; i < 2000; i++) engine.evaluate(input({ arguments: { to: `u${i}@evil.com`, subject: `n${i}` } }));
    expect(engine.evaluate(input({ arguments: { to: ['eve@evil.com'] } }))).toEqual(before);
  });
});

describe('failing closed', () => {
  it.each([
    ['not an object', null],
    ['an array', []],
    ['no user', { ...input(), user: undefined }],
    ['a user without id', { ...input(), user: { role: 'agent' } }],
    ['an unknown role', { ...input(), user: { id: 'a', role: 'root' } }],
    ['grants not an object', { ...input(), grants: ['*'] }],
    ['an unknown method', { ...input(), method: 'tools/list' }],
    ['a service that is not a string', { ...input(), service: 7 }],
    ['a name that is not a string', { ...input(), name: ['send_email'] }],
    ['arguments that are a list', { ...input(), arguments: ['to'] }],
    ['arguments that are null', { ...input(), arguments: null }],
  ])('denies malformed input: %s', async (_what, bad) => {
    const engine = await createLayer1Engine(gmail);
    expectFailClosed(engine.evaluate(bad as unknown as Layer1Input), /malformed input/);
  });

  it('denies when the input cannot be serialized', async () => {
    const engine = await createLayer1Engine(gmail);
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expectFailClosed(engine.evaluate(input({ arguments: { to: cyclic } })), /circular/i);
    expectFailClosed(engine.evaluate(input({ arguments: { to: 10n } })), /BigInt/);
    // An unread argument is never serialized, so it cannot break the call.
    expect(engine.evaluate(input({ arguments: { to: 'bob@acme.com', extra: 10n } })).outcome).toBe('allow');
  });

  it('the fail-closed decision satisfies the contract', () => {
    const d = failClosedDecision('boom');
    expect(layer1DecisionSchema.parse(d)).toEqual(d);
    expect(d).toMatchObject({ outcome: 'deny', code: 'evaluation_error', reasons: ['policy evaluation failed: boom'] });
  });
});

describe('data documents', () => {
  const rejected: [string, (d: Layer1Data) => unknown][] = [
    ['not an object', () => 'gmail'],
    ['no revision', (d) => ({ ...d, revision: '' })],
    ['an unknown top-level key', (d) => ({ ...d, extra: 1 })],
    ['a missing layer2', (d) => ({ ...d, layer2: undefined })],
    ['a catalog entry without suspended', (d) => ({ ...d, catalog: { x: { enabled: true, tools: null } } })],
    ['an unknown verb', (d) => ({ ...d, tools: { x: { y: { verb: 'patch', hints: {}, labels: [] } } } })],
    ['an unknown hint', (d) => ({ ...d, tools: { x: { y: { verb: null, hints: { fastHint: true }, labels: [] } } } })],
    [
      'a comparison against a string',
      (d) => ({ ...d, classifiers: { x: { y: [{ field: 'a', op: 'greater_than', value: '5', labels: [] }] } } }),
    ],
    [
      'an unknown op',
      (d) => ({ ...d, classifiers: { x: { y: [{ field: 'a', op: 'startswith', value: 'a', labels: [] }] } } }),
    ],
    [
      'an unanchored matches pattern',
      (d) => ({ ...d, classifiers: { x: { y: [{ field: 'a', op: 'matches', value: 'a.*', labels: [] }] } } }),
    ],
    ['unsorted rules', (d) => ({ ...d, rules: [...d.rules].reverse() })],
    ['duplicate rule indexes', (d) => ({ ...d, rules: d.rules.map((r) => ({ ...r, index: 0, priority: 1 })) })],
    ['an unknown when key', (d) => ({ ...d, rules: [{ ...d.rules[0], when: { service: 'gmail' } }] })],
    ['an unknown action', (d) => ({ ...d, rules: [{ ...d.rules[0], action: 'npl_evaluate' }] })],
    [
      'an unanchored selector',
      (d) => ({ ...d, layer2: { ...d.layer2, limits: [{ name: 'l', select: { service: 'gmail' } }] } }),
    ],
  ];

  it.each(rejected)('rejects a document with %s', async (_what, make) => {
    const bad = make(gmail);
    expect(layer1DataProblems(bad).length).toBeGreaterThan(0);
    await expect(createLayer1Engine(bad as Layer1Data)).rejects.toBeInstanceOf(Layer1DataError);
  });

  it("rejects patterns the Wasm's RE2 cannot compile, with the policy's own check", async () => {
    const bad: Layer1Data = {
      ...gmail,
      layer2: { ...gmail.layer2, limits: [{ name: 'bad', select: { tool: '^(?P<x$' } }] },
    };
    expect(layer1DataProblems(bad)).toEqual([]);
    const err = await createLayer1Engine(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Layer1DataError);
    expect((err as Layer1DataError).problems).toEqual(["invalid RE2 pattern: '^(?P<x$'"]);
  });

  it('accepts the fixture', () => {
    expect(layer1DataProblems(gmail)).toEqual([]);
  });
});

describe('atomic swap', () => {
  const noRules: Layer1Data = { ...gmail, revision: 'no-rules', rules: [] };
  const probe = input({ name: 'read_email' });

  it('replaces the policy and the revision', async () => {
    const engine = await createLayer1Engine(gmail);
    expect(engine.revision).toBe('gmail-1');
    expect(engine.evaluate(probe).outcome).toBe('allow');
    await engine.swap(noRules);
    expect(engine.revision).toBe('no-rules');
    expect(engine.evaluate(probe).code).toBe('no_policies');
  });

  it('keeps the current policy when the new document is rejected', async () => {
    const engine = await createLayer1Engine(gmail);
    const before = engine.evaluate(probe);
    await expect(engine.swap({ ...gmail, revision: 'broken', rules: 'nope' } as unknown as Layer1Data)).rejects.toThrow(
      Layer1DataError,
    );
    const badPattern = {
      ...gmail,
      revision: 'bad-re',
      layer2: { ...gmail.layer2, budgets: [{ name: 'b', select: { tool: '^(x$' } }] },
    };
    await expect(engine.swap(badPattern)).rejects.toThrow(/invalid RE2 pattern/);
    expect(engine.revision).toBe('gmail-1');
    expect(engine.evaluate(probe)).toEqual(before);
  });

  it('keeps deciding with the current policy while a swap is being prepared', async () => {
    const engine = await createLayer1Engine(gmail);
    const pending = engine.swap(noRules);
    expect(engine.revision).toBe('gmail-1');
    expect(engine.evaluate(probe).outcome).toBe('allow');
    await pending;
    expect(engine.evaluate(probe).code).toBe('no_policies');
  });

  it('when swaps overlap, the one started last wins', async () => {
    const engine = await createLayer1Engine(gmail);
    // The first document is much larger, so it is the slower one to prepare.
    const big: Layer1Data = {
      ...gmail,
      revision: 'big',
      tools: {
        ...gmail.tools,
        ...Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`s${i}`, gmail.tools['gmail'] ?? {}])),
      },
    };
    await Promise.all([engine.swap(big), engine.swap(noRules)]);
    expect(engine.revision).toBe('no-rules');
    await Promise.allSettled([engine.swap(gmail), engine.swap({ ...gmail, revision: '' })]);
    expect(engine.revision).toBe('gmail-1');
  });

  it('engines built from one compiled module are independent', async () => {
    const module = await compileLayer1Policy(readFileSync(LAYER1_WASM_URL));
    const a = await createLayer1Engine(gmail, { wasm: module });
    const b = await createLayer1Engine(noRules, { wasm: module });
    expect(a.evaluate(probe).outcome).toBe('allow');
    expect(b.evaluate(probe).code).toBe('no_policies');
  });
});

describe('pattern shortcuts', () => {
  it.each([
    ['^gmail$', { exact: 'gmail' }],
    ['^$', { exact: '' }],
    ['^a\\.b\\*c$', { exact: 'a.b*c' }],
    ['^send_.*$', { prefix: 'send_' }],
    ['^.*$', { prefix: '' }],
    ['^.*_email$', { suffix: '_email' }],
    ['^data:.*$', { prefix: 'data:' }],
    ['^é😀$', { exact: 'é😀' }],
  ])('%s', (pattern, want) => {
    expect(patternShortcut(pattern)).toEqual(want);
  });

  it.each([
    'gmail',
    '^gmail',
    'gmail$',
    '^a\\$',
    '^(?:gmail)$',
    '^(?i)gmail$',
    '^gm.il$',
    '^a.*b$',
    '^.*a.*$',
    '^a+$',
    '^[ab]$',
    '^a|b$',
    '^\\d$',
    '^\\Qa.b\\E$',
    '^\\x41$',
    '^a\\.*$',
    '^.*\\.*$',
    '^a\n.*$',
    '^a{2}$',
    '^.*a$$',
  ])('leaves %j to regex.match', (pattern) => {
    expect(patternShortcut(pattern)).toBeNull();
  });

  it('indexes every selector and matches-classifier pattern of a document', () => {
    const index = patternIndex(gmail);
    expect(index['^gmail$']).toEqual({ exact: 'gmail' });
    expect(index['^send_.*$']).toEqual({ prefix: 'send_' });
    expect(index['^data:private$']).toEqual({ exact: 'data:private' });
    expect(index['^(create|update|delete)$']).toBeUndefined();
    expect(index['^(?i).*urgent.*$']).toBeUndefined();
    expect(Object.getPrototypeOf(index)).toBeNull();
  });
});
