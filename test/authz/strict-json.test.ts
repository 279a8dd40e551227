import { describe, expect, it } from 'vitest';
import {
  MAX_JSON_DEPTH,
  parseStrictJson,
  type JsonValue,
  type StrictJsonErrorCode,
} from '../../src/authz/strict-json.js';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

function accept(text: string): JsonValue {
  const r = parseStrictJson(utf8(text));
  if (!r.ok) throw new Error(`expected acceptance of ${JSON.stringify(text)}, got ${r.code}: ${r.message}`);
  return r.value;
}

function reject(input: string | Uint8Array): { code: StrictJsonErrorCode; message: string; offset: number } {
  const r = parseStrictJson(typeof input === 'string' ? utf8(input) : input);
  if (r.ok) throw new Error(`expected rejection of ${JSON.stringify(input)}, got ${JSON.stringify(r.value)}`);
  return r;
}

const nest = (depth: number, inner = '1'): string => '['.repeat(depth) + inner + ']'.repeat(depth);

describe('parseStrictJson: acceptance', () => {
  it.each([
    ['null', null],
    ['true', true],
    ['false', false],
    ['0', 0],
    ['-1', -1],
    ['0.5', 0.5],
    ['-0.5', -0.5],
    ['1e2', 100],
    ['1E+2', 100],
    ['25e-1', 2.5],
    ['5e-324', 5e-324],
    ['0e400', 0],
    ['9007199254740991', Number.MAX_SAFE_INTEGER],
    ['-9007199254740991', -Number.MAX_SAFE_INTEGER],
    ['9007199254740.991e3', Number.MAX_SAFE_INTEGER],
    ['123456789012345678e-3', 123456789012345.67],
    ['""', ''],
    ['"plain"', 'plain'],
    [' \t\r\n[ 1 , 2 ]\n', [1, 2]],
    ['{}', {}],
    ['[]', []],
  ])('%s', (text, expected) => {
    expect(accept(text)).toStrictEqual(expected);
  });

  it('decodes every escape, escaped surrogate pairs and raw non-BMP text', () => {
    expect(accept(String.raw`"\" \\ \/ \b \f \n \r \t \u0041\u00e9\u20AC \ud83d\ude00"`)).toBe(
      '" \\ / \b \f \n \r \t Aé€ 😀',
    );
    expect(accept('"Grüße 日本語 😀"')).toBe('Grüße 日本語 😀');
    expect(accept(String.raw`"\ufeff\uffff\u0000"`)).toBe('\ufeff\uffff\u0000');
  });

  it('handles strings with many escapes (past the concatenation threshold) exactly like JSON.parse', () => {
    const s = JSON.stringify('a"b\\c\nd\u0001é😀'.repeat(50));
    expect(accept(s)).toBe(JSON.parse(s));
    const long = JSON.stringify('x'.repeat(5000) + '\n'.repeat(5000) + '😀'.repeat(300));
    expect(accept(long)).toBe(JSON.parse(long));
  });

  it('reads numbers around the fast-path limits (15 digits, 10^±22) exactly as JSON.parse does', () => {
    const mantissas = [
      '1',
      '3',
      '7',
      '9',
      '17',
      '123456789012345',
      '999999999999999',
      '1234567890123456',
      '4503599627370497',
    ];
    let checked = 0;
    for (const m of mantissas) {
      for (let e = -30; e <= 30; e++) {
        for (const text of [`${m}e${e}`, `0.${m}e${e}`, `${m.slice(0, 1)}.${m.slice(1) || '0'}E${e}`]) {
          const expected = JSON.parse(text) as number;
          if (Math.abs(expected) > Number.MAX_SAFE_INTEGER || expected === 0) continue;
          expect(accept(text)).toBe(expected);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(500);
  });

  it('accepts ordinary MCP messages and builds the same value as JSON.parse', () => {
    const bodies = [
      {
        jsonrpc: '2.0',
        id: 0,
        method: 'initialize',
        params: {
          protocolVersion: '2025-06-18',
          capabilities: { roots: { listChanged: true }, sampling: {}, elicitation: {} },
          clientInfo: { name: 'claude-code', version: '1.0.0' },
        },
      },
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      {
        jsonrpc: '2.0',
        id: 'call-7',
        method: 'tools/call',
        params: {
          name: 'gmail__send_email',
          arguments: {
            to: ['bob@example.com'],
            subject: 'Grüße — 😀',
            body: 'line 1\nline "2"\ttab',
            attachments: [{ name: 'a.pdf', size: 1024, meta: { pages: 3, ratio: 0.75, tags: [] } }],
            dryRun: false,
            replyTo: null,
          },
          _meta: { progressToken: 42 },
        },
      },
      { jsonrpc: '2.0', id: 3, result: { roots: [{ uri: 'file:///home/u', name: 'home' }] } },
    ];
    for (const body of bodies) {
      for (const text of [JSON.stringify(body), JSON.stringify(body, null, 2)]) {
        expect(accept(text)).toStrictEqual(JSON.parse(text));
      }
    }
  });

  it(`accepts nesting of exactly ${MAX_JSON_DEPTH}`, () => {
    expect(accept(nest(MAX_JSON_DEPTH))).toStrictEqual(JSON.parse(nest(MAX_JSON_DEPTH)));
    expect(accept(`{"a":${nest(MAX_JSON_DEPTH - 1)}}`)).toBeTypeOf('object');
  });

  it('stores __proto__ as an own data property and pollutes nothing', () => {
    const value = accept('{"__proto__":{"polluted":true},"a":{"__proto__":[1]}}');
    expect(value).toStrictEqual(JSON.parse('{"__proto__":{"polluted":true},"a":{"__proto__":[1]}}'));
    const obj = value as Record<string, JsonValue>;
    expect(Object.getPrototypeOf(obj)).toBe(Object.prototype);
    expect(Object.keys(obj)).toEqual(['__proto__', 'a']);
    expect(Object.hasOwn(obj, '__proto__')).toBe(true);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect((obj as { polluted?: unknown }).polluted).toBeUndefined();
    // Later code can use these as ordinary objects: spread and JSON round trip keep the key as data.
    expect(JSON.stringify({ ...obj })).toBe('{"__proto__":{"polluted":true},"a":{"__proto__":[1]}}');
  });

  it('does not mistake inherited names for duplicates', () => {
    expect(accept('{"constructor":1,"toString":2,"hasOwnProperty":3,"__proto__":4}')).toStrictEqual(
      JSON.parse('{"constructor":1,"toString":2,"hasOwnProperty":3,"__proto__":4}'),
    );
  });

  it('allows case variants outside the top-level params subtree', () => {
    accept('{"to":1,"To":2}');
    accept('{"result":{"to":1,"To":2}}');
    accept('{"x":{"params":{"to":1,"To":2}}}');
    accept('[{"params":{"to":1,"To":2}}]');
  });
});

describe('parseStrictJson: rejections', () => {
  it.each<[string, string, StrictJsonErrorCode, number]>([
    ['empty body', '', 'empty', 0],
    ['whitespace only', ' \n ', 'empty', 3],
    ['trailing garbage', '{"a":1} x', 'syntax', 8],
    ['two values', '1 2', 'syntax', 2],
    ['trailing comma in array', '[1,]', 'syntax', 3],
    ['trailing comma in object', '{"a":1,}', 'syntax', 7],
    ['missing comma', '[1 2]', 'syntax', 3],
    ['missing colon', '{"a" 1}', 'syntax', 5],
    ['unquoted key', '{a:1}', 'syntax', 1],
    ['single quotes', "{'a':1}", 'syntax', 1],
    ['line comment', '{"a":1} // c', 'syntax', 8],
    ['block comment', '/* c */ {"a":1}', 'syntax', 0],
    ['NaN', 'NaN', 'syntax', 0],
    ['Infinity', '-Infinity', 'syntax', 0],
    ['leading zero', '012', 'syntax', 0],
    ['negative leading zero', '-01', 'syntax', 0],
    ['leading plus', '+1', 'syntax', 0],
    ['bare dot', '.5', 'syntax', 0],
    ['missing fraction', '1.', 'syntax', 1],
    ['missing exponent', '1e', 'syntax', 2],
    ['hex number', '0x10', 'syntax', 1],
    ['truncated literal', 'tru', 'syntax', 0],
    ['capitalised literal', 'True', 'syntax', 0],
    ['unterminated string', '"abc', 'syntax', 0],
    ['unterminated escape', '"abc\\', 'syntax', 4],
    ['raw newline in string', '"a\nb"', 'syntax', 2],
    ['raw NUL in string', '"a\u0000"', 'syntax', 2],
    ['raw tab in string', '"a\tb"', 'syntax', 2],
    ['invalid escape', '"\\x41"', 'syntax', 1],
    ['short unicode escape', '"\\u12"', 'syntax', 1],
    ['non-hex unicode escape', '"\\u12g4"', 'syntax', 1],
    ['unclosed array', '[1,2', 'syntax', 4],
    ['unclosed object', '{"a":1', 'syntax', 6],
    ['non-JSON whitespace', '\u00a0{}', 'syntax', 0],
    ['duplicate key', '{"a":1,"b":2,"a":3}', 'duplicate_key', 13],
    ['nested duplicate key', '{"x":[{"k":1,"k":1}]}', 'duplicate_key', 13],
    ['duplicate __proto__', '{"__proto__":1,"__proto__":2}', 'duplicate_key', 15],
    ['duplicate key spelled with an escape', '{"a":1,"\\u0061":2}', 'duplicate_key', 7],
    ['case variant in params', '{"params":{"to":"a","To":"b"}}', 'case_variant_key', 20],
    ['case variant deep in params', '{"params":{"arguments":{"x":[{"Cc":1,"cC":2}]}}}', 'case_variant_key', 37],
    ['case variant: long s', '{"params":{"ſubject":1,"subject":2}}', 'case_variant_key', 24],
    ['case variant: Kelvin sign', '{"params":{"k":1,"\u212a":2}}', 'case_variant_key', 17],
    ['case variant: dotless i', '{"params":{"ıd":1,"ID":2}}', 'case_variant_key', 19],
    ['case variant: escaped', '{"params":{"a":1,"\\u0041":2}}', 'case_variant_key', 17],
    ['lone high surrogate', '"\\ud800"', 'lone_surrogate', 1],
    ['lone low surrogate', '"\\udc00"', 'lone_surrogate', 1],
    ['reversed pair', '"\\ude00\\ud83d"', 'lone_surrogate', 1],
    ['high surrogate then BMP escape', '"\\ud83d\\u0041"', 'lone_surrogate', 1],
    ['high surrogate at end of string', '"x\\ud83d"', 'lone_surrogate', 2],
    ['lone surrogate in a key', '{"\\ud800":1}', 'lone_surrogate', 2],
    ['2^53', '9007199254740992', 'number_out_of_range', 0],
    ['2^53 + 1 (rounds to 2^53)', '9007199254740993', 'number_out_of_range', 0],
    ['-2^53', '-9007199254740992', 'number_out_of_range', 0],
    ['big float', '1e20', 'number_out_of_range', 0],
    ['safe-looking float beyond the bound', '9007199254740991.5', 'number_out_of_range', 0],
    ['1e400', '1e400', 'number_out_of_range', 0],
    ['-1e400', '[-1e400]', 'number_out_of_range', 1],
    ['underflow', '1e-400', 'number_out_of_range', 0],
    ['negative underflow', '-1e-400', 'number_out_of_range', 0],
    ['negative zero', '-0', 'number_out_of_range', 0],
    ['negative zero float', '{"a":-0.0}', 'number_out_of_range', 5],
    ['negative zero exponent', '-0e5', 'number_out_of_range', 0],
    ['too deep array', nest(MAX_JSON_DEPTH + 1), 'too_deep', MAX_JSON_DEPTH],
    ['too deep object', '{"a":'.repeat(MAX_JSON_DEPTH + 1) + '1' + '}'.repeat(MAX_JSON_DEPTH + 1), 'too_deep', 320],
    ['very deep (no stack overflow)', '['.repeat(100_000), 'too_deep', MAX_JSON_DEPTH],
  ])('%s', (_name, text, code, offset) => {
    const r = reject(text);
    expect(r.code).toBe(code);
    expect(r.offset).toBe(offset);
    expect(r.message).toMatch(new RegExp(` at byte ${offset}$`));
  });

  it('refuses raw control characters after many escapes too (the buffered string path)', () => {
    const text = `"${'\\n'.repeat(40)}\u0001"`;
    expect(reject(text)).toMatchObject({ code: 'syntax', offset: 81 });
    expect(reject(`"${'\\ud83d\\ude00'.repeat(20)}\\ud800"`).code).toBe('lone_surrogate');
    expect(reject(`"${'\\t'.repeat(20)}`).code).toBe('syntax');
  });

  it('refuses byte-order marks', () => {
    expect(reject(new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d])).code).toBe('bom');
    expect(reject(new Uint8Array([0xff, 0xfe, 0x7b, 0x00, 0x7d, 0x00])).code).toBe('bom');
    expect(reject(new Uint8Array([0xfe, 0xff, 0x00, 0x7b, 0x00, 0x7d])).code).toBe('bom');
    // A BOM anywhere else is not whitespace either.
    expect(reject(' \ufeff{}').code).toBe('syntax');
  });

  it.each<[string, number[], number]>([
    ['lone continuation byte', [0x22, 0x80, 0x22], 1],
    ['truncated two-byte sequence', [0x22, 0x61, 0xc3, 0x22], 2],
    ['overlong slash', [0x22, 0xc0, 0xaf, 0x22], 1],
    ['overlong three-byte', [0x22, 0xe0, 0x80, 0xaf, 0x22], 1],
    ['UTF-8 encoded surrogate', [0x22, 0xed, 0xa0, 0x80, 0x22], 1],
    ['beyond U+10FFFF', [0x22, 0xf4, 0x90, 0x80, 0x80, 0x22], 1],
    ['0xff byte', [0x5b, 0x31, 0x2c, 0xff, 0x5d], 3],
    ['truncated at end', [0x22, 0xf0, 0x9f, 0x98], 1],
  ])('refuses invalid UTF-8: %s', (_name, bytes, offset) => {
    const r = reject(new Uint8Array(bytes));
    expect(r.code).toBe('invalid_utf8');
    expect(r.offset).toBe(offset);
  });

  it('reports byte offsets, not UTF-16 indexes, after multi-byte text', () => {
    // "é" is 2 bytes and "😀" 4 (2 UTF-16 units): the bad token is at UTF-16 index 7 but byte 10.
    const r = reject('["é😀",x]');
    expect(r).toMatchObject({ code: 'syntax', offset: 10 });
    expect(utf8('["é😀",')).toHaveLength(10);
  });

  it('keeps attacker text in messages escaped and short', () => {
    const key = `evil\n${'k'.repeat(500)}`;
    const r = reject(`{${JSON.stringify(key)}:1,${JSON.stringify(key)}:2}`);
    expect(r.code).toBe('duplicate_key');
    expect([...r.message].every((c) => c >= ' ')).toBe(true);
    expect(r.message.length).toBeLessThan(120);
    const n = reject(`1${'0'.repeat(1000)}`);
    expect(n.message.length).toBeLessThan(120);
  });

  it('reports the earliest problem', () => {
    expect(reject('{"a":1,"a":-0}').code).toBe('duplicate_key');
    expect(reject('{"a":-0,"a":1}').code).toBe('number_out_of_range');
  });
});
