/**
 * The forms in which a secret can come back from a backend that echoes, logs or wraps it: raw, as
 * it appears inside JSON string literals (text that is itself JSON), percent-encoded, and base64
 * (an `Authorization: Basic` header, a data URL, a JWT segment).
 *
 * Base64 is the subtle one. The encoding of `prefix ‖ secret ‖ suffix` depends on the prefix length
 * modulo 3; for each of the three offsets only the characters whose 6 bits all come from the secret
 * are fixed, whatever surrounds it. Those characters are the pattern (the "core"). When the secret
 * ends the encoded data, the last partial character (zero-filled) and the padding are fixed too,
 * so those longer end forms are patterns as well and a match on them redacts the tail with it.
 */

export type FormKind = 'raw' | 'json' | 'url' | 'base64';

export interface SecretForm {
  kind: FormKind;
  /** Which variant, for tests and diagnostics (`base64 std offset 1 padded`). */
  variant: string;
  text: string;
}

/** Under this many characters a base64 fragment matches too much unrelated data to be a pattern. */
export const MIN_FORM_LENGTH = 8;

const HEX_UPPER = /%[0-9A-F]{2}/g;

function hex4(code: number, upper: boolean): string {
  const h = code.toString(16).padStart(4, '0');
  return `\\u${upper ? h.toUpperCase() : h}`;
}

/** `JSON.stringify` without the quotes, then with the escapes other encoders choose. */
function jsonForms(value: string): [string, string][] {
  const std = JSON.stringify(value).slice(1, -1);
  const nonAscii = (s: string, upper: boolean): string => {
    let out = '';
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      out += c >= 0x80 ? hex4(c, upper) : (s[i] as string);
    }
    return out;
  };
  const slash = (s: string): string => s.replaceAll('/', '\\/');
  const ascii = nonAscii(std, false);
  // Go's encoding/json escapes <, > and & (and U+2028/9) for HTML safety by default.
  const goStyle = std.replace(/[<>&\u2028\u2029]/g, (ch) => hex4(ch.charCodeAt(0), false));
  return [
    ['json', std],
    ['json escaped-slash', slash(std)],
    ['json ascii (python)', ascii],
    ['json ascii upper-hex', nonAscii(std, true)],
    ['json ascii escaped-slash (php)', slash(ascii)],
    ['json html-safe (go)', goStyle],
    // JSON text carried in a JSON string inside the text (a logged request body, say).
    ['json twice', JSON.stringify(std).slice(1, -1)],
  ];
}

function urlForms(value: string): [string, string][] {
  let component: string;
  try {
    component = encodeURIComponent(value);
  } catch {
    // A lone surrogate has no percent-encoding; such values are refused at `set` anyway.
    return [];
  }
  const lower = (s: string): string => s.replace(HEX_UPPER, (m) => m.toLowerCase());
  // RFC 3986 unreserved only (Python's quote(safe=''), Go's PathEscape differ little from this).
  const strict = component.replace(/[!'()*]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase()}`);
  const form = new URLSearchParams({ v: value }).toString().slice(2);
  return [
    ['url component', component],
    ['url component lower-hex', lower(component)],
    ['url rfc3986', strict],
    ['url rfc3986 lower-hex', lower(strict)],
    ['url form', form],
    ['url form lower-hex', lower(form)],
  ];
}

function base64Forms(value: string): [string, string][] {
  const bytes = Buffer.from(value, 'utf8');
  const n = bytes.length;
  const out: [string, string][] = [];
  for (let offset = 0; offset < 3; offset++) {
    const data = Buffer.concat([Buffer.alloc(offset), bytes]);
    const padded = data.toString('base64');
    // Character j covers bits [6j, 6j+6) of the data; the secret occupies [8·offset, 8·(offset+n)).
    const first = Math.ceil((8 * offset) / 6);
    const end = Math.floor((8 * (offset + n)) / 6);
    const core = padded.slice(first, end);
    if (core.length < MIN_FORM_LENGTH) continue;
    const tail = padded.slice(first);
    const tailUnpadded = tail.replace(/=+$/, '');
    for (const [alphabet, map] of [
      ['std', (s: string) => s],
      ['url', (s: string) => s.replaceAll('+', '-').replaceAll('/', '_')],
    ] as const) {
      out.push([`base64 ${alphabet} offset ${offset}`, map(core)]);
      out.push([`base64 ${alphabet} offset ${offset} at end`, map(tailUnpadded)]);
      out.push([`base64 ${alphabet} offset ${offset} at end padded`, map(tail)]);
    }
  }
  return out;
}

/** Every distinct form of `value`, raw first; forms identical to an earlier one are dropped. */
export function secretForms(value: string): SecretForm[] {
  const seen = new Set<string>();
  const out: SecretForm[] = [];
  const add = (kind: FormKind, variant: string, text: string): void => {
    if (text === '' || seen.has(text)) return;
    seen.add(text);
    out.push({ kind, variant, text });
  };
  add('raw', 'raw', value);
  for (const [variant, text] of jsonForms(value)) add('json', variant, text);
  for (const [variant, text] of urlForms(value)) add('url', variant, text);
  for (const [variant, text] of base64Forms(value)) add('base64', variant, text);
  return out;
}
