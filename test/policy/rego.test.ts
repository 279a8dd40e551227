/**
 * The Rego side of Layer 1, with the real `opa` binary: the `opa test` suite (rego/authz_test.rego),
 * formatting and strict checks, and a differential test — every corpus case plus generated ones are
 * decided by OPA's Go evaluator (full input, no pattern_index) and by the engine (committed Wasm,
 * slimmed input, pattern_index), and the decisions must be identical.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileLayer1Policy, createLayer1Engine, type Layer1Engine } from '../../src/policy/layer1.js';
import type { Layer1Data, Layer1Input } from '../../src/policy/layer1-types.js';
import { tarMember } from '../../scripts/rego-manifest.mjs';
import { describeWith, findExecutable } from '../helpers/components.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const regoDir = join(root, 'rego');
const fixtures = join(root, 'test', 'fixtures', 'layer1');

function opa(args: string[], cwd = root): { status: number; out: string } {
  try {
    return {
      status: 0,
      out: execFileSync(findExecutable('opa') ?? 'opa', args, { cwd, encoding: 'utf8', stdio: 'pipe' }),
    };
  } catch (e) {
    const err = e as { status?: number; stdout?: string; stderr?: string };
    return { status: err.status ?? 1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

interface Case {
  data: string;
  dataPatch?: Partial<Layer1Data>;
  input: Partial<Layer1Input>;
}

const corpus = JSON.parse(readFileSync(join(fixtures, 'cases.json'), 'utf8')) as {
  defaults: { input: Layer1Input };
  cases: Case[];
};

const dataOf = (c: Case): Layer1Data => ({
  ...(JSON.parse(readFileSync(join(fixtures, `${c.data}.json`), 'utf8')) as Layer1Data),
  ...c.dataPatch,
});

/** Argument values of every JSON type, biased towards what the fixture's classifiers look for. */
const text = fc.constantFrom(
  'bob@acme.com',
  'eve@evil.com',
  '',
  'URGENT: pay',
  'urgent',
  '1500',
  '-5',
  '1e3',
  '0x10',
  ' 7',
  'EUR',
  'null',
  'a\nb',
  'é<&>',
);
const scalar = fc.oneof(
  text,
  fc.integer({ min: -5000, max: 5000 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
);
const value = fc.oneof(
  { weight: 5, arbitrary: scalar },
  { weight: 2, arbitrary: fc.array(scalar, { maxLength: 4 }) },
  { weight: 1, arbitrary: fc.dictionary(fc.constantFrom('address', 'z', 'a'), scalar, { maxKeys: 2 }) },
  { weight: 1, arbitrary: fc.array(fc.array(scalar, { maxLength: 2 }), { maxLength: 2 }) },
);
const generated = fc.record({
  call: fc.constantFrom(
    { service: 'gmail', name: 'send_email' },
    { service: 'gmail', name: 'draft_email' },
    { service: 'gmail', name: 'read_email' },
    { service: 'gmail', name: 'archive' },
    { service: 'gmail', name: 'delete_x' },
    { service: 'gmail', name: 'frobnicate' },
    { service: 'banking', name: 'transfer' },
    { service: 'banking', name: 'get_balance' },
    { service: 'trading', name: 'execute_trade' },
    { service: 'legacy', name: 'get_x' },
    { service: 'nope', name: 'x' },
  ),
  method: fc.constantFrom('tools/call', 'tools/call', 'tools/call', 'resources/read', 'prompts/get'),
  arguments: fc.dictionary(
    fc.constantFrom('to', 'cc', 'bcc', 'subject', 'amount', 'currency', 'country', 'memo', 'other'),
    value,
    { maxKeys: 5 },
  ),
});

function generatedCases(n: number): Case[] {
  return fc.sample(generated, { numRuns: n, seed: 20240611 }).map((g) => ({
    data: 'gmail',
    input: { ...g.call, method: g.method as Layer1Input['method'], arguments: g.arguments },
  }));
}

/** Decisions by OPA's Go evaluator, in one `opa eval` for all cases. */
function goDecisions(cases: { input: Layer1Input; data: Layer1Data }[]): unknown[] {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-rego-diff-'));
  try {
    writeFileSync(
      join(dir, 'harness.rego'),
      [
        'package harness',
        'import data.mcpgw.authz',
        'results := {i: d |',
        '  some i, c in data.harness_cases',
        '  d := authz.decision with input as c.input',
        '    with data.catalog as c.data.catalog with data.tools as c.data.tools',
        '    with data.classifiers as c.data.classifiers with data.extractors as c.data.extractors',
        '    with data.rules as c.data.rules with data.layer2 as c.data.layer2',
        '}',
        '',
      ].join('\n'),
    );
    writeFileSync(join(dir, 'cases.json'), JSON.stringify({ harness_cases: cases }));
    const r = opa([
      'eval',
      '--format',
      'json',
      '-d',
      join(regoDir, 'authz.rego'),
      '-d',
      join(dir, 'harness.rego'),
      '-d',
      join(dir, 'cases.json'),
      'data.harness.results',
    ]);
    expect(r.status, r.out).toBe(0);
    const parsed = JSON.parse(r.out) as { result?: { expressions: { value: Record<string, unknown> }[] }[] };
    const byIndex = parsed.result?.[0]?.expressions[0]?.value ?? {};
    return cases.map((_, i) => byIndex[String(i)]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describeWith(['opa'], 'Rego policy (opa)', () => {
  it('opa test passes', () => {
    const r = opa(['test', 'rego/', '--ignore', '*.json', '-v']);
    expect(r.status, r.out).toBe(0);
    const passed = /^PASS: (\d+)\/(\d+)$/m.exec(r.out);
    expect(passed, r.out).not.toBeNull();
    expect(passed?.[1]).toBe(passed?.[2]);
    expect(Number(passed?.[1])).toBeGreaterThanOrEqual(100);
  });

  it('is formatted and passes the strict checks', () => {
    const fmt = opa(['fmt', '-l', 'rego/']);
    expect(fmt.status, fmt.out).toBe(0);
    expect(fmt.out.trim(), 'run opa fmt -w rego/').toBe('');
    const check = opa(['check', '--strict', '--ignore', '*.json', 'rego/']);
    expect(check.status, check.out).toBe(0);
  });

  it('Go and the committed Wasm decide the corpus and generated cases identically', async () => {
    const cases = [...corpus.cases, ...generatedCases(400)].map((c) => ({
      input: { ...corpus.defaults.input, ...c.input },
      data: dataOf(c),
    }));
    const go = goDecisions(cases);
    const engines = new Map<string, Layer1Engine>();
    for (const [i, c] of cases.entries()) {
      const key = JSON.stringify(c.data);
      let engine = engines.get(key);
      if (!engine) engines.set(key, (engine = await createLayer1Engine(c.data)));
      expect(engine.evaluate(c.input), `case ${i}: ${JSON.stringify(c.input)}`).toEqual(go[i]);
    }
  });

  describe('a policy that answers garbage', () => {
    let dir = '';
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'mcpgw-bad-policy-'));
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    function build(rego: string): Uint8Array {
      writeFileSync(join(dir, 'bad.rego'), rego);
      const r = opa(
        [
          'build',
          '-t',
          'wasm',
          '-e',
          'mcpgw/authz/decision',
          '-e',
          'mcpgw/authz/data_problems',
          '--capabilities',
          join(regoDir, 'capabilities.json'),
          '-o',
          'bundle.tar.gz',
          'bad.rego',
        ],
        dir,
      );
      expect(r.status, r.out).toBe(0);
      const wasm = tarMember(readFileSync(join(dir, 'bundle.tar.gz')), 'policy.wasm');
      if (!wasm) throw new Error('the bundle has no policy.wasm');
      return wasm;
    }

    const data = dataOf({ data: 'gmail', input: {} });
    const input = { ...corpus.defaults.input, name: 'read_email' };

    it('a malformed decision is a deny', async () => {
      const wasm = build(
        'package mcpgw.authz\n\ndata_problems := set()\n\ndecision := {"outcome": "allow", "code": "rule"}\n',
      );
      const d = (await createLayer1Engine(data, { wasm: await compileLayer1Policy(wasm) })).evaluate(input);
      expect(d.outcome).toBe('deny');
      expect(d.reasons[0]).toMatch(/^policy evaluation failed: malformed decision/);
    });

    it('no decision is a deny', async () => {
      const wasm = build('package mcpgw.authz\n\ndata_problems := set()\n\ndecision := 1 if false\n');
      const d = (await createLayer1Engine(data, { wasm })).evaluate(input);
      expect(d.outcome).toBe('deny');
      expect(d.reasons).toEqual(['policy evaluation failed: no decision']);
    });

    it('a conflict inside the Wasm (an abort) is a deny', async () => {
      const wasm = build(
        'package mcpgw.authz\n\ndata_problems := set()\n\ndecision := x if {\n\tsome x in [1, 2]\n}\n',
      );
      const engine = await createLayer1Engine(data, { wasm });
      const d = engine.evaluate(input);
      expect(d.outcome).toBe('deny');
      expect(d.reasons[0]).toMatch(/^policy evaluation failed: /);
      // The instance stays usable after an abort.
      expect(engine.evaluate(input)).toEqual(d);
    });

    it('a policy whose data check fails is refused', async () => {
      const wasm = build('package mcpgw.authz\n\ndata_problems := {"no"}\n\ndecision := {}\n');
      await expect(createLayer1Engine(data, { wasm })).rejects.toThrow(/Layer 1 data rejected: no/);
    });
  });
});
