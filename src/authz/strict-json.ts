/**
 * The strict JSON parser shared by authz and the gateway (DESIGN §3 item 3): both sides must see
 * the same message, so everything another JSON parser could read differently is refused rather
 * than resolved. RFC 8259 grammar, plus these refusals:
 *
 * - a byte-order mark (UTF-8, or the UTF-16 marks), and any invalid UTF-8;
 * - duplicate keys at any depth (parsers disagree on first-wins vs last-wins);
 * - inside the top-level `params` subtree, keys that differ only by case: Go's encoding/json and
 *   many case-insensitive lookups would merge them. Case is folded as `toUpperCase().toLowerCase()`
 *   so that Unicode variants such as `ſ`/`s`, `K` (Kelvin sign)/`k` and `ı`/`i` also collide;
 * - lone surrogates, escaped (`"\ud800"`) or otherwise;
 * - numbers that do not survive as an exact binary64 value a peer would read the same way:
 *   magnitude above Number.MAX_SAFE_INTEGER (2^53 − 1, so "9007199254740993" cannot silently become
 *   2^53), whether written as an integer or a float (`1e20`, `1e400`); a non-zero literal that
 *   underflows to zero (`1e-400`); and negative zero (`-0`, `-0.0`), which JavaScript compares equal
 *   to 0 but other languages keep apart. All of these are `number_out_of_range`. Ordinary fractions
 *   (`0.1`) are accepted with the usual binary64 rounding, exactly as JSON.parse does;
 * - nesting deeper than {@link MAX_JSON_DEPTH} arrays/objects.
 *
 * Objects are ordinary objects (prototype Object.prototype), like JSON.parse's, so zod, the MCP SDK,
 * structuredClone and test matchers treat them as they would treat JSON.parse output. A `__proto__`
 * key is stored with Object.defineProperty as an own data property, never through the setter that
 * would swap the prototype, which is also what JSON.parse does. Consequences for readers: test key
 * presence with Object.hasOwn (not `in`, not a truthiness check), since inherited names such as
 * `constructor` are visible on these objects; and never copy them with Object.assign (it invokes the
 * `__proto__` setter on the target), use spread or structuredClone.
 *
 * The parser is recursive descent with recursion bounded by MAX_JSON_DEPTH, so no input can exhaust
 * the stack.
 */

export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

export const MAX_JSON_DEPTH = 64;

export type StrictJsonErrorCode =
  | 'empty'
  | 'bom'
  | 'invalid_utf8'
  | 'syntax'
  | 'duplicate_key'
  | 'case_variant_key'
  | 'lone_surrogate'
  | 'number_out_of_range'
  | 'too_deep';

export type StrictJsonResult =
  | { ok: true; value: JsonValue }
  | {
      ok: false;
      code: StrictJsonErrorCode;
      /** Human-readable, ends with the byte offset; safe to log (attacker text is escaped and truncated). */
      message: string;
      /** Byte offset into the input where the problem was found. */
      offset: number;
    };

// ignoreBOM keeps a leading U+FEFF in the decoded text instead of silently dropping it; we refuse
// it explicitly before decoding anyway, so this is defence in depth.
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
// Turns the scratch buffer of an escaped string back into a string. It only ever sees well-formed
// UTF-16 (lone surrogates are refused before they reach it), so its replacement behaviour never applies.
const utf16 = new TextDecoder(new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 'utf-16le' : 'utf-16be', {
  ignoreBOM: true,
});

export function parseStrictJson(bytes: Uint8Array): StrictJsonResult {
  if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    return failure('bom', 'byte-order mark is not allowed', 0);
  }
  if (bytes.length >= 2 && ((bytes[0] === 0xfe && bytes[1] === 0xff) || (bytes[0] === 0xff && bytes[1] === 0xfe))) {
    return failure('bom', 'UTF-16 byte-order mark is not allowed (the body must be UTF-8)', 0);
  }
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    return failure('invalid_utf8', 'invalid UTF-8', firstInvalidUtf8(bytes));
  }
  try {
    return { ok: true, value: new Parser(text).parseDocument() };
  } catch (e) {
    if (e instanceof ParseFailure) return failure(e.code, e.message, utf8Length(text, e.index));
    throw e;
  }
}

function failure(code: StrictJsonErrorCode, message: string, offset: number): StrictJsonResult {
  return { ok: false, code, message: `${message} at byte ${offset}`, offset };
}

class ParseFailure {
  constructor(
    readonly code: StrictJsonErrorCode,
    readonly message: string,
    /** UTF-16 index into the decoded text; converted to a byte offset once, on the error path. */
    readonly index: number,
  ) {}
}

/** Where the object being parsed sits relative to the top-level `params`, which gets the case rule. */
type Zone = 'root' | 'plain' | 'params';

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
/** Escapes per string handled by plain concatenation before switching to the scratch buffer. */
const CONCAT_ESCAPES = 16;
// Literals, not 10 ** k: each is exactly representable and the literal is guaranteed to be exact.
const POW10 = [
  1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
  1e21, 1e22,
];

class Parser {
  private pos = 0;
  private readonly len: number;

  constructor(private readonly src: string) {
    this.len = src.length;
  }

  parseDocument(): JsonValue {
    this.skipWhitespace();
    if (this.pos >= this.len) throw new ParseFailure('empty', 'no JSON value', this.pos);
    const value = this.parseValue(0, 'root');
    this.skipWhitespace();
    if (this.pos < this.len) throw this.unexpected('after the JSON value');
    return value;
  }

  private parseValue(depth: number, zone: Zone): JsonValue {
    const c = this.src.charCodeAt(this.pos);
    switch (c) {
      case 0x7b /* { */:
        return this.parseObject(depth + 1, zone);
      case 0x5b /* [ */:
        return this.parseArray(depth + 1, zone);
      case 0x22 /* " */:
        return this.parseString();
      case 0x74 /* t */:
        return this.parseLiteral('true', true);
      case 0x66 /* f */:
        return this.parseLiteral('false', false);
      case 0x6e /* n */:
        return this.parseLiteral('null', null);
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.parseNumber();
        throw this.unexpected('where a value was expected');
    }
  }

  private checkDepth(depth: number): void {
    if (depth > MAX_JSON_DEPTH) {
      throw new ParseFailure('too_deep', `nesting deeper than ${MAX_JSON_DEPTH}`, this.pos);
    }
  }

  private parseObject(depth: number, zone: Zone): JsonObject {
    this.checkDepth(depth);
    const src = this.src;
    const obj: JsonObject = {};
    const inParams = zone === 'params';
    // Folds of the keys that are not already their own fold (see caseVariant); most objects never need it.
    let folds: Set<string> | null = null;
    this.pos++;
    this.skipWhitespace();
    if (src.charCodeAt(this.pos) === 0x7d /* } */) {
      this.pos++;
      return obj;
    }
    for (;;) {
      if (src.charCodeAt(this.pos) !== 0x22) throw this.unexpected('where an object key was expected');
      const keyAt = this.pos;
      const key = this.parseString();
      // A plain load first: JSON values are never undefined, so only inherited names need the own check.
      if (obj[key] !== undefined && Object.hasOwn(obj, key)) {
        throw new ParseFailure('duplicate_key', `duplicate key ${quote(key)}`, keyAt);
      }
      if (inParams) {
        if (isOwnFold(key)) {
          if (folds !== null && folds.has(key)) throw caseVariant(key, keyAt);
        } else {
          const folded = key.toUpperCase().toLowerCase();
          if (Object.hasOwn(obj, folded) || (folds !== null && folds.has(folded))) throw caseVariant(key, keyAt);
          (folds ??= new Set()).add(folded);
        }
      }
      this.skipWhitespace();
      if (src.charCodeAt(this.pos) !== 0x3a /* : */) throw this.unexpected('where ":" was expected');
      this.pos++;
      this.skipWhitespace();
      const childZone = inParams || (zone === 'root' && key === 'params') ? 'params' : 'plain';
      const value = this.parseValue(depth, childZone);
      if (key === '__proto__') {
        Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
      } else {
        obj[key] = value;
      }
      this.skipWhitespace();
      const c = src.charCodeAt(this.pos);
      if (c === 0x2c /* , */) {
        this.pos++;
        this.skipWhitespace();
      } else if (c === 0x7d /* } */) {
        this.pos++;
        return obj;
      } else {
        throw this.unexpected('where "," or "}" was expected');
      }
    }
  }

  private parseArray(depth: number, zone: Zone): JsonValue[] {
    this.checkDepth(depth);
    const src = this.src;
    const arr: JsonValue[] = [];
    // A top-level array is a batch: its members are not "the top-level object", so no params zone.
    const childZone = zone === 'params' ? 'params' : 'plain';
    this.pos++;
    this.skipWhitespace();
    if (src.charCodeAt(this.pos) === 0x5d /* ] */) {
      this.pos++;
      return arr;
    }
    for (;;) {
      arr.push(this.parseValue(depth, childZone));
      this.skipWhitespace();
      const c = src.charCodeAt(this.pos);
      if (c === 0x2c /* , */) {
        this.pos++;
        this.skipWhitespace();
      } else if (c === 0x5d /* ] */) {
        this.pos++;
        return arr;
      } else {
        throw this.unexpected('where "," or "]" was expected');
      }
    }
  }

  private parseString(): string {
    const src = this.src;
    const len = this.len;
    const open = this.pos;
    let i = open + 1;
    for (;;) {
      if (i >= len) throw new ParseFailure('syntax', 'unterminated string', open);
      const c = src.charCodeAt(i);
      if (c === 0x22) {
        this.pos = i + 1;
        return src.slice(open + 1, i);
      }
      if (c === 0x5c) return this.parseEscapedString(open, i);
      if (c < 0x20) {
        throw new ParseFailure('syntax', `unescaped control character ${codePoint(c)} in string`, i);
      }
      // Raw surrogates here are always paired: the fatal decoder produced this text.
      i++;
    }
  }

  /**
   * The rest of a string once an escape is seen. The first few escapes build the result by
   * concatenation (cheapest for short strings); after that, code units go to a scratch buffer decoded
   * once at the end, because long cons-string chains make escape-dense text several times slower.
   */
  private parseEscapedString(open: number, firstEscape: number): string {
    const src = this.src;
    const len = this.len;
    let out = src.slice(open + 1, firstEscape);
    let i = firstEscape;
    let runStart = i;
    for (let escapes = 0; escapes < CONCAT_ESCAPES;) {
      if (i >= len) throw new ParseFailure('syntax', 'unterminated string', open);
      const c = src.charCodeAt(i);
      if (c === 0x22) {
        this.pos = i + 1;
        return out + src.slice(runStart, i);
      }
      if (c === 0x5c) {
        out += src.slice(runStart, i);
        i = this.parseEscape(i);
        out +=
          this.escapedLow === 0
            ? String.fromCharCode(this.escapedUnit)
            : String.fromCharCode(this.escapedUnit, this.escapedLow);
        runStart = i;
        escapes++;
        continue;
      }
      if (c < 0x20) {
        throw new ParseFailure('syntax', `unescaped control character ${codePoint(c)} in string`, i);
      }
      i++;
    }
    out += src.slice(runStart, i);
    let buf = this.scratch ?? this.grow(0);
    let n = 0;
    for (;;) {
      if (i >= len) throw new ParseFailure('syntax', 'unterminated string', open);
      if (n + 2 > buf.length) buf = this.grow(n);
      const c = src.charCodeAt(i);
      if (c === 0x22) {
        this.pos = i + 1;
        return out + utf16.decode(buf.subarray(0, n));
      }
      if (c === 0x5c) {
        i = this.parseEscape(i);
        buf[n++] = this.escapedUnit;
        if (this.escapedLow !== 0) buf[n++] = this.escapedLow;
        continue;
      }
      if (c < 0x20) {
        throw new ParseFailure('syntax', `unescaped control character ${codePoint(c)} in string`, i);
      }
      buf[n++] = c;
      i++;
    }
  }

  /** Allocated on the first escape-dense string only: most bodies never need it. */
  private scratch: Uint16Array | null = null;

  private grow(used: number): Uint16Array {
    const old = this.scratch;
    const next = new Uint16Array(old === null ? 1024 : old.length * 2);
    if (old !== null) next.set(old.subarray(0, used));
    this.scratch = next;
    return next;
  }

  /**
   * Output of the last parseEscape: one UTF-16 unit, or a surrogate pair when escapedLow is non-zero.
   * Fields rather than a tuple keep the string loop allocation-free.
   */
  private escapedUnit = 0;
  private escapedLow = 0;

  /** Parses the escape starting at `at` (a backslash); returns the index after it. */
  private parseEscape(at: number): number {
    const c = this.src.charCodeAt(at + 1);
    this.escapedLow = 0;
    switch (c) {
      case 0x22 /* " */:
      case 0x5c /* \ */:
      case 0x2f /* / */:
        this.escapedUnit = c;
        return at + 2;
      case 0x62 /* b */:
        this.escapedUnit = 0x08;
        return at + 2;
      case 0x66 /* f */:
        this.escapedUnit = 0x0c;
        return at + 2;
      case 0x6e /* n */:
        this.escapedUnit = 0x0a;
        return at + 2;
      case 0x72 /* r */:
        this.escapedUnit = 0x0d;
        return at + 2;
      case 0x74 /* t */:
        this.escapedUnit = 0x09;
        return at + 2;
      case 0x75 /* u */: {
        const unit = this.hex4(at + 2, at);
        if (unit >= 0xdc00 && unit <= 0xdfff) {
          throw new ParseFailure('lone_surrogate', `unpaired low surrogate ${codePoint(unit)}`, at);
        }
        this.escapedUnit = unit;
        if (unit < 0xd800 || unit > 0xdbff) return at + 6;
        const src = this.src;
        const low = src.charCodeAt(at + 6) === 0x5c && src.charCodeAt(at + 7) === 0x75 ? this.hex4(at + 8, at + 6) : -1;
        if (low < 0xdc00 || low > 0xdfff) {
          throw new ParseFailure('lone_surrogate', `unpaired high surrogate ${codePoint(unit)}`, at);
        }
        this.escapedLow = low;
        return at + 12;
      }
      default:
        if (at + 1 >= this.len) throw new ParseFailure('syntax', 'unterminated string', at);
        throw new ParseFailure('syntax', `invalid escape ${describe(c)}`, at);
    }
  }

  private hex4(from: number, escapeAt: number): number {
    let v = 0;
    for (let i = from; i < from + 4; i++) {
      const d = hexDigit(this.src.charCodeAt(i));
      if (d < 0) throw new ParseFailure('syntax', 'invalid \\u escape (four hex digits expected)', escapeAt);
      v = (v << 4) | d;
    }
    return v;
  }

  private parseNumber(): number {
    const src = this.src;
    const start = this.pos;
    let i = start;
    const negative = src.charCodeAt(i) === 0x2d;
    if (negative) i++;
    // Digits of integer and fraction parts as one integer; exact while it has at most 15 significant
    // digits, which lets the common case skip slicing and string-to-number conversion.
    let mantissa = 0;
    let significant = 0;
    let fractionDigits = 0;
    let c = src.charCodeAt(i);
    if (c === 0x30) {
      c = src.charCodeAt(++i);
      if (isDigit(c)) throw new ParseFailure('syntax', 'leading zero in number', start);
    } else if (c >= 0x31 && c <= 0x39) {
      do {
        mantissa = mantissa * 10 + (c - 0x30);
        significant++;
        c = src.charCodeAt(++i);
      } while (isDigit(c));
    } else {
      throw new ParseFailure('syntax', 'digit expected after "-"', start);
    }
    if (c === 0x2e /* . */) {
      c = src.charCodeAt(++i);
      if (!isDigit(c)) throw new ParseFailure('syntax', 'digit expected after "."', i - 1);
      do {
        mantissa = mantissa * 10 + (c - 0x30);
        if (mantissa !== 0) significant++;
        fractionDigits++;
        c = src.charCodeAt(++i);
      } while (isDigit(c));
    }
    let exponent = 0;
    let exponentDigits = 0;
    if (c === 0x65 || c === 0x45) {
      c = src.charCodeAt(++i);
      const negativeExponent = c === 0x2d;
      if (c === 0x2b || c === 0x2d) c = src.charCodeAt(++i);
      if (!isDigit(c)) throw new ParseFailure('syntax', 'digit expected in exponent', i);
      do {
        exponent = exponent * 10 + (c - 0x30);
        exponentDigits++;
        c = src.charCodeAt(++i);
      } while (isDigit(c));
      if (negativeExponent) exponent = -exponent;
    }
    const scale = exponent - fractionDigits;
    let n: number;
    if (significant <= 15 && exponentDigits <= 4 && scale >= -22 && scale <= 22) {
      // Clinger's fast path: an exact integer times or over an exact power of ten is one correctly
      // rounded operation, hence bit-identical to JSON.parse.
      n = scale >= 0 ? mantissa * POW10[scale]! : mantissa / POW10[-scale]!;
    } else {
      n = Number(src.slice(negative ? start + 1 : start, i));
      if (n === 0 && mantissa !== 0) {
        throw new ParseFailure('number_out_of_range', `number ${clip(src.slice(start, i))} underflows to zero`, start);
      }
    }
    if (negative) {
      if (n === 0) throw new ParseFailure('number_out_of_range', 'negative zero is not allowed', start);
      n = -n;
    }
    if (!(n <= MAX_SAFE && n >= -MAX_SAFE)) {
      throw new ParseFailure(
        'number_out_of_range',
        `number ${clip(src.slice(start, i))} is outside ±(2^53 - 1)`,
        start,
      );
    }
    this.pos = i;
    return n;
  }

  private parseLiteral<T extends boolean | null>(word: string, value: T): T {
    if (!this.src.startsWith(word, this.pos)) throw this.unexpected('where a value was expected');
    this.pos += word.length;
    return value;
  }

  private skipWhitespace(): void {
    const src = this.src;
    let i = this.pos;
    for (;;) {
      const c = src.charCodeAt(i);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      i++;
    }
    this.pos = i;
  }

  private unexpected(where: string): ParseFailure {
    if (this.pos >= this.len) return new ParseFailure('syntax', `unexpected end of input ${where}`, this.pos);
    return new ParseFailure('syntax', `unexpected ${describe(this.src.charCodeAt(this.pos))} ${where}`, this.pos);
  }
}

/** True when the key has no ASCII capital and nothing beyond ASCII, so folding would return it unchanged. */
function isOwnFold(key: string): boolean {
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c >= 0x80 || (c >= 0x41 && c <= 0x5a)) return false;
  }
  return true;
}

function caseVariant(key: string, at: number): ParseFailure {
  return new ParseFailure('case_variant_key', `key ${quote(key)} differs only by case from another key`, at);
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x57;
  return -1;
}

function codePoint(c: number): string {
  return `U+${c.toString(16).toUpperCase().padStart(4, '0')}`;
}

function describe(c: number): string {
  return c > 0x20 && c < 0x7f ? `"${String.fromCharCode(c)}"` : codePoint(c);
}

/** Keys and numbers are attacker text: bounded and JSON-escaped before they reach a log line. */
function clip(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

function quote(key: string): string {
  return JSON.stringify(clip(key));
}

/** UTF-8 length of text[0, index); exact because the text came from a fatal decode (no lone surrogates). */
function utf8Length(text: string, index: number): number {
  let n = 0;
  for (let i = 0; i < index && i < text.length; i++) {
    const c = text.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c >= 0xd800 && c <= 0xdfff ? 2 : 3;
  }
  return n;
}

/**
 * Offset of the first byte at which UTF-8 decoding fails (WHATWG rules: no overlongs, no surrogates,
 * nothing above U+10FFFF). Only runs on the error path, to give the message a position.
 */
function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i] as number;
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b === 0xe0) lo = 0xa0;
      if (b === 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b === 0xf0) lo = 0x90;
      if (b === 0xf4) hi = 0x8f;
    } else return i;
    for (let k = 1; k <= need; k++) {
      const cont = bytes[i + k];
      if (cont === undefined || cont < lo || cont > hi) return i;
      lo = 0x80;
      hi = 0xbf;
    }
    i += need + 1;
  }
  return bytes.length;
}
