/**
 * Property tests for the body parser, the JSON-RPC classifier and JCS, against independent oracles:
 * JSON.parse for values, a generated syntax tree that knows which strict rules it breaks, and zod
 * schemas for JSON-RPC shape. Runs are seeded by fast-check; a failure prints the seed and the
 * shrunk counterexample to replay.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { classifyJsonRpc } from '../../src/authz/jsonrpc.js';
import {
  MAX_JSON_DEPTH,
  parseStrictJson,
  type JsonValue,
  type StrictJsonErrorCode,
} from '../../src/authz/strict-json.js';
import { canonicalize } from '../../src/util/jcs.js';

/** Runs per property; raise MCPGW_FUZZ_RUNS for a longer soak (the default keeps `npm test` quick). */
const RUNS = Number(process.env['MCPGW_FUZZ_RUNS'] ?? 3000);
const encoder = new TextEncoder();
const fatalUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// ---------------------------------------------------------------------------------------------
// A syntax tree that can express what JSON.stringify cannot: duplicate keys, chosen number
// spellings, lone surrogates, escaped or raw characters.
// ---------------------------------------------------------------------------------------------

type Ast =
  | { t: 'lit'; text: string }
  | { t: 'str'; value: string; escapeAll: boolean; rawControls?: boolean }
  | { t: 'arr'; items: Ast[] }
  | { t: 'obj'; entries: { key: string; escapeAll: boolean; value: Ast }[] };

const NUMBER_EDGES = [
  '0',
  '-0',
  '-0.0',
  '0e10',
  '1E2',
  '2.50',
  '0.1e1',
  '5e-324',
  '1e-400',
  '-1e-400',
  '1e400',
  '1e20',
  '9007199254740991',
  '-9007199254740991',
  '9007199254740992',
  '9007199254740993',
  '9007199254740991.5',
  '123456789012345678e-3',
  '0.000000000000000000000000001',
  '1e-7',
];

/** Literals in every shape the grammar allows, around the fast path's limits (15 digits, 10^±22). */
const numberLiteral = fc
  .tuple(
    fc.boolean(),
    fc.stringMatching(/^(0|[1-9][0-9]{0,17})$/),
    fc.option(fc.stringMatching(/^[0-9]{1,20}$/)),
    fc.option(fc.tuple(fc.constantFrom('e', 'E'), fc.constantFrom('', '+', '-'), fc.integer({ min: 0, max: 40 }))),
  )
  .map(
    ([negative, int, frac, exp]) =>
      `${negative ? '-' : ''}${int}${frac === null ? '' : `.${frac}`}${exp === null ? '' : exp.join('')}`,
  );

const numberText = fc.oneof(
  numberLiteral,
  fc.integer({ min: -1e9, max: 1e9 }).map(String),
  fc.maxSafeInteger().map(String),
  fc.double({ min: -1e16, max: 1e16, noNaN: true }).map((d) => (Object.is(d, -0) ? '-0' : String(d))),
  fc.constantFrom(...NUMBER_EDGES),
);

/** Short, collision-prone keys: duplicates and case variants must come up often. */
const key = fc.oneof(
  fc.constantFrom('to', 'To', 'TO', 'name', 'arguments', 'params', '__proto__', 'constructor', 'ſ', 's', 'S'),
  fc.constantFrom('K', 'k', '\u212a', 'ı', 'i', 'I', 'a', 'A', 'é', 'É', ''),
  fc.string({ unit: 'binary-ascii', maxLength: 3 }),
);

const loneSurrogate = fc
  .oneof(fc.integer({ min: 0xd800, max: 0xdfff }), fc.constantFrom(0xd800, 0xdbff, 0xdc00, 0xdfff))
  .map((u) => String.fromCharCode(u));
const stringValue = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: 'binary', maxLength: 8 }) },
  // Long enough, once escaped, to take the parser's buffered path for escape-dense strings.
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 10, maxLength: 60 }) },
  {
    weight: 1,
    arbitrary: fc.string({
      unit: fc.constantFrom('a', '\n', '"', '\\', '\u0001', 'é', '😀'),
      minLength: 10,
      maxLength: 60,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.string({ maxLength: 3 }), loneSurrogate, fc.string({ maxLength: 3 })).map((p) => p.join('')),
  },
  { weight: 1, arbitrary: fc.constantFrom('\ud83d\ude00', '"\\/\b\f\n\r\t\u0000\u001f', '\ufeff', '\u2028') },
);

const { ast } = fc.letrec<{ ast: Ast }>((tie) => ({
  ast: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    numberText.map((text): Ast => ({ t: 'lit', text })),
    fc.constantFrom('null', 'true', 'false').map((text): Ast => ({ t: 'lit', text })),
    fc
      .record({
        value: stringValue,
        escapeAll: fc.boolean(),
        rawControls: fc.oneof(
          { weight: 9, arbitrary: fc.constant(false) },
          { weight: 1, arbitrary: fc.constant(true) },
        ),
      })
      .map((s): Ast => ({ t: 'str', ...s })),
    fc.array(tie('ast'), { maxLength: 4 }).map((items): Ast => ({ t: 'arr', items })),
    fc
      .array(fc.record({ key: fc.oneof(key, stringValue), escapeAll: fc.boolean(), value: tie('ast') }), {
        maxLength: 5,
      })
      .map((entries): Ast => ({ t: 'obj', entries })),
  ),
}));

/** Documents shaped like MCP messages, so the params rules get exercised, sometimes wrapped deep. */
const document = fc
  .tuple(
    fc.oneof(
      { weight: 3, arbitrary: ast },
      {
        weight: 3,
        arbitrary: fc
          .tuple(ast, fc.array(fc.record({ key, escapeAll: fc.boolean(), value: ast }), { maxLength: 3 }))
          .map(([params, extra]): Ast => ({
            t: 'obj',
            entries: [
              { key: 'jsonrpc', escapeAll: false, value: { t: 'str', value: '2.0', escapeAll: false } },
              { key: 'params', escapeAll: false, value: params },
              ...extra,
            ],
          })),
      },
    ),
    fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 55, max: 70 }) }),
    fc.boolean(),
  )
  .map(([root, wrap, pretty]) => {
    let node = root;
    for (let i = 0; i < wrap; i++)
      node =
        i % 2 === 0
          ? { t: 'arr', items: [node] }
          : { t: 'obj', entries: [{ key: 'w', escapeAll: false, value: node }] };
    return { node, pretty };
  });

function serializeString(s: string, escapeAll: boolean, rawControls = false): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const u = s.charCodeAt(i);
    const next = s.charCodeAt(i + 1);
    if (!escapeAll && u >= 0xd800 && u <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
      out += s[i]! + s[i + 1]!;
      i++;
    } else if (rawControls && u < 0x20) {
      out += s[i]!;
    } else if (escapeAll || u < 0x20 || u === 0x22 || u === 0x5c || (u >= 0xd800 && u <= 0xdfff)) {
      out += `\\u${u.toString(16).padStart(4, '0')}`;
    } else {
      out += s[i]!;
    }
  }
  return `${out}"`;
}

function serialize(node: Ast, pretty: boolean): string {
  const sep = pretty ? ', ' : ',';
  switch (node.t) {
    case 'lit':
      return node.text;
    case 'str':
      return serializeString(node.value, node.escapeAll, node.rawControls);
    case 'arr':
      return `[${node.items.map((n) => serialize(n, pretty)).join(sep)}]`;
    case 'obj':
      return `{${node.entries.map((e) => `${serializeString(e.key, e.escapeAll)}${pretty ? ' : ' : ':'}${serialize(e.value, pretty)}`).join(sep)}}`;
  }
}

const LONE = /[\ud800-\udfff]/u;
const fold = (k: string): string => k.toUpperCase().toLowerCase();

function numberViolates(text: string): boolean {
  const n = Number(text);
  if (!(Math.abs(n) <= Number.MAX_SAFE_INTEGER) || Object.is(n, -0)) return true;
  return n === 0 && /[1-9]/.test(text.replace(/[eE].*$/, ''));
}

/** Every strict rule the tree breaks; the parser must accept exactly when there is none. */
function violations(
  node: Ast,
  depth = 0,
  zone: 'root' | 'plain' | 'params' = 'root',
  out = new Set<StrictJsonErrorCode>(),
): Set<StrictJsonErrorCode> {
  switch (node.t) {
    case 'lit':
      if (!['null', 'true', 'false'].includes(node.text) && numberViolates(node.text)) out.add('number_out_of_range');
      break;
    case 'str':
      if (LONE.test(node.value)) out.add('lone_surrogate');
      if (node.rawControls === true && [...node.value].some((c) => c < ' ')) out.add('syntax');
      break;
    case 'arr':
      if (depth + 1 > MAX_JSON_DEPTH) out.add('too_deep');
      for (const item of node.items) violations(item, depth + 1, zone === 'params' ? 'params' : 'plain', out);
      break;
    case 'obj': {
      if (depth + 1 > MAX_JSON_DEPTH) out.add('too_deep');
      const keys = node.entries.map((e) => e.key);
      keys.forEach((k, i) => {
        if (LONE.test(k)) out.add('lone_surrogate');
        if (keys.indexOf(k) !== i) out.add('duplicate_key');
        if (zone === 'params' && keys.some((other) => other !== k && (fold(other) === fold(k) || other === fold(k)))) {
          out.add('case_variant_key');
        }
      });
      for (const e of node.entries) {
        const child = zone === 'params' || (zone === 'root' && e.key === 'params') ? 'params' : 'plain';
        violations(e.value, depth + 1, child, out);
      }
    }
  }
  return out;
}

function expectedValue(node: Ast): JsonValue {
  switch (node.t) {
    case 'lit':
      return node.text === 'null'
        ? null
        : node.text === 'true'
          ? true
          : node.text === 'false'
            ? false
            : Number(node.text);
    case 'str':
      return node.value;
    case 'arr':
      return node.items.map(expectedValue);
    case 'obj': {
      const obj: Record<string, JsonValue> = {};
      for (const e of node.entries)
        Object.defineProperty(obj, e.key, {
          value: expectedValue(e.value),
          writable: true,
          enumerable: true,
          configurable: true,
        });
      return obj;
    }
  }
}

/**
 * Structural equality with Object.is on numbers, the same own keys (in the same order unless
 * `anyOrder`) and the same prototype.
 * vitest's toStrictEqual cannot be used: it compares `a.constructor`, which for a parsed object with
 * an own "constructor" key is data, not the class.
 */
function sameJson(a: JsonValue, b: JsonValue, anyOrder = false): boolean {
  if (typeof a !== 'object' || a === null || typeof b !== 'object' || b === null) return Object.is(a, b);
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  if (Array.isArray(a)) {
    return (
      Array.isArray(b) &&
      a.length === b.length &&
      a.every((item, i) => Object.hasOwn(b, i) && sameJson(item, b[i] as JsonValue, anyOrder))
    );
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (anyOrder) {
    ka.sort();
    kb.sort();
  }
  return (
    ka.length === kb.length &&
    ka.every(
      (k, i) =>
        k === kb[i] &&
        Object.hasOwn(a, k) &&
        Object.hasOwn(b, k) &&
        sameJson(a[k] as JsonValue, b[k] as JsonValue, anyOrder),
    )
  );
}

function expectSame(actual: JsonValue, expected: JsonValue, anyOrder = false): void {
  if (!sameJson(actual, expected, anyOrder)) {
    throw new Error(`values differ:\n  ${JSON.stringify(actual)}\n  ${JSON.stringify(expected)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Oracles on values (for inputs only JSON.parse can describe)
// ---------------------------------------------------------------------------------------------

/** The strict rules a JSON.parse value shows it breaks. Duplicates and underflow leave no trace in a value. */
function valueViolations(
  v: JsonValue,
  depth = 0,
  zone: 'root' | 'plain' | 'params' = 'root',
  out = new Set<StrictJsonErrorCode>(),
): Set<StrictJsonErrorCode> {
  if (typeof v === 'number') {
    if (!(Math.abs(v) <= Number.MAX_SAFE_INTEGER) || Object.is(v, -0)) out.add('number_out_of_range');
  } else if (typeof v === 'string') {
    if (LONE.test(v)) out.add('lone_surrogate');
  } else if (Array.isArray(v)) {
    if (depth + 1 > MAX_JSON_DEPTH) out.add('too_deep');
    for (const item of v) valueViolations(item, depth + 1, zone === 'params' ? 'params' : 'plain', out);
  } else if (typeof v === 'object' && v !== null) {
    if (depth + 1 > MAX_JSON_DEPTH) out.add('too_deep');
    const keys = Object.keys(v);
    for (const k of keys) {
      if (LONE.test(k)) out.add('lone_surrogate');
      if (zone === 'params' && keys.some((other) => other !== k && (fold(other) === fold(k) || other === fold(k)))) {
        out.add('case_variant_key');
      }
      const child = zone === 'params' || (zone === 'root' && k === 'params') ? 'params' : 'plain';
      valueViolations(v[k] as JsonValue, depth + 1, child, out);
    }
  }
  return out;
}

const containsZero = (v: JsonValue): boolean =>
  v === 0 ||
  (Array.isArray(v)
    ? v.some(containsZero)
    : typeof v === 'object' && v !== null && Object.values(v).some(containsZero));

/** Checks every property that must hold for any input bytes; returns our result for further checks. */
function checkBytes(bytes: Uint8Array): void {
  const r = parseStrictJson(bytes);
  let text: string | undefined;
  try {
    text = fatalUtf8.decode(bytes);
  } catch {
    text = undefined;
  }
  const bom = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf;
  if (text === undefined) {
    expect(r.ok).toBe(false);
    if (!r.ok) expect(['invalid_utf8', 'bom']).toContain(r.code);
    return;
  }
  if (bom) {
    expect(r).toMatchObject({ ok: false, code: 'bom' });
    return;
  }
  let reference: { ok: true; value: JsonValue } | { ok: false };
  try {
    reference = { ok: true, value: JSON.parse(text) as JsonValue };
  } catch {
    reference = { ok: false };
  }
  if (r.ok) {
    // Soundness: we accept only JSON, and read it exactly as JSON.parse does.
    expect(reference.ok).toBe(true);
    if (reference.ok) expectSame(r.value, reference.value);
    expect([...valueViolations(r.value)]).toEqual([]);
    checkAccepted(r.value);
    return;
  }
  expect(r.offset).toBeGreaterThanOrEqual(0);
  expect(r.offset).toBeLessThanOrEqual(bytes.length);
  if (reference.ok) {
    // JSON.parse took it: our refusal must be one of the strict rules, and a visible one must show.
    const visible = valueViolations(reference.value);
    if (r.code === 'duplicate_key') return;
    if (r.code === 'number_out_of_range' && containsZero(reference.value)) return;
    expect([...visible]).toContain(r.code);
  } else {
    expect([
      'syntax',
      'empty',
      'duplicate_key',
      'case_variant_key',
      'lone_surrogate',
      'number_out_of_range',
      'too_deep',
    ]).toContain(r.code);
  }
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC oracle: the message shapes written as zod schemas, independently of jsonrpc.ts.
// ---------------------------------------------------------------------------------------------

const Id = z.union([z.string(), z.int()]);
const Params = z.looseObject({});
const Request = z.strictObject({
  jsonrpc: z.literal('2.0'),
  id: Id,
  method: z.string().min(1),
  params: Params.optional(),
});
const Notification = z.strictObject({
  jsonrpc: z.literal('2.0'),
  method: z.string().startsWith('notifications/'),
  params: Params.optional(),
});
const ResultResponse = z.strictObject({ jsonrpc: z.literal('2.0'), id: Id, result: z.unknown() });
const ErrorResponse = z.strictObject({
  jsonrpc: z.literal('2.0'),
  id: Id,
  error: z.strictObject({ code: z.int(), message: z.string(), data: z.unknown().optional() }),
});
const Name = z.string().min(1);
const METHOD_PARAMS: Record<string, z.ZodType> = {
  'tools/call': z.looseObject({ name: Name, arguments: z.looseObject({}).optional() }),
  'resources/read': z.looseObject({ uri: Name }),
  'resources/subscribe': z.looseObject({ uri: Name }),
  'resources/unsubscribe': z.looseObject({ uri: Name }),
  'prompts/get': z.looseObject({ name: Name, arguments: z.record(z.string(), z.string()).optional() }),
};

function expectedKind(v: JsonValue): 'request' | 'notification' | 'response' | 'invalid' {
  const req = Request.safeParse(v);
  if (req.success) {
    const schema = METHOD_PARAMS[req.data.method];
    return schema === undefined || schema.safeParse(req.data.params).success ? 'request' : 'invalid';
  }
  if (Notification.safeParse(v).success) return 'notification';
  // zod 4 treats a z.unknown() member as required, which is what `result` needs.
  if (ResultResponse.safeParse(v).success) return 'response';
  if (ErrorResponse.safeParse(v).success) return 'response';
  return 'invalid';
}

function checkAccepted(value: JsonValue): void {
  const c = classifyJsonRpc(value);
  expect(c.kind).toBe(expectedKind(value));
  // JCS: total on what we accept, and a fixed point through JSON.
  const canonical = canonicalize(value);
  expectSame(JSON.parse(canonical) as JsonValue, value, true);
  const again = parseStrictJson(encoder.encode(canonical));
  expect(again.ok && canonicalize(again.value)).toBe(canonical);
}

// ---------------------------------------------------------------------------------------------
// Message generators
// ---------------------------------------------------------------------------------------------

const safeJson: fc.Arbitrary<JsonValue> = fc.letrec<{ v: JsonValue }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.boolean(),
    fc.integer({ min: -1e6, max: 1e6 }),
    fc.double({ min: -1e9, max: 1e9, noNaN: true, noDefaultInfinity: true }),
    fc.string({ unit: 'binary', maxLength: 6 }),
    fc.array(tie('v'), { maxLength: 3 }),
    fc.dictionary(key, tie('v'), { maxKeys: 4 }),
  ),
})).v;

const methodName = fc.constantFrom(
  'initialize',
  'ping',
  'tools/list',
  'tools/call',
  'resources/read',
  'resources/subscribe',
  'resources/unsubscribe',
  'prompts/get',
  'notifications/initialized',
  'notifications/cancelled',
  '',
);
const odd = fc.constantFrom<JsonValue>(null, 1.5, true, [], {}, '', 0, 'x');
const idValue = fc.oneof(fc.string({ maxLength: 4 }), fc.integer({ min: -1000, max: 1000 }), odd);
const paramsValue = fc.oneof(
  fc.record(
    {
      name: fc.oneof(fc.constantFrom('gmail__send', 'files__read', 'x'), odd),
      uri: fc.oneof(fc.constant('mcpgw://files/a'), odd),
      arguments: fc.oneof(fc.dictionary(key, fc.oneof(fc.string({ maxLength: 4 }), safeJson), { maxKeys: 4 }), odd),
      _meta: safeJson,
    },
    { requiredKeys: [] },
  ),
  odd,
);

/** Mostly well-formed messages, with every member sometimes missing or wrong. */
const rpcObject = fc.record(
  {
    jsonrpc: fc.oneof({ weight: 9, arbitrary: fc.constant<JsonValue>('2.0') }, { weight: 1, arbitrary: odd }),
    id: idValue,
    method: fc.oneof({ weight: 9, arbitrary: methodName }, { weight: 1, arbitrary: odd }),
    params: paramsValue,
    result: safeJson,
    error: fc.oneof(fc.record({ code: fc.integer(), message: fc.string({ maxLength: 4 }) }), safeJson),
    extra: safeJson,
  },
  { requiredKeys: [] },
);

const rpcText = rpcObject.map((o) => JSON.stringify(o));

const INTERESTING_BYTES = [
  [0xef, 0xbb, 0xbf],
  [0xc0, 0xaf],
  [0xed, 0xa0, 0x80],
  [0xf8],
  [0xff],
  [0x80],
  [0xe2, 0x82],
  [0x00],
  [0x22],
  [0x5c],
  [0x2c],
  [0x7b],
  [0x5d],
  ...[
    '\\ud800',
    '\\udc00',
    '1e400',
    '-0',
    '9007199254740993',
    '"to":1,"To":2,',
    '"id":2,',
    '/*',
    "'",
    'NaN',
    '[[[[[[[[',
  ].map((s) => [...encoder.encode(s)]),
];

type Mutation =
  | { kind: 'flip'; at: number; byte: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: number[] }
  | { kind: 'delete'; at: number; length: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({
    kind: fc.constant('flip' as const),
    at: fc.double({ min: 0, max: 1, noNaN: true }),
    byte: fc.integer({ min: 0, max: 255 }),
  }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.double({ min: 0, max: 1, noNaN: true }),
    bytes: fc.constantFrom(...INTERESTING_BYTES),
  }),
  fc.record({
    kind: fc.constant('delete' as const),
    at: fc.double({ min: 0, max: 1, noNaN: true }),
    length: fc.integer({ min: 1, max: 4 }),
  }),
);

function mutate(bytes: Uint8Array, ms: Mutation[]): Uint8Array {
  let b = [...bytes];
  for (const m of ms) {
    const at = Math.min(b.length, Math.floor(m.at * (b.length + 1)));
    if (m.kind === 'flip' && at < b.length) b[at] = m.byte;
    else if (m.kind === 'truncate') b = b.slice(0, at);
    else if (m.kind === 'insert') b.splice(at, 0, ...m.bytes);
    else if (m.kind === 'delete') b.splice(at, m.length);
  }
  return Uint8Array.from(b);
}

// ---------------------------------------------------------------------------------------------

describe('strict parser, classifier and JCS under random input', () => {
  it('accepts a generated document exactly when it breaks no strict rule, and then reads it like JSON.parse', () => {
    fc.assert(
      fc.property(document, ({ node, pretty }) => {
        const text = serialize(node, pretty);
        const r = parseStrictJson(encoder.encode(text));
        const broken = violations(node);
        if (broken.size === 0) {
          if (!r.ok) throw new Error(`refused ${r.code}: ${r.message}`);
          expectSame(r.value, JSON.parse(text) as JsonValue);
          expectSame(r.value, expectedValue(node));
          checkAccepted(r.value);
        } else {
          expect(r.ok).toBe(false);
          if (!r.ok) expect([...broken]).toContain(r.code);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('classifies generated messages as the zod oracle does', () => {
    fc.assert(
      fc.property(rpcText, (text) => checkBytes(encoder.encode(text))),
      { numRuns: RUNS },
    );
  });

  it('never throws on mutated messages, and agrees with JSON.parse on whatever it accepts', () => {
    fc.assert(
      fc.property(rpcText, fc.array(mutation, { minLength: 1, maxLength: 3 }), (text, ms) => {
        checkBytes(mutate(encoder.encode(text), ms));
      }),
      { numRuns: RUNS },
    );
  });

  it('never throws on arbitrary bytes or JSON-ish token soup', () => {
    const token = fc.constantFrom(
      '{',
      '}',
      '[',
      ']',
      ',',
      ':',
      '"',
      '"a"',
      '"A"',
      '1',
      '-0',
      '0.5e1',
      'true',
      'null',
      ' ',
      '\\u',
      '\\ud800',
      '"params"',
    );
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 64 }),
          fc.array(token, { maxLength: 30 }).map((ts) => encoder.encode(ts.join(''))),
          fc.string({ unit: 'binary', maxLength: 30 }).map((s) => encoder.encode(s)),
        ),
        (bytes) => checkBytes(bytes),
      ),
      { numRuns: RUNS },
    );
  });
});
