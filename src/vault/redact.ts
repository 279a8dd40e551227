/**
 * Redaction of secrets from everything a backend sends back (results, errors, notifications,
 * progress, sampling requests), on the parsed JSON: every string value and every object key is
 * searched for every stored secret in every form of `encodings.ts`, with one Aho–Corasick
 * automaton, and each match becomes `[REDACTED:<NAME>]`. Overlapping matches are redacted as their
 * union, so no fragment of a secret survives between two replacements.
 *
 * Fail closed: a value that is not JSON (a class instance, a bigint, a nesting deeper than
 * `maxDepth`) throws instead of passing through unexamined.
 *
 * A `Redactor` is immutable; build a new one when the set of secrets changes (`live.ts` does).
 */
import { AhoCorasick } from './aho-corasick.js';
import { secretForms } from './encodings.js';
import { MIN_SECRET_LENGTH } from './types.js';

export interface SecretEntry {
  service: string;
  name: string;
  value: string;
}

export interface RedactorOptions {
  /** Deeper JSON throws. Default 256 (the gateway's own parser stops at 64). */
  maxDepth?: number;
  /** See `AhoCorasickOptions.denseBudget`. */
  denseBudget?: number;
}

export class RedactionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedactionError';
  }
}

export function redactionLabel(name: string): string {
  return `[REDACTED:${name}]`;
}

/**
 * Matches found in one text, merged into disjoint spans. Matches arrive in order of their end;
 * a new one overlaps exactly those spans on the stack that end after it starts, and since its end
 * is the largest so far, merging pops them.
 */
class Spans {
  starts: number[] = [];
  ends: number[] = [];
  /** Of each span, the longest match inside it: its secret names the span. */
  patterns: number[] = [];
  lengths: number[] = [];
  /** Spans in use; the arrays are reused across texts, so only this is reset. */
  size = 0;

  add(start: number, end: number, pattern: number, length: number): void {
    let s = start;
    let p = pattern;
    let l = length;
    while (this.size > 0 && (this.ends[this.size - 1] as number) > s) {
      const top = this.size - 1;
      s = Math.min(s, this.starts[top] as number);
      if ((this.lengths[top] as number) > l) {
        l = this.lengths[top] as number;
        p = this.patterns[top] as number;
      }
      this.size = top;
    }
    this.starts[this.size] = s;
    this.ends[this.size] = end;
    this.patterns[this.size] = p;
    this.lengths[this.size] = l;
    this.size++;
  }

  clear(): void {
    this.size = 0;
  }

  /** Drops the first `n` spans (emitted by a stream). */
  shift(n: number): void {
    if (n === 0) return;
    this.starts.splice(0, n);
    this.ends.splice(0, n);
    this.patterns.splice(0, n);
    this.lengths.splice(0, n);
    this.size -= n;
  }
}

/** `text` with spans [0, count) replaced by their labels; span offsets are relative to `base`. */
function render(text: string, spans: Spans, base: number, count: number, labels: readonly string[]): string {
  let out = '';
  let at = 0;
  for (let i = 0; i < count; i++) {
    const start = (spans.starts[i] as number) - base;
    out += text.slice(at, start) + (labels[spans.patterns[i] as number] as string);
    at = (spans.ends[i] as number) - base;
  }
  return out + text.slice(at);
}

export class Redactor {
  /** Distinct secrets (by value) the redactor hides. */
  readonly secretCount: number;
  /** Secrets shorter than the store accepts (written to Vault by other tools); redacted anyway. */
  readonly weak: readonly { service: string; name: string }[];
  readonly #ac: AhoCorasick;
  readonly #labels: string[];
  readonly #maxDepth: number;
  readonly #scratch = new Spans();
  readonly #sink = (end: number, length: number, pattern: number): void => {
    this.#scratch.add(end - length, end, pattern, length);
  };

  constructor(secrets: Iterable<SecretEntry>, opts: RedactorOptions = {}) {
    const patterns: string[] = [];
    const labels: string[] = [];
    const seenPattern = new Set<string>();
    const seenValue = new Set<string>();
    const weak: { service: string; name: string }[] = [];
    for (const s of secrets) {
      if (typeof s.value !== 'string' || s.value === '' || seenValue.has(s.value)) continue;
      seenValue.add(s.value);
      if ([...s.value].length < MIN_SECRET_LENGTH) weak.push({ service: s.service, name: s.name });
      const label = redactionLabel(s.name);
      for (const form of secretForms(s.value)) {
        if (seenPattern.has(form.text)) continue;
        seenPattern.add(form.text);
        patterns.push(form.text);
        labels.push(label);
      }
    }
    this.secretCount = seenValue.size;
    this.weak = weak;
    this.#labels = labels;
    this.#ac = new AhoCorasick(patterns, opts.denseBudget === undefined ? {} : { denseBudget: opts.denseBudget });
    this.#maxDepth = opts.maxDepth ?? 256;
  }

  static readonly EMPTY = new Redactor([]);

  get patternCount(): number {
    return this.#ac.patternCount;
  }

  get maxPatternLength(): number {
    return this.#ac.maxLength;
  }

  get stateCount(): number {
    return this.#ac.stateCount;
  }

  /** Whether `text` holds any form of any secret. */
  contains(text: string): boolean {
    return text.length >= this.#ac.minLength && this.#ac.patternCount > 0 && this.#ac.test(text);
  }

  /** `text` with every form of every secret replaced; the same string when there is none. */
  redactString(text: string): string {
    if (text.length < this.#ac.minLength || this.#ac.patternCount === 0) return text;
    // One scratch span list and one sink for all calls: nothing is allocated unless a secret is
    // found. Safe because a scan never yields to other code.
    const spans = this.#scratch;
    spans.clear();
    this.#ac.find(text, this.#sink);
    return spans.size === 0 ? text : render(text, spans, 0, spans.size, this.#labels);
  }

  /**
   * A copy of a parsed JSON value with every string and key redacted; parts without a secret are
   * shared with the input, which is never modified. Numbers are checked too when some secret is
   * made of digits (an account number would otherwise come back as a JSON number).
   */
  redact<T>(value: T): T {
    if (this.#ac.patternCount === 0) {
      this.#check(value, 0);
      return value;
    }
    return this.#walk(value, 0) as T;
  }

  #walk(v: unknown, depth: number): unknown {
    switch (typeof v) {
      case 'string':
        return this.redactString(v);
      case 'number':
        if (this.#ac.numericPattern && Number.isFinite(v)) {
          const text = String(v);
          if (this.#ac.test(text)) return this.redactString(text);
        }
        return v;
      case 'boolean':
      case 'undefined':
        return v;
      case 'object':
        break;
      default:
        throw new RedactionError(`cannot redact a ${typeof v}: not JSON`);
    }
    if (v === null) return v;
    if (depth >= this.#maxDepth) throw new RedactionError(`JSON nested deeper than ${this.#maxDepth} levels`);
    if (Array.isArray(v)) {
      let out: unknown[] | null = null;
      for (let i = 0; i < v.length; i++) {
        const item: unknown = v[i];
        const r = this.#walk(item, depth + 1);
        if (out === null && r !== item) out = v.slice(0, i);
        if (out !== null) out.push(r);
      }
      return out ?? v;
    }
    const proto: unknown = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) {
      throw new RedactionError('cannot redact an object that is not plain JSON');
    }
    const obj = v as Record<string, unknown>;
    const keys = Object.keys(obj);
    let entries: [string, unknown][] | null = null;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as string;
      const item = obj[key];
      const k = this.redactString(key);
      const r = this.#walk(item, depth + 1);
      if (entries === null && (k !== key || r !== item)) {
        entries = keys.slice(0, i).map((kk) => [kk, obj[kk]]);
      }
      if (entries !== null) entries.push([k, r]);
    }
    if (entries === null) return v;
    // Two keys may redact to the same text; keep both members, suffixed, rather than lose one.
    const used = new Set<string>();
    for (const e of entries) {
      let k = e[0];
      for (let n = 2; used.has(k); n++) k = `${e[0]}#${n}`;
      used.add(k);
      e[0] = k;
    }
    // fromEntries defines own properties, so a key "__proto__" stays data, not a prototype.
    return Object.fromEntries(entries);
  }

  /** The same fail-closed shape check as `#walk` when there is nothing to redact. */
  #check(v: unknown, depth: number): void {
    if (typeof v !== 'object' || v === null) {
      if (typeof v === 'bigint' || typeof v === 'function' || typeof v === 'symbol') {
        throw new RedactionError(`cannot redact a ${typeof v}: not JSON`);
      }
      return;
    }
    if (depth >= this.#maxDepth) throw new RedactionError(`JSON nested deeper than ${this.#maxDepth} levels`);
    if (Array.isArray(v)) {
      for (const item of v) this.#check(item, depth + 1);
      return;
    }
    const proto: unknown = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) {
      throw new RedactionError('cannot redact an object that is not plain JSON');
    }
    for (const item of Object.values(v)) this.#check(item, depth + 1);
  }

  /** A redactor for one text stream split into chunks (SSE frames, a child's stderr). */
  stream(): StreamRedactor {
    return new StreamRedactor(this.#ac, this.#labels);
  }
}

/**
 * Redacts text that arrives in pieces. A secret split across chunks is still found: the automaton's
 * state carries over, and the last `maxPatternLength - 1` characters (more while a redaction there
 * might still grow by an overlapping match) are held back until the next chunk or `end()`. Each
 * `push` returns what is final; the concatenation of all outputs equals redacting the whole text.
 * It runs the plain automaton (no skipping), since the state must carry from chunk to chunk.
 */
export class StreamRedactor {
  readonly #ac: AhoCorasick;
  readonly #labels: readonly string[];
  #pending = '';
  /** Absolute offset of `#pending[0]` in the stream. */
  #base = 0;
  #state = 0;
  #spans = new Spans();
  #ended = false;

  /** @internal: use `Redactor.stream()`. */
  constructor(ac: AhoCorasick, labels: readonly string[]) {
    this.#ac = ac;
    this.#labels = labels;
  }

  push(chunk: string): string {
    if (this.#ended) throw new RedactionError('push after end');
    if (this.#ac.patternCount === 0) return chunk;
    const offset = this.#base + this.#pending.length;
    this.#pending += chunk;
    this.#state = this.#ac.scan(chunk, this.#state, (end, length, pattern) => {
      this.#spans.add(offset + end - length, offset + end, pattern, length);
    });
    const end = this.#base + this.#pending.length;
    // A future match ends after `end`, so it starts at or after end - (maxLength - 1).
    let safe = end - (this.#ac.maxLength - 1);
    // ...and would merge with any span ending after its start.
    for (let i = this.#spans.size - 1; i >= 0 && (this.#spans.ends[i] as number) > safe; i--) {
      safe = Math.min(safe, this.#spans.starts[i] as number);
    }
    if (safe <= this.#base) return '';
    let count = 0;
    while (count < this.#spans.size && (this.#spans.ends[count] as number) <= safe) count++;
    const head = this.#pending.slice(0, safe - this.#base);
    const out = render(head, this.#spans, this.#base, count, this.#labels);
    this.#spans.shift(count);
    this.#pending = this.#pending.slice(safe - this.#base);
    this.#base = safe;
    return out;
  }

  /** Everything still held back, redacted. The stream is finished afterwards. */
  end(): string {
    if (this.#ended) return '';
    this.#ended = true;
    const out = render(this.#pending, this.#spans, this.#base, this.#spans.size, this.#labels);
    this.#pending = '';
    this.#spans = new Spans();
    return out;
  }
}
