/**
 * Regular expressions of the policy file. Layer 1 tests them with Rego's `regex.match`, which
 * OPA's Wasm runtime implements with RE2, so a pattern is checked here with the same engine
 * (re2-wasm) at load: a pattern RE2 cannot compile would otherwise fail at decision time.
 */
import re2 from 're2-wasm/build/wasm/re2.js';

/**
 * The package's public `RE2` class first rewrites JavaScript syntax (`\u0041`, `\cA`, `(?<n>`)
 * into RE2 syntax, so it would accept patterns that RE2 itself (in the Wasm policy) rejects. The
 * raw binding compiles the text exactly as written.
 */
const { WrappedRE2 } = re2;

/** RE2's error for a pattern, or null when RE2 compiles it. */
export function re2Error(pattern: string): string | null {
  const compiled = new WrappedRE2(pattern, false, false, false);
  try {
    return compiled.ok() ? null : compiled.error();
  } finally {
    // Emscripten objects live in the Wasm heap until deleted; the typings omit `delete`.
    (compiled as unknown as { delete?: () => void }).delete?.();
  }
}

/** Go's `regexp.QuoteMeta` set: the characters that are operators in RE2 syntax. */
const RE2_META = /[\\.+*?()|[\]{}^$]/g;

export function quoteMeta(literal: string): string {
  return literal.replace(RE2_META, '\\$&');
}

/** A whole-value match: `matches` never tests a substring, whatever the author wrote. */
export function anchorPattern(pattern: string): string {
  return `^(?:${pattern})$`;
}

/** A selector glob (`*` = any run of characters, everything else literal) as an anchored RE2 pattern. */
export function globToPattern(glob: string): string {
  return `^${glob.split('*').map(quoteMeta).join('.*')}$`;
}
