/**
 * What a client sees when authz says no. Every denial carries a body an MCP client can parse:
 * a `tools/call` gets a `CallToolResult` with `isError` (so the model reads why and can tell the
 * user), everything else a JSON-RPC error object (DESIGN §3 "Answer").
 */
import { type JsonRpcId } from './jsonrpc.js';

export { JSONRPC_INVALID_REQUEST, JSONRPC_PARSE_ERROR } from './jsonrpc.js';

export const JSONRPC_POLICY_ERROR = -32001;
export const JSONRPC_METHOD_NOT_FOUND = -32601;
export const JSONRPC_INTERNAL_ERROR = -32603;

export interface DeniedAnswer {
  httpStatus: number;
  headers: Record<string, string>;
  body: string;
}

export function jsonRpcErrorAnswer(
  httpStatus: number,
  code: number,
  message: string,
  id: JsonRpcId | null = null,
  extraHeaders: Record<string, string> = {},
): DeniedAnswer {
  return {
    httpStatus,
    headers: { 'content-type': 'application/json', ...extraHeaders },
    body: JSON.stringify({ jsonrpc: '2.0', id, error: { code, message } }),
  };
}

export interface ToolRefusal {
  decision: 'deny' | 'pending';
  rule: string | null;
  reason: string;
  approvalId?: string;
  retryAfterSeconds?: number;
}

/** Where a refused call's {decision, rule, approvalId, retryAfter} is, in the CallToolResult's _meta. */
export const DECISION_META_KEY = 'io.mcpgw/decision';

/** A refused tools/call: HTTP 200, a JSON-RPC *result* the model can act on. Never says how to approve. */
export function toolRefusalAnswer(id: JsonRpcId, refusal: ToolRefusal): DeniedAnswer {
  const text =
    refusal.decision === 'pending'
      ? `This call needs a human's approval (${refusal.approvalId ?? 'unknown'}). Tell the user; retry the same call after it is approved.`
      : `This call was denied by the gateway's security policy: ${refusal.reason}` +
        (refusal.rule && !refusal.reason.includes(refusal.rule) ? ` (rule '${refusal.rule}')` : '') +
        (refusal.retryAfterSeconds !== undefined
          ? `. You may retry after ${refusal.retryAfterSeconds} seconds.`
          : '. Do not retry it unchanged.');
  const decision = {
    decision: refusal.decision,
    rule: refusal.rule,
    approvalId: refusal.approvalId ?? null,
    retryAfter: refusal.retryAfterSeconds ?? null,
  };
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'x-mcpgw-decision': refusal.decision,
  };
  if (refusal.rule) headers['x-mcpgw-rule'] = headerSafe(refusal.rule);
  if (refusal.approvalId) headers['x-mcpgw-approval-id'] = refusal.approvalId;
  if (refusal.retryAfterSeconds !== undefined) headers['retry-after'] = String(refusal.retryAfterSeconds);
  return {
    httpStatus: 200,
    headers,
    body: JSON.stringify({
      jsonrpc: '2.0',
      id,
      // The machine-readable decision goes in _meta, not structuredContent: clients validate
      // structuredContent against the tool's outputSchema even on errors (the official SDK throws),
      // and authz cannot know that schema.
      result: { content: [{ type: 'text', text }], isError: true, _meta: { [DECISION_META_KEY]: decision } },
    }),
  };
}

/** Rule names come from the policy file; keep header values to visible ASCII. */
function headerSafe(v: string): string {
  return v.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
}
