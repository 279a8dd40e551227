/**
 * Envoy's request path handling (HCM `path_with_escaped_slashes_action: REJECT_REQUEST`,
 * `normalize_path`, `merge_slashes`), in that order, as Envoy 1.40 applies it to `:path`.
 *
 * Envoy canonicalizes with Chromium's URL path canonicalizer; the rules below are the ones the real
 * binary showed (test/front/path.test.ts holds the observed table): only the part before `?` is
 * touched, `\` is a slash, `.`/`..` segments (also spelled `%2e`, any case) are resolved without
 * climbing above the root, escapes of unreserved characters are decoded, other valid escapes are
 * kept byte for byte (hex case included), a few printable characters are escaped, an invalid `%`
 * stays as it is unless later decoding would turn it into a different valid escape (then it becomes
 * `%25`), and `%00` makes the request invalid. Before that, a segment made of a literal `.` or `..`
 * followed by `;parameters` counts as that dot segment, parameters dropped up to the next `/`
 * (`/a/..;x/b` is `/b`; `%2e;x` and `...;x` are left alone): Envoy does this, Chromium does not.
 */

/** What Chromium does with each ASCII character of a path. */
const enum CharClass {
  /** Copied. */
  Pass = 0,
  /** Copied; an escape of it is decoded (RFC 3986 unreserved). */
  Unreserved = 1,
  /** Percent-encoded on output. */
  Escape = 2,
  /** `.`, `/`, `\` and `%`: handled by the canonicalizer itself. */
  Special = 3,
}

const CLASSES: Uint8Array = (() => {
  const t = new Uint8Array(128).fill(CharClass.Pass);
  for (let c = 0; c < 0x21; c++) t[c] = CharClass.Escape;
  t[0x7f] = CharClass.Escape;
  for (const ch of '"#<>`{|}^') t[ch.charCodeAt(0)] = CharClass.Escape;
  for (let c = 0x30; c <= 0x39; c++) t[c] = CharClass.Unreserved;
  for (let c = 0x41; c <= 0x5a; c++) t[c] = CharClass.Unreserved;
  for (let c = 0x61; c <= 0x7a; c++) t[c] = CharClass.Unreserved;
  for (const ch of '-_~') t[ch.charCodeAt(0)] = CharClass.Unreserved;
  for (const ch of './\\%') t[ch.charCodeAt(0)] = CharClass.Special;
  return t;
})();

const HEX = '0123456789ABCDEF';

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

const isHex = (c: number): boolean => hexValue(c) !== -1;

/** Length of a dot at `i` (`.` is 1, `%2e`/`%2E` is 3), or 0. */
function dotAt(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c === 0x2e) return 1;
  if (c === 0x25 && s.charCodeAt(i + 1) === 0x32 && (s.charCodeAt(i + 2) | 0x20) === 0x65) return 3;
  return 0;
}

const isSlash = (c: number): boolean => c === 0x2f || c === 0x5c;

/**
 * The path part canonicalized as Envoy's `normalize_path` does, or null when Envoy rejects it.
 * `path` must start with `/` (origin-form request target without its query).
 */
export function canonicalizePath(path: string): string | null {
  let out = '';
  // Index in `out` of the last `%` that did not start a valid escape, or -1.
  let lastInvalidPercent = -1;
  const end = path.length;
  // Chromium re-checks a stray `%` after each character it writes: if the two characters that now
  // follow it are hex digits, "%2%32" would have become a new escape "%22", so the `%` becomes "%25".
  const fixStrayPercent = (): void => {
    if (lastInvalidPercent >= 0 && out.length - lastInvalidPercent === 3) {
      if (isHex(out.charCodeAt(lastInvalidPercent + 1)) && isHex(out.charCodeAt(lastInvalidPercent + 2))) {
        out = out.slice(0, lastInvalidPercent + 1) + '25' + out.slice(lastInvalidPercent + 1);
      }
      lastInvalidPercent = -1;
    }
  };
  for (let i = 0; i < end; i++) {
    const c = path.charCodeAt(i);
    const cls = c < 0x80 ? CLASSES[c] : CharClass.Escape;
    if (cls === CharClass.Pass || cls === CharClass.Unreserved) {
      out += path[i];
      fixStrayPercent();
      continue;
    }
    if (cls === CharClass.Escape) {
      // Envoy's codec refuses these bytes before normalization; escaping them keeps this function
      // total for callers that did not.
      out += escapeCodeUnit(c);
      continue;
    }
    const dotLen = dotAt(path, i);
    if (dotLen > 0) {
      if (out.length > 0 && out.charCodeAt(out.length - 1) === 0x2f) {
        const after = i + dotLen;
        if (after === end) {
          // "/." at the end: the current directory, keeping its trailing slash.
          i = after - 1;
          continue;
        }
        if (isSlash(path.charCodeAt(after))) {
          i = after;
          continue;
        }
        const second = dotAt(path, after);
        if (second > 0) {
          const afterSecond = after + second;
          if (afterSecond === end || isSlash(path.charCodeAt(afterSecond))) {
            out = backUpToPreviousSlash(out);
            if (lastInvalidPercent >= out.length) lastInvalidPercent = -1;
            i = afterSecond === end ? afterSecond - 1 : afterSecond;
            continue;
          }
        }
      }
      out += '.';
      i += dotLen - 1;
      fixStrayPercent();
      continue;
    }
    if (c === 0x5c || c === 0x2f) {
      out += '/';
      fixStrayPercent();
      continue;
    }
    // '%'
    const hi = hexValue(path.charCodeAt(i + 1));
    const lo = i + 2 < end ? hexValue(path.charCodeAt(i + 2)) : -1;
    if (hi === -1 || lo === -1) {
      lastInvalidPercent = out.length;
      out += '%';
      continue;
    }
    const value = hi * 16 + lo;
    if (value === 0) return null;
    if (value < 0x80 && CLASSES[value] === CharClass.Unreserved) {
      out += String.fromCharCode(value);
    } else {
      out += path.slice(i, i + 3);
    }
    i += 2;
    fixStrayPercent();
  }
  return out;
}

function escapeCodeUnit(c: number): string {
  if (c < 0x100) return '%' + HEX[c >> 4] + HEX[c & 15];
  let s = '';
  for (const b of Buffer.from(String.fromCharCode(c), 'utf8')) s += '%' + HEX[b >> 4] + HEX[b & 15];
  return s;
}

/** Drops the last segment of `out` (which ends with `/`), never going above the leading slash. */
function backUpToPreviousSlash(out: string): string {
  let i = out.length - 1;
  if (i === 0) return out;
  i--;
  while (i > 0 && out.charCodeAt(i) !== 0x2f) i--;
  return out.slice(0, i + 1);
}

/**
 * Envoy's `merge_slashes`: runs of `/` become one, a leading and a trailing slash are kept. Envoy
 * rebuilds the path from its non-empty segments, so a path made only of slashes stays `//`.
 */
export function mergeSlashes(path: string): string {
  if (!path.includes('//')) return path;
  const prefix = path.startsWith('/') ? '/' : '';
  const suffix = path.endsWith('/') ? '/' : '';
  return (
    prefix +
    path
      .split('/')
      .filter((s) => s !== '')
      .join('/') +
    suffix
  );
}

/** Envoy drops path parameters from `.` and `..` segments (the Tomcat-style `..;/` trick). */
export function dropDotSegmentParameters(path: string): string {
  if (!path.includes('.;')) return path;
  return path
    .split('/')
    .map((seg) => (DOT_WITH_PARAMETERS.test(seg) ? seg.slice(0, seg.indexOf(';')) : seg))
    .join('/');
}

const DOT_WITH_PARAMETERS = /^\.\.?;/;
const ESCAPED_SLASH = /%(2f|5c)/i;
/** Anything `canonicalizePath` or `mergeSlashes` could change. */
const NEEDS_WORK = /[%.\\"<>`{|}^]|\/\//;

/**
 * `:path` as Envoy forwards it (query kept verbatim), or null when Envoy answers 400: an escaped
 * slash or backslash in the path part, or a path the canonicalizer refuses.
 */
export function normalizeRequestPath(target: string): string | null {
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  if (!NEEDS_WORK.test(path)) return target;
  if (ESCAPED_SLASH.test(path)) return null;
  const canonical = canonicalizePath(dropDotSegmentParameters(path));
  if (canonical === null) return null;
  const merged = mergeSlashes(canonical);
  return q === -1 ? merged : merged + target.slice(q);
}
