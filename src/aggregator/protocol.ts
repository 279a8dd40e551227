/**
 * The MCP protocol surface the gateway speaks to agents: versions, error codes and the shapes of
 * the JSON-RPC messages it writes. Plain data; nothing here touches a socket.
 */
import { SUPPORTED_PROTOCOL_VERSIONS as SDK_VERSIONS } from '@modelcontextprotocol/sdk/types.js';
import type { JsonObject, JsonValue } from '../authz/strict-json.js';
import type { JsonRpcId } from '../authz/jsonrpc.js';

export type { JsonObject, JsonValue, JsonRpcId };

/**
 * Versions we accept from agents, newest first. Only those that define Streamable HTTP (from
 * 2025-03-26 on): older ones describe the HTTP+SSE transport, which this endpoint is not. Each is
 * also one the SDK our backend clients use understands, so relayed messages stay within one
 * vocabulary.
 */
export const SUPPORTED_PROTOCOL_VERSIONS: readonly string[] = SDK_VERSIONS.filter((v) => v >= '2025-03-26');
export const LATEST_PROTOCOL_VERSION: string = SUPPORTED_PROTOCOL_VERSIONS[0] ?? '2025-03-26';
/** What a request without `MCP-Protocol-Version` is taken to speak (the spec's fallback). */
export const DEFAULT_PROTOCOL_VERSION = '2025-03-26';

/** The version answered to an `initialize` asking for `requested` (the spec's negotiation). */
export function negotiateProtocolVersion(requested: unknown): string {
  return typeof requested === 'string' && SUPPORTED_PROTOCOL_VERSIONS.includes(requested)
    ? requested
    : LATEST_PROTOCOL_VERSION;
}

export function isSupportedProtocolVersion(v: string): boolean {
  return SUPPORTED_PROTOCOL_VERSIONS.includes(v);
}

export const JSONRPC_PARSE_ERROR = -32700;
export const JSONRPC_INVALID_REQUEST = -32600;
export const JSONRPC_METHOD_NOT_FOUND = -32601;
export const JSONRPC_INVALID_PARAMS = -32602;
export const JSONRPC_INTERNAL_ERROR = -32603;
/** Same code authz uses for policy refusals (src/authz/answers.ts). */
export const JSONRPC_POLICY_ERROR = -32001;
/**
 * A backend is down, restarting or refused the connection. In the implementation-defined server
 * range, apart from -32000/-32001 (the SDK's connection-closed and timeout, and our policy code).
 */
export const GATEWAY_BACKEND_UNAVAILABLE = -32003;
/** A backend did not answer in time; the call was cancelled on the backend. */
export const GATEWAY_BACKEND_TIMEOUT = -32004;

/** An error the gateway answers with; `data` is visible to the agent, so never put secrets in it. */
export class GatewayError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: JsonObject,
  ) {
    super(message);
    this.name = 'GatewayError';
  }
}

export interface JsonRpcErrorBody {
  code: number;
  message: string;
  data?: JsonValue;
}

export type OutgoingResponse =
  | { jsonrpc: '2.0'; id: JsonRpcId | null; result: JsonObject }
  | { jsonrpc: '2.0'; id: JsonRpcId | null; error: JsonRpcErrorBody };
export interface OutgoingNotification {
  jsonrpc: '2.0';
  method: string;
  params?: JsonObject;
}
export interface OutgoingRequest {
  jsonrpc: '2.0';
  id: string;
  method: string;
  params?: JsonObject;
}
export type OutgoingMessage = OutgoingResponse | OutgoingNotification | OutgoingRequest;

export function resultMessage(id: JsonRpcId | null, result: JsonObject): OutgoingResponse {
  return { jsonrpc: '2.0', id, result };
}

export function errorMessage(id: JsonRpcId | null, code: number, message: string, data?: JsonValue): OutgoingResponse {
  const error: JsonRpcErrorBody = { code, message };
  if (data !== undefined) error.data = data;
  return { jsonrpc: '2.0', id, error };
}

export function notificationMessage(method: string, params?: JsonObject): OutgoingNotification {
  return params === undefined ? { jsonrpc: '2.0', method } : { jsonrpc: '2.0', method, params };
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Narrows what a backend sent (already JSON-parsed by the SDK, then run through its loose zod
 * schemas) to a JSON object. Values that JSON cannot hold (undefined members zod may add) are
 * dropped; anything else non-JSON means the value did not come off the wire and is refused.
 */
export function toJsonObject(v: unknown): JsonObject | null {
  const out = toJson(v, 0);
  return out !== undefined && isPlainObject(out) ? (out as JsonObject) : null;
}

function toJson(v: unknown, depth: number): JsonValue | undefined {
  if (depth > 200) return undefined;
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (Array.isArray(v)) {
    const arr: JsonValue[] = [];
    for (const item of v) {
      const j = toJson(item, depth + 1);
      arr.push(j === undefined ? null : j);
    }
    return arr;
  }
  if (isPlainObject(v)) {
    const obj: JsonObject = {};
    for (const [k, item] of Object.entries(v)) {
      const j = toJson(item, depth + 1);
      // defineProperty, not assignment: a "__proto__" member must stay data (see strict-json.ts).
      if (j !== undefined)
        Object.defineProperty(obj, k, { value: j, enumerable: true, writable: true, configurable: true });
    }
    return obj;
  }
  return undefined;
}
