/**
 * JSON-RPC 2.0 classification of one MCP message, shared by authz and the gateway (DESIGN §3 items
 * 3 and 5). Everything is validated here once, so later code can trust the typed fields:
 *
 * - one message, never a batch; `jsonrpc` exactly "2.0"; no members beyond those JSON-RPC defines
 *   (a `Method` next to `method` would otherwise reach a backend that reads names case-insensitively);
 * - `id` a string or a safe integer when present (never null, a float or a boolean);
 * - `params` an object when present (MCP uses named parameters only);
 * - a notification must name a `notifications/…` method: a `tools/call` without an id is still a
 *   call to a backend, and must not pass as "just a notification";
 * - the methods Layer 1 decides on get their parameters checked and typed in `target`.
 *
 * Error codes follow JSON-RPC: -32700 when the body is not acceptable JSON (see strict-json.ts),
 * -32600 when it is not a valid message, -32602 when a known method's params are malformed.
 */
import { parseStrictJson, type JsonObject, type JsonValue, type StrictJsonErrorCode } from './strict-json.js';

export type JsonRpcId = string | number;

export const JSONRPC_PARSE_ERROR = -32700;
export const JSONRPC_INVALID_REQUEST = -32600;
export const JSONRPC_INVALID_PARAMS = -32602;
export type JsonRpcErrorCode =
  typeof JSONRPC_PARSE_ERROR | typeof JSONRPC_INVALID_REQUEST | typeof JSONRPC_INVALID_PARAMS;

export type ToolCallTarget = { method: 'tools/call'; name: string; arguments: JsonObject };
export type ResourceTarget = {
  method: 'resources/read' | 'resources/subscribe' | 'resources/unsubscribe';
  uri: string;
};
export type PromptTarget = { method: 'prompts/get'; name: string; arguments: Record<string, string> };
/** The typed parameters of a method that is authorized per service (tool, resource or prompt). */
export type McpTarget = ToolCallTarget | ResourceTarget | PromptTarget;

export interface JsonRpcRequest {
  kind: 'request';
  id: JsonRpcId;
  method: string;
  params: JsonObject | undefined;
  /** Set for tools/call, resources/read|subscribe|unsubscribe and prompts/get; undefined otherwise. */
  target: McpTarget | undefined;
}

export interface JsonRpcNotification {
  kind: 'notification';
  method: string;
  params: JsonObject | undefined;
}

export interface JsonRpcErrorObject {
  code: number;
  message: string;
  data?: JsonValue;
}

/** A client's response to a server-initiated request (sampling, elicitation, roots). */
export type JsonRpcResponse = { kind: 'response'; id: JsonRpcId } & (
  { result: JsonValue } | { error: JsonRpcErrorObject }
);

export type JsonRpcMessage = JsonRpcRequest | JsonRpcNotification | JsonRpcResponse;

export type JsonRpcInvalidCode =
  | StrictJsonErrorCode
  | 'batch_not_supported'
  | 'not_an_object'
  | 'invalid_version'
  | 'invalid_id'
  | 'invalid_method'
  | 'unexpected_member'
  | 'params_not_object'
  | 'notification_method'
  | 'invalid_response'
  | 'invalid_params';

export interface JsonRpcInvalid {
  kind: 'invalid';
  /** Stable machine-readable reason (the strict-json code for parse errors), usable as a metric label. */
  code: JsonRpcInvalidCode;
  /** The JSON-RPC error code for the error response. */
  jsonRpcCode: JsonRpcErrorCode;
  message: string;
  /** The message's id when it had a valid one, so the error response can echo it; null otherwise. */
  id: JsonRpcId | null;
}

export type JsonRpcClassification = JsonRpcMessage | JsonRpcInvalid;

const REQUEST_MEMBERS = new Set(['jsonrpc', 'id', 'method', 'params']);
const RESPONSE_MEMBERS = new Set(['jsonrpc', 'id', 'result', 'error']);
const ERROR_MEMBERS = new Set(['code', 'message', 'data']);

/** Strict parse plus classification: the one entry point for a request body. */
export function parseJsonRpc(bytes: Uint8Array): JsonRpcClassification {
  const parsed = parseStrictJson(bytes);
  if (!parsed.ok) return invalid(JSONRPC_PARSE_ERROR, parsed.code, parsed.message, null);
  return classifyJsonRpc(parsed.value);
}

export function classifyJsonRpc(value: JsonValue): JsonRpcClassification {
  if (Array.isArray(value)) {
    return invalid(JSONRPC_INVALID_REQUEST, 'batch_not_supported', 'JSON-RPC batches are not supported', null);
  }
  if (!isObject(value)) {
    return invalid(JSONRPC_INVALID_REQUEST, 'not_an_object', 'a JSON-RPC message must be an object', null);
  }
  const hasId = Object.hasOwn(value, 'id');
  const id = hasId ? value.id : undefined;
  const validId = isValidId(id) ? id : null;
  const fail = (jsonRpcCode: JsonRpcErrorCode, code: JsonRpcInvalidCode, message: string): JsonRpcInvalid =>
    invalid(jsonRpcCode, code, message, validId);

  if (!Object.hasOwn(value, 'jsonrpc') || value.jsonrpc !== '2.0') {
    return fail(JSONRPC_INVALID_REQUEST, 'invalid_version', 'jsonrpc must be "2.0"');
  }
  if (hasId && validId === null) {
    return fail(JSONRPC_INVALID_REQUEST, 'invalid_id', 'id must be a string or an integer');
  }

  if (!Object.hasOwn(value, 'method')) {
    if (validId === null) {
      return fail(JSONRPC_INVALID_REQUEST, 'invalid_method', 'a message without an id must have a method');
    }
    return classifyResponse(value, validId, fail);
  }

  const extra = unexpectedMember(value, REQUEST_MEMBERS);
  if (extra !== undefined) {
    return fail(JSONRPC_INVALID_REQUEST, 'unexpected_member', `unexpected member ${quoteName(extra)}`);
  }
  const method = value.method;
  if (typeof method !== 'string' || method === '') {
    return fail(JSONRPC_INVALID_REQUEST, 'invalid_method', 'method must be a non-empty string');
  }
  let params: JsonObject | undefined;
  if (Object.hasOwn(value, 'params')) {
    const p = value.params;
    if (!isObject(p)) return fail(JSONRPC_INVALID_REQUEST, 'params_not_object', 'params must be an object');
    params = p;
  }

  if (validId === null) {
    if (!method.startsWith('notifications/')) {
      return fail(
        JSONRPC_INVALID_REQUEST,
        'notification_method',
        `${quoteName(method)} is not a notification method; requests need an id`,
      );
    }
    return { kind: 'notification', method, params };
  }

  const target = readTarget(method, params);
  if (typeof target === 'string') return fail(JSONRPC_INVALID_PARAMS, 'invalid_params', target);
  return { kind: 'request', id: validId, method, params, target };
}

function classifyResponse(
  value: JsonObject,
  id: JsonRpcId,
  fail: (jsonRpcCode: JsonRpcErrorCode, code: JsonRpcInvalidCode, message: string) => JsonRpcInvalid,
): JsonRpcClassification {
  const extra = unexpectedMember(value, RESPONSE_MEMBERS);
  if (extra !== undefined) {
    return fail(JSONRPC_INVALID_REQUEST, 'unexpected_member', `unexpected member ${quoteName(extra)}`);
  }
  const hasResult = Object.hasOwn(value, 'result');
  const hasError = Object.hasOwn(value, 'error');
  if (hasResult === hasError) {
    return fail(JSONRPC_INVALID_REQUEST, 'invalid_response', 'a response must have exactly one of result and error');
  }
  const result = own(value, 'result');
  if (result !== undefined) return { kind: 'response', id, result };
  const error = value.error;
  if (!isObject(error) || unexpectedMember(error, ERROR_MEMBERS) !== undefined) return badError(fail);
  const code = own(error, 'code');
  const message = own(error, 'message');
  if (typeof code !== 'number' || !Number.isInteger(code) || typeof message !== 'string') return badError(fail);
  const out: JsonRpcErrorObject = { code, message };
  const data = own(error, 'data');
  if (data !== undefined) out.data = data;
  return { kind: 'response', id, error: out };
}

function badError(
  fail: (jsonRpcCode: JsonRpcErrorCode, code: JsonRpcInvalidCode, message: string) => JsonRpcInvalid,
): JsonRpcInvalid {
  return fail(
    JSONRPC_INVALID_REQUEST,
    'invalid_response',
    'error must be an object with an integer code, a string message and optional data',
  );
}

/** The typed target of a method authorized per service; a string is the reason its params are invalid. */
function readTarget(method: string, params: JsonObject | undefined): McpTarget | undefined | string {
  switch (method) {
    case 'tools/call': {
      const name = own(params, 'name');
      if (typeof name !== 'string' || name === '') return 'tools/call: params.name must be a non-empty string';
      const args = own(params, 'arguments');
      if (args !== undefined && !isObject(args)) return 'tools/call: params.arguments must be an object';
      return { method, name, arguments: args ?? {} };
    }
    case 'resources/read':
    case 'resources/subscribe':
    case 'resources/unsubscribe': {
      const uri = own(params, 'uri');
      if (typeof uri !== 'string' || uri === '') return `${method}: params.uri must be a non-empty string`;
      return { method, uri };
    }
    case 'prompts/get': {
      const name = own(params, 'name');
      if (typeof name !== 'string' || name === '') return 'prompts/get: params.name must be a non-empty string';
      const args = own(params, 'arguments');
      if (args === undefined) return { method, name, arguments: {} };
      if (!isObject(args) || !Object.values(args).every((v) => typeof v === 'string')) {
        return 'prompts/get: params.arguments must be an object of strings';
      }
      return { method, name, arguments: args as Record<string, string> };
    }
    default:
      return undefined;
  }
}

export function getToolCall(message: JsonRpcMessage): ToolCallTarget | undefined {
  return message.kind === 'request' && message.target?.method === 'tools/call' ? message.target : undefined;
}

export function getResourceTarget(message: JsonRpcMessage): ResourceTarget | undefined {
  if (message.kind !== 'request' || message.target === undefined) return undefined;
  const t = message.target;
  return t.method === 'resources/read' || t.method === 'resources/subscribe' || t.method === 'resources/unsubscribe'
    ? t
    : undefined;
}

export function getPromptGet(message: JsonRpcMessage): PromptTarget | undefined {
  return message.kind === 'request' && message.target?.method === 'prompts/get' ? message.target : undefined;
}

// ---------------------------------------------------------------------------------------------
// Names (DESIGN §5)
// ---------------------------------------------------------------------------------------------

export const SERVICE_NAME = /^[a-z][a-z0-9-]{0,30}$/;

/** `<service><separator><tool>`, split at the first separator; null when either side is not valid. */
export function splitToolName(name: string, separator = '__'): { service: string; tool: string } | null {
  if (separator === '') return null;
  const at = name.indexOf(separator);
  if (at < 0) return null;
  const service = name.slice(0, at);
  const tool = name.slice(at + separator.length);
  if (!SERVICE_NAME.test(service) || tool === '') return null;
  return { service, tool };
}

const RESOURCE_SCHEME = 'mcpgw://';

/**
 * The gateway's rewrite of a backend resource URI: `mcpgw://<service>/<encodeURIComponent(original)>`.
 * Throws when the service name is invalid or the original is not well-formed Unicode; both are
 * programming errors on the gateway side, never client input.
 */
export function formatResourceUri(service: string, original: string): string {
  if (!SERVICE_NAME.test(service)) throw new TypeError(`invalid service name ${quoteName(service)}`);
  if (original === '') throw new TypeError('empty resource URI');
  return `${RESOURCE_SCHEME}${service}/${encodeURIComponent(original)}`;
}

/**
 * Inverse of formatResourceUri, and strict: only the exact encoding formatResourceUri produces is
 * accepted (upper-case hex, no needless escapes, no raw reserved characters, valid UTF-8), so one
 * resource has exactly one spelling and URIs can be compared as strings.
 */
export function parseResourceUri(uri: string): { service: string; original: string } | null {
  if (!uri.startsWith(RESOURCE_SCHEME)) return null;
  const slash = uri.indexOf('/', RESOURCE_SCHEME.length);
  if (slash < 0) return null;
  const service = uri.slice(RESOURCE_SCHEME.length, slash);
  const encoded = uri.slice(slash + 1);
  if (!SERVICE_NAME.test(service) || encoded === '') return null;
  let original: string;
  try {
    original = decodeURIComponent(encoded);
  } catch {
    return null;
  }
  // encodeURIComponent throws on lone surrogates; decodeURIComponent never yields them, but be total.
  try {
    if (encodeURIComponent(original) !== encoded) return null;
  } catch {
    return null;
  }
  return { service, original };
}

// ---------------------------------------------------------------------------------------------

function invalid(
  jsonRpcCode: JsonRpcErrorCode,
  code: JsonRpcInvalidCode,
  message: string,
  id: JsonRpcId | null,
): JsonRpcInvalid {
  return { kind: 'invalid', code, jsonRpcCode, message, id };
}

function isObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isValidId(v: JsonValue | undefined): v is JsonRpcId {
  return typeof v === 'string' || (typeof v === 'number' && Number.isSafeInteger(v));
}

/** Own members only: inherited names such as `constructor` must never read as present. */
function own(obj: JsonObject | undefined, key: string): JsonValue | undefined {
  return obj !== undefined && Object.hasOwn(obj, key) ? obj[key] : undefined;
}

function unexpectedMember(obj: JsonObject, allowed: ReadonlySet<string>): string | undefined {
  for (const key of Object.keys(obj)) if (!allowed.has(key)) return key;
  return undefined;
}

function quoteName(s: string): string {
  return JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s);
}
