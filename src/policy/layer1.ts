/**
 * Layer 1 evaluation: the Rego policy in `rego/` compiled to Wasm (`rego/policy.wasm`, rebuilt by
 * scripts/build-rego.mjs), run in-process with the npm OPA SDK.
 *
 * `evaluate` is synchronous and never throws: anything other than one well-formed decision (a
 * Wasm abort, a malformed result, garbage input) becomes a deny. `swap` prepares a complete new
 * instance with the new data before it replaces the current one, so a request is always decided by
 * exactly one revision and a document that fails to load leaves the running one in force.
 */
import { readFile } from 'node:fs/promises';
import { loadPolicy, type LoadedPolicy } from '@open-policy-agent/opa-wasm';
import { layer1DataProblems } from './layer1-data-schema.js';
import { patternIndex } from './layer1-patterns.js';
import {
  LAYER1_METHODS,
  ROLES,
  layer1DecisionSchema,
  type Layer1Data,
  type Layer1Decision,
  type Layer1Input,
} from './layer1-types.js';

const DECISION_ENTRYPOINT = 'mcpgw/authz/decision';
const DATA_PROBLEMS_ENTRYPOINT = 'mcpgw/authz/data_problems';

/** `src/policy/` and `dist/policy/` are both two levels below the package root. */
export const LAYER1_WASM_URL = new URL('../../rego/policy.wasm', import.meta.url);

export interface Layer1Engine {
  /** `revision` of the data document currently in force. */
  readonly revision: string;
  /** The decision for one request; a deny whenever the policy cannot give a well-formed one. */
  evaluate(input: Layer1Input): Layer1Decision;
  /**
   * Loads `data` into a fresh instance and makes it current. Rejects with `Layer1DataError` (or
   * the load error) and keeps the current revision when the document is unusable. When swaps
   * overlap, the one started last wins.
   */
  swap(data: Layer1Data): Promise<void>;
}

/** A compiled `WebAssembly.Module`, kept opaque: the Node 20 typings in use do not declare it. */
export type CompiledPolicy = object & { readonly __compiledPolicy?: never };

// The `WebAssembly` global exists in every Node version we support; only its type declarations
// are missing (tsconfig has no DOM lib and @types/node 20 does not declare it).
const wasmApi = (globalThis as unknown as { WebAssembly: { compile(bytes: Uint8Array): Promise<CompiledPolicy> } })
  .WebAssembly;

export interface Layer1EngineOptions {
  /** The policy, as Wasm bytes or compiled by `compileLayer1Policy`; defaults to `rego/policy.wasm`. */
  wasm?: Uint8Array | CompiledPolicy;
  /** Decisions kept per revision (0 = evaluate every call); default DEFAULT_DECISION_CACHE. */
  decisionCache?: number;
}

export class Layer1DataError extends Error {
  constructor(readonly problems: string[]) {
    super(`Layer 1 data rejected: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? ' …' : ''}`);
    this.name = 'Layer1DataError';
  }
}

const NO_HINTS = { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false };

/** The deny returned when evaluation fails: the policy produced no decision that allows the call. */
export function failClosedDecision(why: string): Layer1Decision {
  return {
    outcome: 'deny',
    code: 'evaluation_error',
    rule: null,
    reasons: [`policy evaluation failed: ${why}`],
    classification: { verb: null, hints: { ...NO_HINTS }, labels: [] },
    approval: null,
    layer2: {
      limits: [],
      budgets: [],
      preconditions: [],
      flows: { sources: [], sinks: [] },
      duties: { first: [], then: [] },
    },
  };
}

let defaultModule: Promise<CompiledPolicy> | undefined;

/** Compiles policy Wasm bytes once, for engines that share them. */
export function compileLayer1Policy(bytes: Uint8Array): Promise<CompiledPolicy> {
  return wasmApi.compile(bytes);
}

function compiledPolicy(wasm: Layer1EngineOptions['wasm']): Promise<CompiledPolicy> {
  if (wasm instanceof Uint8Array) return compileLayer1Policy(wasm);
  if (wasm) return Promise.resolve(wasm);
  // Compiled once per process; every revision instantiates the same module.
  defaultModule ??= readFile(LAYER1_WASM_URL).then(compileLayer1Policy);
  return defaultModule;
}

function describe(e: unknown): string {
  if (e instanceof Error) return e.message;
  // The SDK throws bare strings (Wasm aborts) and plain objects.
  if (typeof e === 'string') return e;
  try {
    return JSON.stringify(e);
  } catch {
    return String(e);
  }
}

/**
 * The fields of the SDK's `LoadedPolicy` that the fast path below uses. They are public in its
 * typings, but typed with `WebAssembly` types our lib setting does not have.
 */
interface RawPolicy {
  minorVersion: number;
  mem: { buffer: ArrayBuffer; grow(pages: number): number };
  dataAddr: number;
  dataHeapPtr: number;
  wasmInstance: {
    exports: {
      opa_eval(
        reserved: 0,
        entrypoint: number,
        data: number,
        input: number,
        inputLen: number,
        heap: number,
        format: 0,
      ): number;
    };
  };
}

const WASM_PAGE = 65536;
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** service → tool → the argument fields its classifiers and extractors read. */
type ArgumentFields = ReadonlyMap<string, ReadonlyMap<string, readonly string[]>>;

function argumentFields(data: Layer1Data): ArgumentFields {
  const out = new Map<string, Map<string, Set<string>>>();
  const add = (svc: string, tool: string, field: string) => {
    let byTool = out.get(svc);
    if (!byTool) out.set(svc, (byTool = new Map()));
    let fields = byTool.get(tool);
    if (!fields) byTool.set(tool, (fields = new Set()));
    fields.add(field);
  };
  for (const [svc, byTool] of Object.entries(data.classifiers)) {
    for (const [tool, list] of Object.entries(byTool)) for (const c of list) add(svc, tool, c.field);
  }
  for (const [svc, byTool] of Object.entries(data.extractors)) {
    for (const [tool, list] of Object.entries(byTool)) for (const x of list) add(svc, tool, x.field);
  }
  return new Map([...out].map(([svc, byTool]) => [svc, new Map([...byTool].map(([t, f]) => [t, [...f]]))]));
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const METHODS: ReadonlySet<string> = new Set(LAYER1_METHODS);
const ROLE_NAMES: ReadonlySet<string> = new Set(ROLES);

/**
 * What is wrong with an input that does not have the contract's shape, or null. Callers are typed,
 * but the input is built from a request, and the policy would classify a malformed one rather than
 * refuse it.
 */
function inputProblem(input: unknown): string | null {
  if (!isPlainObject(input)) return 'not an object';
  const { user, grants, method, service, name, arguments: args } = input;
  if (!isPlainObject(user) || typeof user['id'] !== 'string' || !ROLE_NAMES.has(user['role'] as string)) return 'user';
  if (!isPlainObject(grants)) return 'grants';
  if (typeof method !== 'string' || !METHODS.has(method)) return 'method';
  if (typeof service !== 'string') return 'service';
  if (typeof name !== 'string') return 'name';
  if (!isPlainObject(args)) return 'arguments';
  return null;
}

/**
 * The part of a well-formed input the policy reads: the grants of this service, and only the
 * arguments a classifier or extractor of this tool looks at. A 1 MiB file body would otherwise be
 * serialized and parsed again inside the Wasm on every call.
 */
function slimInput(input: Layer1Input, fields: ArgumentFields): unknown {
  const { service, name, grants, arguments: args } = input;
  // Null-prototype objects: a field or service called `__proto__` must stay an ordinary key.
  const slimGrants = Object.create(null) as Record<string, unknown>;
  if (Object.hasOwn(grants, service)) slimGrants[service] = grants[service];
  const slimArgs = Object.create(null) as Record<string, unknown>;
  for (const f of fields.get(service)?.get(name) ?? []) if (Object.hasOwn(args, f)) slimArgs[f] = args[f];
  return { user: input.user, grants: slimGrants, method: input.method, service, name, arguments: slimArgs };
}

/** One Wasm instance holding one data document. Never mutated after construction. */
class Instance {
  private constructor(
    readonly revision: string,
    private readonly policy: LoadedPolicy,
    private readonly raw: RawPolicy | null,
    private readonly entrypoint: number,
    private readonly fields: ArgumentFields,
  ) {}

  static async create(module: CompiledPolicy, data: Layer1Data): Promise<Instance> {
    const problems = layer1DataProblems(data);
    if (problems.length > 0) throw new Layer1DataError(problems);
    const policy = await loadPolicy(module as Parameters<typeof loadPolicy>[0]);
    const entrypoints = policy.entrypoints as Record<string, number>;
    const decisionId = entrypoints[DECISION_ENTRYPOINT];
    const problemsId = entrypoints[DATA_PROBLEMS_ENTRYPOINT];
    if (decisionId === undefined || problemsId === undefined) {
      throw new Error(`the policy Wasm lacks the entrypoints ${DECISION_ENTRYPOINT} and ${DATA_PROBLEMS_ENTRYPOINT}`);
    }
    // pattern_index is the engine's own addition; see src/policy/layer1-patterns.ts.
    policy.setData({ ...data, pattern_index: patternIndex(data) });
    const rs: unknown = policy.evaluate({}, problemsId);
    const wasmProblems = Array.isArray(rs) && rs.length === 1 ? (rs[0] as { result?: unknown }).result : undefined;
    if (!Array.isArray(wasmProblems) || !wasmProblems.every((p) => typeof p === 'string')) {
      throw new Error(`the policy's data check gave ${JSON.stringify(rs)}`);
    }
    if (wasmProblems.length > 0) throw new Layer1DataError(wasmProblems);
    const raw = policy as unknown as RawPolicy;
    // ABI 1.2 added the one-call `opa_eval`; older Wasm goes through the SDK.
    return new Instance(data.revision, policy, raw.minorVersion >= 2 ? raw : null, decisionId, argumentFields(data));
  }

  /**
   * The SDK's `evaluate` for ABI ≥ 1.2, minus two costs that showed in profiles: an intermediate
   * buffer for the input and a byte-by-byte JavaScript scan for the end of the result.
   */
  private evaluateRaw(raw: RawPolicy, input: unknown): unknown {
    return this.evaluateJson(raw, JSON.stringify(input));
  }

  private evaluateJson(raw: RawPolicy, json: string): unknown {
    const len = Buffer.byteLength(json);
    const at = raw.dataHeapPtr;
    if (at + len > raw.mem.buffer.byteLength)
      raw.mem.grow(Math.ceil((at + len - raw.mem.buffer.byteLength) / WASM_PAGE));
    const written = utf8.encodeInto(json, new Uint8Array(raw.mem.buffer, at, len)).written;
    const out = raw.wasmInstance.exports.opa_eval(0, this.entrypoint, raw.dataAddr, at, written, at + written, 0);
    // Evaluation may have grown the memory, which detaches the old buffer.
    const mem = new Uint8Array(raw.mem.buffer);
    const end = mem.indexOf(0, out);
    if (end < 0) throw new Error('unterminated result');
    return JSON.parse(utf8Decoder.decode(mem.subarray(out, end)));
  }

  /**
   * Decisions by slim input. Layer 1 is a pure function of (data, slim input) and an Instance never
   * changes its data, so a hit is exactly what the Wasm would answer; a new revision is a new
   * Instance with an empty cache. Entries are deep-frozen because callers share them.
   */
  private readonly cache = new Map<string, Layer1Decision>();
  cacheSize = DEFAULT_DECISION_CACHE;

  evaluate(input: Layer1Input): Layer1Decision {
    const problem = inputProblem(input);
    if (problem) return failClosedDecision(`malformed input (${problem})`);
    let rs: unknown;
    let key: string | null = null;
    try {
      const slim = slimInput(input, this.fields);
      if (this.raw && this.cacheSize > 0) {
        key = JSON.stringify(slim);
        const hit = this.cache.get(key);
        if (hit) {
          // Least recently used goes first: re-insert on every hit.
          this.cache.delete(key);
          this.cache.set(key, hit);
          return hit;
        }
        rs = this.evaluateJson(this.raw, key);
      } else {
        rs = this.raw ? this.evaluateRaw(this.raw, slim) : this.policy.evaluate(slim, this.entrypoint);
      }
    } catch (e) {
      return failClosedDecision(describe(e));
    }
    if (!Array.isArray(rs) || rs.length !== 1) {
      return failClosedDecision(
        rs === undefined || (Array.isArray(rs) && rs.length === 0) ? 'no decision' : 'several decisions',
      );
    }
    const parsed = layer1DecisionSchema.safeParse((rs[0] as { result?: unknown } | null)?.result);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      return failClosedDecision(
        `malformed decision (${issue ? `${issue.path.join('.')}: ${issue.message}` : 'invalid'})`,
      );
    }
    if (key !== null && key.length <= MAX_CACHED_INPUT_CHARS) {
      if (this.cache.size >= this.cacheSize) {
        const oldest = this.cache.keys().next();
        if (!oldest.done) this.cache.delete(oldest.value);
      }
      this.cache.set(key, deepFreeze(parsed.data));
    }
    return parsed.data;
  }
}

/** Entries kept per revision; an entry is a few hundred bytes. */
export const DEFAULT_DECISION_CACHE = 4096;
/** Inputs larger than this (big classified arguments) are evaluated every time, not kept. */
const MAX_CACHED_INPUT_CHARS = 4096;

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    for (const child of Object.values(v)) deepFreeze(child);
    Object.freeze(v);
  }
  return v;
}

class Engine implements Layer1Engine {
  private swapsStarted = 0;
  private installedSwap = 0;

  constructor(
    private readonly module: CompiledPolicy,
    private current: Instance,
    private readonly cacheSize: number,
  ) {
    current.cacheSize = cacheSize;
  }

  get revision(): string {
    return this.current.revision;
  }

  evaluate(input: Layer1Input): Layer1Decision {
    return this.current.evaluate(input);
  }

  async swap(data: Layer1Data): Promise<void> {
    const ticket = ++this.swapsStarted;
    const next = await Instance.create(this.module, data);
    next.cacheSize = this.cacheSize;
    // A slower, older swap must not replace a newer revision that finished first.
    if (ticket < this.installedSwap) return;
    this.installedSwap = ticket;
    this.current = next;
  }
}

export async function createLayer1Engine(data: Layer1Data, options: Layer1EngineOptions = {}): Promise<Layer1Engine> {
  const module = await compiledPolicy(options.wasm);
  return new Engine(module, await Instance.create(module, data), options.decisionCache ?? DEFAULT_DECISION_CACHE);
}
