/**
 * Aho–Corasick multi-pattern search over UTF-16 code units, written for the redactor's hot loop:
 * every character of every string a backend returns goes through `scan`.
 *
 * Layout:
 * - Code units are mapped to dense classes; class 0 means "in no pattern", which sends the
 *   automaton straight back to the root (no match can span that character).
 * - States are numbered breadth-first, so the shallow states, where a scan spends nearly all its
 *   time, come first. The first `denseStates` of them get complete DFA rows (goto and failure folded
 *   together): one table load per character. A memory budget bounds that table; deeper states
 *   (only reached while a long pattern keeps matching) keep sparse children and failure links.
 * - Per state, the longest pattern ending there (own or via the failure chain). For redacting the
 *   union of overlapping matches that is all we need: every shorter match ending at the same
 *   position lies inside the longest one.
 *
 * Touching every character costs a few nanoseconds in JavaScript whatever the automaton does, and
 * nearly all text holds no secret. So `find` and `test` put a skip filter in front of the
 * automaton (the shift table of Wu and Manber, over 3-character blocks of the patterns' first `m`
 * characters, `m` the shortest pattern length): at a window ending at `pos`, the last block's
 * shift says how far the window can move without passing the end of the first `m` characters of
 * any possible occurrence. Only a shift of 0 (a block that ends some pattern's first `m`
 * characters) runs the automaton, from `pos - m` and fresh, until it has passed `pos` and no
 * longer sits deep inside a pattern; then skipping resumes where a match could still start. The
 * reports are exactly those of `scan` over the whole text (a property test holds both to a naive
 * search); the automaton remains the only matcher.
 */

export type MatchSink = (end: number, length: number, pattern: number) => void;

export interface AhoCorasickOptions {
  /** Maximum entries of the dense table (4 bytes each). Default 2^21 (8 MiB). */
  denseBudget?: number;
}

const ROOT = 0;
/** Block length of the skip filter. */
const BLOCK = 3;
/** Entries of the shift table (hashed blocks; a collision only lowers a shift, never skips a match). */
const SHIFT_BITS = 16;
/** Below this shortest-pattern length the filter cannot skip far enough to pay for itself. */
const MIN_SKIP_PATTERN = BLOCK + 3;
/** Once past the window, the automaton hands back to the filter at this depth or less. */
const HANDBACK_DEPTH = 2;

function blockHash(k1: number, k2: number, k3: number): number {
  return (Math.imul(k1, 0x9e3779b1) ^ Math.imul(k2, 0x85ebca6b) ^ Math.imul(k3, 0xc2b2ae35)) >>> (32 - SHIFT_BITS);
}

export class AhoCorasick {
  readonly patternCount: number;
  readonly stateCount: number;
  readonly maxLength: number;
  readonly minLength: number;
  /** Whether every character of some pattern is one of `0-9 . + - e E` (a number could hold it). */
  readonly numericPattern: boolean;
  readonly #classOf: Int32Array;
  readonly #classes: number;
  readonly #denseStates: number;
  readonly #dense: Int32Array;
  readonly #fail: Int32Array;
  readonly #childStart: Int32Array;
  readonly #childClass: Int32Array;
  readonly #childTarget: Int32Array;
  readonly #outLen: Int32Array;
  readonly #outPat: Int32Array;
  readonly #depth: Int32Array;
  /** The skip filter; `#skipMin` 0 = disabled (patterns too short). */
  readonly #skipMin: number;
  readonly #shift: Uint8Array;

  /** Patterns must be non-empty and distinct; a pattern's index is what `scan` reports. */
  constructor(patterns: readonly string[], opts: AhoCorasickOptions = {}) {
    this.patternCount = patterns.length;
    let maxLength = 0;
    let minLength = patterns.length === 0 ? 0 : Infinity;
    let numeric = false;

    const classOf = new Int32Array(0x10000);
    let classes = 1;
    for (const p of patterns) {
      if (p.length === 0) throw new Error('empty pattern');
      maxLength = Math.max(maxLength, p.length);
      minLength = Math.min(minLength, p.length);
      if (/^[0-9.eE+-]+$/.test(p)) numeric = true;
      for (let i = 0; i < p.length; i++) {
        const c = p.charCodeAt(i);
        if (classOf[c] === 0) classOf[c] = classes++;
      }
    }
    this.maxLength = maxLength;
    this.minLength = minLength;
    this.numericPattern = numeric;

    // Trie in insertion order, children as maps; renumbered breadth-first below.
    const kids: Map<number, number>[] = [new Map()];
    const depth: number[] = [0];
    const term: number[] = [-1];
    patterns.forEach((p, index) => {
      let s = ROOT;
      for (let i = 0; i < p.length; i++) {
        const k = classOf[p.charCodeAt(i)] as number;
        const m = kids[s] as Map<number, number>;
        let t = m.get(k);
        if (t === undefined) {
          t = kids.length;
          kids.push(new Map());
          depth.push(i + 1);
          term.push(-1);
          m.set(k, t);
        }
        s = t;
      }
      if (term[s] !== -1) throw new Error(`duplicate pattern at index ${index}`);
      term[s] = index;
    });

    const n = kids.length;
    const order: number[] = [ROOT];
    const newId = new Int32Array(n);
    for (let head = 0; head < order.length; head++) {
      for (const t of (kids[order[head] as number] as Map<number, number>).values()) {
        newId[t] = order.length;
        order.push(t);
      }
    }

    const fail = new Int32Array(n);
    const childStart = new Int32Array(n + 1);
    let edges = 0;
    for (let s = 0; s < n; s++) {
      childStart[s] = edges;
      edges += (kids[order[s] as number] as Map<number, number>).size;
    }
    childStart[n] = edges;
    const childClass = new Int32Array(edges);
    const childTarget = new Int32Array(edges);
    const outLen = new Int32Array(n);
    const outPat = new Int32Array(n).fill(-1);
    for (let s = 0; s < n; s++) {
      let e = childStart[s] as number;
      for (const [k, t] of kids[order[s] as number] as Map<number, number>) {
        childClass[e] = k;
        childTarget[e] = newId[t] as number;
        e++;
      }
    }
    const child = (s: number, k: number): number => {
      for (let e = childStart[s] as number, end = childStart[s + 1] as number; e < end; e++) {
        if (childClass[e] === k) return childTarget[e] as number;
      }
      return -1;
    };

    // Breadth-first, so a state's failure target (shallower) is complete before the state.
    for (let s = 0; s < n; s++) {
      const old = order[s] as number;
      if (term[old] !== -1) {
        outLen[s] = depth[old] as number;
        outPat[s] = term[old] as number;
      } else if (s !== ROOT) {
        outLen[s] = outLen[fail[s] as number] as number;
        outPat[s] = outPat[fail[s] as number] as number;
      }
      for (let e = childStart[s] as number, end = childStart[s + 1] as number; e < end; e++) {
        const k = childClass[e] as number;
        const t = childTarget[e] as number;
        if (s === ROOT) {
          fail[t] = ROOT;
          continue;
        }
        let f = fail[s] as number;
        let g = child(f, k);
        while (g === -1 && f !== ROOT) {
          f = fail[f] as number;
          g = child(f, k);
        }
        fail[t] = g === -1 ? ROOT : g;
      }
    }

    const budget = opts.denseBudget ?? 1 << 21;
    const denseStates = Math.max(1, Math.min(n, Math.floor(budget / classes)));
    const dense = new Int32Array(denseStates * classes);
    for (let s = 0; s < denseStates; s++) {
      const row = s * classes;
      const fallback = (fail[s] as number) * classes;
      for (let k = 1; k < classes; k++) {
        const t = child(s, k);
        dense[row + k] = t !== -1 ? t : s === ROOT ? ROOT : (dense[fallback + k] as number);
      }
    }

    const depthOf = new Int32Array(n);
    for (let s = 0; s < n; s++) depthOf[s] = depth[order[s] as number] as number;

    // Shift table over the first m characters of every pattern: for a block ending at offset j of
    // some pattern (BLOCK <= j <= m), the window may move at most m - j.
    const m = patterns.length === 0 ? 0 : minLength;
    const skipMin = m >= MIN_SKIP_PATTERN ? m : 0;
    const shift = new Uint8Array(skipMin === 0 ? 0 : 1 << SHIFT_BITS).fill(Math.min(255, skipMin - BLOCK + 1));
    if (skipMin !== 0) {
      for (const p of patterns) {
        for (let j = BLOCK; j <= skipMin; j++) {
          const h = blockHash(
            classOf[p.charCodeAt(j - 3)] as number,
            classOf[p.charCodeAt(j - 2)] as number,
            classOf[p.charCodeAt(j - 1)] as number,
          );
          if ((shift[h] as number) > skipMin - j) shift[h] = skipMin - j;
        }
      }
    }

    this.stateCount = n;
    this.#depth = depthOf;
    this.#skipMin = skipMin;
    this.#shift = shift;
    this.#classOf = classOf;
    this.#classes = classes;
    this.#denseStates = denseStates;
    this.#dense = dense;
    this.#fail = fail;
    this.#childStart = childStart;
    this.#childClass = childClass;
    this.#childTarget = childTarget;
    this.#outLen = outLen;
    this.#outPat = outPat;
  }

  /** The transition from a state past the dense rows: sparse children, then failure links. */
  #next(state: number, k: number): number {
    let s = state;
    const childStart = this.#childStart;
    const childClass = this.#childClass;
    while (s >= this.#denseStates) {
      for (let e = childStart[s] as number, end = childStart[s + 1] as number; e < end; e++) {
        if (childClass[e] === k) return this.#childTarget[e] as number;
      }
      s = this.#fail[s] as number;
    }
    return this.#dense[s * this.#classes + k] as number;
  }

  /**
   * Feeds `text` from `state` (0 = start) and returns the state after it, so a stream can continue
   * in the next chunk. For every position where some pattern ends, `sink` gets the end offset in
   * `text` (exclusive), the longest pattern length ending there, and that pattern's index.
   */
  scan(text: string, state: number, sink: MatchSink): number {
    const classOf = this.#classOf;
    const dense = this.#dense;
    const denseStates = this.#denseStates;
    const classes = this.#classes;
    const outLen = this.#outLen;
    let s = state;
    for (let i = 0, n = text.length; i < n; i++) {
      const k = classOf[text.charCodeAt(i)] as number;
      if (k === 0) {
        s = ROOT;
        continue;
      }
      s = s < denseStates ? (dense[s * classes + k] as number) : this.#next(s, k);
      const len = outLen[s] as number;
      if (len !== 0) sink(i + 1, len, this.#outPat[s] as number);
    }
    return s;
  }

  /**
   * `scan(text, 0, sink)`, the same reports in the same order, but skipping the stretches where no
   * pattern can occur. `sink` returning true stops the search.
   */
  find(text: string, sink: (end: number, length: number, pattern: number) => boolean | void): void {
    const m = this.#skipMin;
    const n = text.length;
    if (m === 0) {
      this.#run(text, 0, Infinity, 0, sink);
      return;
    }
    const classOf = this.#classOf;
    const shift = this.#shift;
    let pos = m;
    // Ends up to here have been reported by an earlier run of the automaton.
    let reported = 0;
    while (pos <= n) {
      const k3 = classOf[text.charCodeAt(pos - 1)] as number;
      if (k3 === 0) {
        // In no pattern: no occurrence spans it, so the next one starts after it.
        pos += m;
        continue;
      }
      const sh = shift[
        blockHash(classOf[text.charCodeAt(pos - 3)] as number, classOf[text.charCodeAt(pos - 2)] as number, k3)
      ] as number;
      if (sh !== 0) {
        pos += sh;
        continue;
      }
      if (!this.#run(text, pos - m, pos, reported, sink)) return;
      // The automaton stopped at `stop` inside a partial match of `depth` characters: an
      // occurrence may start there, so its window (m further) is the next to look at. Anything
      // starting earlier has ended and was reported.
      reported = this.#stop;
      pos = Math.max(pos + 1, this.#stop - this.#stopDepth + m);
    }
  }

  /** Where the last `#run` stopped, and how deep inside a partial match. */
  #stop = 0;
  #stopDepth = 0;

  /**
   * The automaton from `from`, fresh, reporting ends after `reported`; once at or past `until` it
   * stops at the first position whose state is at most HANDBACK_DEPTH deep (or at the end), and
   * leaves that position and depth in `#stop` / `#stopDepth`. false when the sink asked to stop.
   */
  #run(
    text: string,
    from: number,
    until: number,
    reported: number,
    sink: (end: number, length: number, pattern: number) => boolean | void,
  ): boolean {
    const classOf = this.#classOf;
    const dense = this.#dense;
    const denseStates = this.#denseStates;
    const classes = this.#classes;
    const outLen = this.#outLen;
    const depth = this.#depth;
    const n = text.length;
    let s = ROOT;
    let i = from;
    for (; i < n; i++) {
      if (i >= until && (depth[s] as number) <= HANDBACK_DEPTH) break;
      const k = classOf[text.charCodeAt(i)] as number;
      if (k === 0) {
        s = ROOT;
        continue;
      }
      s = s < denseStates ? (dense[s * classes + k] as number) : this.#next(s, k);
      const len = outLen[s] as number;
      if (len !== 0 && i + 1 > reported && sink(i + 1, len, this.#outPat[s] as number) === true) return false;
    }
    this.#stop = i;
    this.#stopDepth = depth[s] as number;
    return true;
  }

  /** Whether `text` contains any pattern. */
  test(text: string): boolean {
    let found = false;
    this.find(text, () => {
      found = true;
      return true;
    });
    return found;
  }
}
