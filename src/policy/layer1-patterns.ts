/**
 * `data.pattern_index` for the Layer 1 policy (see the "Patterns" section of rego/authz.rego).
 *
 * OPA's Wasm runtime compiles an RE2 pattern again on every evaluation, a few microseconds each, and
 * a decision tests a dozen of them. The patterns the compiler makes from globs without operators are
 * literals in disguise, so the engine lists them here and the policy compares strings instead.
 * Anything this parser is not sure about is left out and goes through `regex.match` unchanged.
 */
import type { CompiledSelector, Layer1Data } from './layer1-types.js';

export type PatternShortcut = { exact: string } | { prefix: string } | { suffix: string };

/** The characters that are operators in RE2 syntax outside a class (Go's `regexp.QuoteMeta` set). */
const META = new Set(['\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$']);

type Token = { lit: string } | { op: string };

/** The pattern as literal characters and operators, or null when it uses any other escape. */
function tokens(body: string): Token[] | null {
  const out: Token[] = [];
  const chars = [...body];
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i] as string;
    if (c === '\\') {
      const next = chars[i + 1];
      // `\d`, `\pL`, `\x41`, `\Q…\E`… all mean something other than one literal character.
      if (next === undefined || !META.has(next)) return null;
      out.push({ lit: next });
      i++;
    } else if (META.has(c)) {
      out.push({ op: c });
    } else {
      out.push({ lit: c });
    }
  }
  return out;
}

function literal(ts: Token[]): string | null {
  let s = '';
  for (const t of ts) {
    if (!('lit' in t)) return null;
    s += t.lit;
  }
  return s;
}

const isAnyRun = (a: Token | undefined, b: Token | undefined) =>
  a !== undefined && b !== undefined && 'op' in a && a.op === '.' && 'op' in b && b.op === '*';

/**
 * `^lit$` → exact, `^lit.*$` → prefix, `^.*lit$` → suffix; otherwise null. `^` and `$` are
 * whole-text anchors in RE2 without the `m` flag, and the flag can only be set with `(`.
 */
export function patternShortcut(pattern: string): PatternShortcut | null {
  const ts = tokens(pattern);
  if (!ts || ts.length < 2) return null;
  const first = ts[0];
  const last = ts[ts.length - 1];
  if (!first || !('op' in first) || first.op !== '^' || !last || !('op' in last) || last.op !== '$') return null;
  const body = ts.slice(1, -1);
  const exact = literal(body);
  if (exact !== null) return { exact };
  // `.` matches any character but a newline; the policy checks the value has none, which is only
  // the same test when the literal part has none either.
  if (isAnyRun(body[body.length - 2], body[body.length - 1])) {
    const prefix = literal(body.slice(0, -2));
    if (prefix !== null && !prefix.includes('\n')) return { prefix };
  }
  if (isAnyRun(body[0], body[1])) {
    const suffix = literal(body.slice(2));
    if (suffix !== null && !suffix.includes('\n')) return { suffix };
  }
  return null;
}

function selectorPatterns(sel: CompiledSelector): string[] {
  const out: string[] = [];
  for (const p of [sel.service, sel.tool, sel.verb, ...(sel.labels ?? [])]) if (typeof p === 'string') out.push(p);
  return out;
}

/** Every pattern of `data` that has a shortcut. A null-prototype object: patterns are arbitrary keys. */
export function patternIndex(data: Layer1Data): Record<string, PatternShortcut> {
  const patterns: string[] = [];
  const { limits, budgets, preconditions, flows, duties } = data.layer2;
  for (const x of [...limits, ...budgets, ...preconditions]) patterns.push(...selectorPatterns(x.select));
  for (const x of flows) patterns.push(...selectorPatterns(x.after), ...selectorPatterns(x.then));
  for (const x of duties) patterns.push(...selectorPatterns(x.first), ...selectorPatterns(x.then));
  for (const byTool of Object.values(data.classifiers)) {
    for (const list of Object.values(byTool)) {
      for (const c of list) if (c.op === 'matches' && typeof c.value === 'string') patterns.push(c.value);
    }
  }
  const index = Object.create(null) as Record<string, PatternShortcut>;
  for (const p of patterns) {
    const s = patternShortcut(p);
    if (s) index[p] = s;
  }
  return index;
}
