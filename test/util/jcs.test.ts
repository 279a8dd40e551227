import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseStrictJson, type JsonValue } from '../../src/authz/strict-json.js';
import { argumentsDigest, canonicalize } from '../../src/util/jcs.js';

function parse(text: string): JsonValue {
  const r = parseStrictJson(new TextEncoder().encode(text));
  if (!r.ok) throw new Error(r.message);
  return r.value;
}

/** The double whose IEEE 754 bit pattern is `hex`, as RFC 8785 Appendix B lists its test values. */
function fromBits(hex: string): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, BigInt(`0x${hex}`));
  return view.getFloat64(0);
}

describe('canonicalize (RFC 8785)', () => {
  it('serializes the §3.2.2 example: whitespace gone, keys sorted, numbers and strings normalized', () => {
    const input = String.raw`{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }`;
    // The strict parser refuses 1E30 (beyond 2^53), so this vector goes through JSON.parse.
    expect(canonicalize(JSON.parse(input) as JsonValue)).toBe(
      String.raw`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`,
    );
  });

  it('sorts keys by UTF-16 code units (§3.2.3), not by code points', () => {
    const input = String.raw`{
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis"
    }`;
    const out = canonicalize(parse(input));
    expect(out).toBe(
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","ö":"Latin Small Letter O With Diaeresis",' +
        '"€":"Euro Sign","😀":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
    // U+1F600 sorts before U+FB33 because its first UTF-16 unit (0xD83D) is smaller.
    expect(out.indexOf('😀')).toBeLessThan(out.indexOf('\ufb33'));
  });

  it('sorts nested objects and keeps array order', () => {
    expect(canonicalize(parse('{"b":[{"z":1,"a":2},3],"a":{"y":{"d":1,"c":2}}}'))).toBe(
      '{"a":{"y":{"c":2,"d":1}},"b":[{"a":2,"z":1},3]}',
    );
    expect(canonicalize(parse('{"10":1,"9":2,"a":3,"B":4}'))).toBe('{"10":1,"9":2,"B":4,"a":3}');
  });

  it.each([
    ['0000000000000000', '0'],
    ['8000000000000000', '0'],
    ['0000000000000001', '5e-324'],
    ['8000000000000001', '-5e-324'],
    ['7fefffffffffffff', '1.7976931348623157e+308'],
    ['ffefffffffffffff', '-1.7976931348623157e+308'],
    ['4340000000000000', '9007199254740992'],
    ['c340000000000000', '-9007199254740992'],
    ['4430000000000000', '295147905179352830000'],
    ['44b52d02c7e14af5', '9.999999999999997e+22'],
    ['44b52d02c7e14af6', '1e+23'],
    ['44b52d02c7e14af7', '1.0000000000000001e+23'],
    ['444b1ae4d6e2ef4e', '999999999999999700000'],
    ['444b1ae4d6e2ef4f', '999999999999999900000'],
    ['444b1ae4d6e2ef50', '1e+21'],
    ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
    ['3eb0c6f7a0b5ed8d', '0.000001'],
    ['41b3de4355555553', '333333333.3333332'],
    ['41b3de4355555554', '333333333.33333325'],
    ['41b3de4355555555', '333333333.3333333'],
    ['41b3de4355555556', '333333333.3333334'],
    ['41b3de4355555557', '333333333.33333343'],
    ['becbf647612f3696', '-0.0000033333333333333333'],
    ['43143ff3c1cb0959', '1424953923781206.2'],
  ])('number %s → %s (Appendix B)', (bits, expected) => {
    expect(canonicalize(fromBits(bits))).toBe(expected);
  });

  it.each<[number, string]>([
    [1e21, '1e+21'],
    [1e20, '100000000000000000000'],
    [1e-7, '1e-7'],
    [1e-6, '0.000001'],
    [-0, '0'],
    [100, '100'],
    [1.5, '1.5'],
  ])('number %d', (n, expected) => {
    expect(canonicalize(n)).toBe(expected);
  });

  it('normalizes number spellings the strict parser accepts', () => {
    expect(canonicalize(parse('[1.0, 1e0, 10e-1, 0.1e1, 100E-2, 4.50, 2e-3]'))).toBe('[1,1,1,1,1,4.5,0.002]');
  });

  it('escapes strings minimally, like JSON.stringify', () => {
    expect(canonicalize('\u0000\u0008\u0009\u000a\u000c\u000d\u001f\u007f"\\/é😀\u2028')).toBe(
      '"\\u0000\\b\\t\\n\\f\\r\\u001f\u007f\\"\\\\/é😀\u2028"',
    );
  });

  it('keeps a __proto__ key from the strict parser', () => {
    expect(canonicalize(parse('{"b":1,"__proto__":{"x":2}}'))).toBe('{"__proto__":{"x":2},"b":1}');
  });

  it('refuses what I-JSON cannot represent', () => {
    expect(() => canonicalize(Number.NaN)).toThrow(TypeError);
    expect(() => canonicalize(Number.POSITIVE_INFINITY)).toThrow(TypeError);
    expect(() => canonicalize('\ud800')).toThrow(TypeError);
    expect(() => canonicalize({ ['\udc00']: 1 })).toThrow(TypeError);
    expect(() => canonicalize({ a: undefined } as unknown as JsonValue)).toThrow(TypeError);
    // eslint-disable-next-line no-sparse-arrays
    expect(() => canonicalize([1, , 2] as unknown as JsonValue)).toThrow(TypeError);
    expect(() => canonicalize(10n as unknown as JsonValue)).toThrow(TypeError);
  });
});

describe('argumentsDigest', () => {
  it('is the hex SHA-256 of the UTF-8 canonical form', () => {
    const args = parse('{"to":"bob@example.com","subject":"Grüße"}');
    const expected = createHash('sha256')
      .update(Buffer.from('{"subject":"Grüße","to":"bob@example.com"}', 'utf8'))
      .digest('hex');
    expect(argumentsDigest(args)).toBe(expected);
    expect(argumentsDigest({})).toBe(createHash('sha256').update('{}').digest('hex'));
    expect(argumentsDigest({})).toBe('44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a');
  });

  it('is the same for every spelling of the same arguments', () => {
    const spellings = [
      '{"amount":100,"to":"acct-1","memo":"café"}',
      '{ "memo" : "caf\\u00e9", "to":"acct-1", "amount": 1e2 }',
      '{"to":"\\u0061cct-1","amount":100.0,"memo":"cafe\u0301"}',
    ];
    const digests = spellings.map((s) => argumentsDigest(parse(s)));
    expect(digests[1]).toBe(digests[0]);
    // Unicode normalization is not JCS's business: a decomposed é is a different argument.
    expect(digests[2]).not.toBe(digests[0]);
  });
});
