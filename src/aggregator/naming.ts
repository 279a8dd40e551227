/**
 * Names on the wire (DESIGN §5): tools and prompts are `<service><separator><name>`, resource URIs
 * `mcpgw://<service>/<percent-encoded original>`. authz splits the same names with the same
 * functions (src/authz/jsonrpc.ts), so a name the gateway publishes resolves to the same service
 * and tool on both sides; a name that would not round-trip is refused here rather than published.
 * In the no-prefix mode (one backend) names and URIs are the backend's own, unchanged both ways.
 */
import { formatResourceUri, parseResourceUri, SERVICE_NAME, splitToolName } from '../authz/jsonrpc.js';
import { TOOL_NAME_PATTERN } from '../policy/schema.js';
import { isPlainObject, type JsonObject, type JsonValue } from './protocol.js';

export const DEFAULT_SEPARATOR = '__';
/** Longest tool name the function-calling APIs of major LLMs accept. */
export const MAX_WIRE_NAME_LENGTH = 64;
/** Characters every major LLM API accepts in a function name (`.` and `:` are not among them). */
export const SEPARATOR_PATTERN = /^[A-Za-z0-9_-]{1,8}$/;
/** Prompts have no alphabet in MCP; visible ASCII keeps them header- and log-safe. */
const PROMPT_NAME_PATTERN = /^[\x21-\x7e]{1,128}$/;

export interface NamingOptions {
  separator: string;
  /** false: the no-prefix mode, allowed with exactly one service; names are the backend's own. */
  prefix: boolean;
}

export const DEFAULT_NAMING: NamingOptions = { separator: DEFAULT_SEPARATOR, prefix: true };

/** What is wrong with this naming for these services; empty when it is usable. */
export function namingProblems(services: readonly string[], opts: NamingOptions): string[] {
  const problems: string[] = [];
  if (!SEPARATOR_PATTERN.test(opts.separator)) {
    problems.push(`the tool-name separator ${JSON.stringify(opts.separator)} must be 1-8 of A-Z, a-z, 0-9, "_", "-"`);
  }
  if (!opts.prefix && services.length > 1) {
    problems.push(`the no-prefix mode needs exactly one service, found ${services.length}: ${services.join(', ')}`);
  }
  for (const s of services) {
    if (!SERVICE_NAME.test(s)) problems.push(`service name ${JSON.stringify(s)} does not match ${SERVICE_NAME}`);
    else if (opts.prefix && s.includes(opts.separator)) {
      problems.push(`service name ${s} contains the separator ${JSON.stringify(opts.separator)}`);
    }
  }
  return problems;
}

export type NameKind = 'tool' | 'prompt';
export type RefusalReason = 'invalid_name' | 'too_long' | 'ambiguous' | 'collision';

export type WireNameResult = { ok: true; wire: string } | { ok: false; reason: RefusalReason; message: string };

/** The published name of a backend tool or prompt, or why it cannot have one. */
export function wireName(service: string, name: string, kind: NameKind, opts: NamingOptions): WireNameResult {
  const valid = kind === 'tool' ? TOOL_NAME_PATTERN.test(name) : PROMPT_NAME_PATTERN.test(name);
  if (!valid) {
    return {
      ok: false,
      reason: 'invalid_name',
      message:
        kind === 'tool'
          ? `${service}: tool name ${quote(name)} is not 1-128 of A-Z, a-z, 0-9, "_", "-", "." (not starting with "_")`
          : `${service}: prompt name ${quote(name)} is not 1-128 visible ASCII characters`,
    };
  }
  const wire = opts.prefix ? `${service}${opts.separator}${name}` : name;
  if (kind === 'tool' && wire.length > MAX_WIRE_NAME_LENGTH) {
    return {
      ok: false,
      reason: 'too_long',
      message: `${service}: tool ${quote(name)} would be published as ${wire.length} characters (at most ${MAX_WIRE_NAME_LENGTH})`,
    };
  }
  if (opts.prefix) {
    const back = splitToolName(wire, opts.separator);
    if (!back || back.service !== service || back.tool !== name) {
      return {
        ok: false,
        reason: 'ambiguous',
        message: `${service}: ${quote(wire)} would not split back into service ${service} and ${kind} ${quote(name)}`,
      };
    }
  }
  return { ok: true, wire };
}

/** Service and backend name of a published tool or prompt name; null when it names nothing. */
export function splitWireName(
  wire: string,
  opts: NamingOptions,
  soleService: string | undefined,
): { service: string; name: string } | null {
  if (!opts.prefix) return soleService === undefined || wire === '' ? null : { service: soleService, name: wire };
  const split = splitToolName(wire, opts.separator);
  return split ? { service: split.service, name: split.tool } : null;
}

export interface NamedEntry<T> {
  service: string;
  name: string;
  wire: string;
  item: T;
}

export interface RefusedName {
  service: string;
  name: string;
  reason: RefusalReason;
  message: string;
}

/**
 * Collects the tools (or prompts) of several backends and publishes only unambiguous names: a
 * wire name two entries would share is refused for both, since either choice would route some
 * call to a tool its caller did not mean.
 */
export class NameTable<T> {
  readonly #byWire = new Map<string, NamedEntry<T>[]>();
  readonly #refused: RefusedName[] = [];

  constructor(
    private readonly kind: NameKind,
    private readonly opts: NamingOptions,
  ) {}

  add(service: string, name: string, item: T): void {
    const r = wireName(service, name, this.kind, this.opts);
    if (!r.ok) {
      this.#refused.push({ service, name, reason: r.reason, message: r.message });
      return;
    }
    const list = this.#byWire.get(r.wire);
    if (list) list.push({ service, name, wire: r.wire, item });
    else this.#byWire.set(r.wire, [{ service, name, wire: r.wire, item }]);
  }

  /** Accepted entries in insertion order, and every refusal with its reason. */
  result(): { accepted: NamedEntry<T>[]; refused: RefusedName[] } {
    const accepted: NamedEntry<T>[] = [];
    const refused = [...this.#refused];
    for (const [wire, list] of this.#byWire) {
      const first = list[0];
      if (list.length === 1 && first) accepted.push(first);
      else {
        for (const e of list) {
          refused.push({
            service: e.service,
            name: e.name,
            reason: 'collision',
            message: `${e.service}: ${this.kind} ${quote(e.name)} collides with ${list.length - 1} other(s) on ${quote(wire)}`,
          });
        }
      }
    }
    return { accepted, refused };
  }
}

// ---------------------------------------------------------------------------------------------
// Resource URIs
// ---------------------------------------------------------------------------------------------

/** `mcpgw://<service>/<encoded>`; null when the backend's URI cannot be encoded (empty, lone surrogate). */
export function gatewayUri(service: string, uri: string): string | null {
  try {
    return formatResourceUri(service, uri);
  } catch {
    return null;
  }
}

/** The backend URI a gateway URI stands for; null when it is not one the gateway publishes. */
export function backendUri(uri: string): { service: string; uri: string } | null {
  const r = parseResourceUri(uri);
  return r ? { service: r.service, uri: r.original } : null;
}

/**
 * The URI the agent is shown for a backend's `uri`. In no-prefix mode (one backend) it is the
 * backend's own, byte for byte, which is also what authz authorizes there (src/authz/check.ts).
 */
export function publishedUri(service: string, uri: string, opts: NamingOptions): string | null {
  return opts.prefix ? gatewayUri(service, uri) : uri;
}

/** `publishedUri` for a URI template. */
export function publishedUriTemplate(service: string, template: string, opts: NamingOptions): string | null {
  return opts.prefix ? gatewayUriTemplate(service, template) : template;
}

/** Service and backend URI of a URI the agent sent; null when it names no service. */
export function resolveUri(
  uri: string,
  opts: NamingOptions,
  soleService: string | undefined,
): { service: string; uri: string } | null {
  if (!opts.prefix) return soleService === undefined ? null : { service: soleService, uri };
  return backendUri(uri);
}

/** One RFC 6570 expression: a single variable, optional prefix modifier, no explode. */
const TEMPLATE_EXPRESSION = /^([+#.]?)([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)(:[1-9][0-9]{0,3})?$/;

/**
 * The published form of a backend URI template: literal text percent-encoded exactly as
 * `gatewayUri` encodes it, expressions kept so the agent can still expand them.
 *
 * What the agent expands must come out as the canonical encoding authz accepts
 * (`parseResourceUri`), so only expressions whose expansion is a run of percent-encoded or
 * unreserved characters are kept: one variable, simple (`{x}`), reserved (`{+x}`, published as
 * `{x}`: decoding the agent's `%2F` restores the `/` reserved expansion would have left), fragment
 * (`{#x}`, published as `%23{x}`) or label (`{.x}`). Lists, explode modifiers and the `/ ; ? &`
 * operators would put raw delimiters into the URI and are refused (null).
 */
export function gatewayUriTemplate(service: string, template: string): string | null {
  if (!SERVICE_NAME.test(service) || template === '') return null;
  let out = '';
  let i = 0;
  while (i < template.length) {
    const open = template.indexOf('{', i);
    const literal = open < 0 ? template.slice(i) : template.slice(i, open);
    if (literal.includes('}')) return null;
    try {
      out += encodeURIComponent(literal);
    } catch {
      return null;
    }
    if (open < 0) break;
    const close = template.indexOf('}', open);
    if (close < 0) return null;
    const m = TEMPLATE_EXPRESSION.exec(template.slice(open + 1, close));
    if (!m) return null;
    const [, op, name = '', prefix = ''] = m;
    if (op === '#') out += '%23';
    out += op === '.' ? `{.${name}${prefix}}` : `{${name}${prefix}}`;
    i = close + 1;
  }
  return `mcpgw://${service}/${out}`;
}

// ---------------------------------------------------------------------------------------------
// URIs inside results
// ---------------------------------------------------------------------------------------------

/**
 * A content block with its resource URI (a `resource_link`, or an embedded `resource`) rewritten
 * into the gateway's namespace; null when the URI cannot be, so the block is left out rather than
 * handing the agent a URI it could not use through the gateway.
 */
export function rewriteContentBlock(
  service: string,
  block: JsonValue,
  opts: NamingOptions = DEFAULT_NAMING,
): JsonValue | null {
  if (!opts.prefix || !isPlainObject(block)) return block;
  const b = block as JsonObject;
  if (b['type'] === 'resource_link' && typeof b['uri'] === 'string') {
    const uri = gatewayUri(service, b['uri']);
    return uri === null ? null : { ...b, uri };
  }
  const res = b['resource'];
  if (b['type'] === 'resource' && isPlainObject(res) && typeof (res as JsonObject)['uri'] === 'string') {
    const uri = gatewayUri(service, (res as JsonObject)['uri'] as string);
    return uri === null ? null : { ...b, resource: { ...(res as JsonObject), uri } };
  }
  return block;
}

function rewriteBlocks(service: string, blocks: JsonValue, opts: NamingOptions): JsonValue {
  if (!Array.isArray(blocks)) return blocks;
  const out: JsonValue[] = [];
  for (const b of blocks) {
    const r = rewriteContentBlock(service, b, opts);
    if (r !== null) out.push(r);
  }
  return out;
}

/** `tools/call` result: `content[]`. No-prefix mode: unchanged. */
export function rewriteToolResult(
  service: string,
  result: JsonObject,
  opts: NamingOptions = DEFAULT_NAMING,
): JsonObject {
  return opts.prefix && Object.hasOwn(result, 'content')
    ? { ...result, content: rewriteBlocks(service, result['content'] ?? null, opts) }
    : result;
}

/** `resources/read` result: `contents[].uri`. No-prefix mode: unchanged. */
export function rewriteReadResult(
  service: string,
  result: JsonObject,
  opts: NamingOptions = DEFAULT_NAMING,
): JsonObject {
  const contents = result['contents'];
  if (!opts.prefix || !Array.isArray(contents)) return result;
  const out: JsonValue[] = [];
  for (const c of contents) {
    if (!isPlainObject(c) || typeof (c as JsonObject)['uri'] !== 'string') {
      out.push(c);
      continue;
    }
    const uri = gatewayUri(service, (c as JsonObject)['uri'] as string);
    if (uri !== null) out.push({ ...(c as JsonObject), uri });
  }
  return { ...result, contents: out };
}

/** `prompts/get` result: each message's single `content` block. No-prefix mode: unchanged. */
export function rewritePromptResult(
  service: string,
  result: JsonObject,
  opts: NamingOptions = DEFAULT_NAMING,
): JsonObject {
  const messages = result['messages'];
  if (!opts.prefix || !Array.isArray(messages)) return result;
  const out: JsonValue[] = [];
  for (const m of messages) {
    if (!isPlainObject(m) || !Object.hasOwn(m, 'content')) {
      out.push(m);
      continue;
    }
    const content = rewriteContentBlock(service, (m as JsonObject)['content'] ?? null, opts);
    if (content !== null) out.push({ ...(m as JsonObject), content });
  }
  return { ...result, messages: out };
}

function quote(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);
}
