/**
 * The Check handler: one Envoy-shaped HTTP request in, one decision out (DESIGN §3).
 * Plain data in and out, so it is tested without a socket; `server.ts` is the gRPC shell and
 * `check-response.ts` turns the result into a CheckResponse.
 *
 * Order matters and is part of the contract: route → identity → body → session → method →
 * Layer 1 → Layer 2. Identity comes before the body is even decoded, and every failure on the way
 * is a deny with a reason (fail closed); nothing here throws past `check()`.
 */
import type { Principal } from '../identity/store.js';
import type { Layer1Decision, Layer1Input, Layer1Method } from '../policy/layer1-types.js';
import type { ApprovalSettings, Layer2Outcome, Layer2Request } from '../policy/layer2-types.js';
import {
  jsonRpcErrorAnswer,
  toolRefusalAnswer,
  JSONRPC_INTERNAL_ERROR,
  JSONRPC_METHOD_NOT_FOUND,
  JSONRPC_POLICY_ERROR,
  type DeniedAnswer,
} from './answers.js';
import { routePath, type HttpRequestView } from './http-view.js';
import {
  parseJsonRpc,
  parseResourceUri,
  splitToolName,
  JSONRPC_INVALID_REQUEST,
  JSONRPC_PARSE_ERROR,
  type JsonRpcId,
  type McpTarget,
} from './jsonrpc.js';

export type { Principal };

export type AuthResult =
  | { ok: true; principal: Principal; via: 'api_key' | 'jwt'; keyKind?: 'sk' | 'ak' }
  | { ok: false; status: 401 | 403 | 503; code: string; message: string };

export interface Layer1Evaluator {
  readonly revision: string;
  evaluate(input: Layer1Input): Layer1Decision;
}

export interface Layer2Decider {
  decide(req: Layer2Request): Promise<Layer2Outcome>;
}

export interface CheckDeps {
  /** Resolves the `authorization` header to a principal; never throws. */
  authenticate(authorization: string | undefined): Promise<AuthResult>;
  /** The current policy; read once per request so a swap mid-request cannot mix revisions. */
  layer1(): Layer1Evaluator;
  /** Null when no state store is configured: then any call that needs Layer 2 is denied. */
  layer2: Layer2Decider | null;
  /** Records a deny that Layer 2 did not decide (identity, body, routing, Layer 1 without a store). */
  auditDenial?: (decisionId: string, facts: DecisionFacts) => Promise<void>;
  /**
   * Optional `approval.wait`: hold a pending call up to this long for a quick human decision, then
   * decide again. Must stay below the ext_authz timeout.
   */
  approvalWait?: { ms: number; until(approvalId: string, ms: number): Promise<boolean> };
  /** Approval settings for a require_approval outcome (timeouts resolved to seconds). */
  approvalSettings(decision: Layer1Decision): ApprovalSettings;
  sessions: {
    verify(sessionId: string, userId: string): boolean;
    /** True when `id` was issued by the gateway to `sessionId` for a server→client request. */
    verifyServerRequestId(sessionId: string, id: JsonRpcId): boolean;
  };
  upstream: {
    mintToken(p: Principal): Promise<string>;
    requestMac(decisionId: string, body: Uint8Array): string;
  };
  /**
   * Envoy's `max_request_bytes`. A body this long may have been cut: Envoy sends
   * `x-envoy-auth-partial-body: false` when exactly this many bytes arrived before the rest.
   */
  maxBodyBytes: number;
  /** Tool-name separator between service and tool (DESIGN §5). */
  separator: string;
  /** The no-prefix mode's single service: names and URIs are then the backend's own. */
  noPrefixService?: string | null;
  newDecisionId(): string;
  /** Value of `WWW-Authenticate` on 401 answers. */
  wwwAuthenticate: string;
}

/** What was decided, for the log line and the audit; never holds a key, token or body. */
export interface DecisionFacts {
  route: 'mcp' | 'admin' | 'public' | 'unknown';
  httpMethod: string;
  userId: string | null;
  rpcMethod: string | null;
  service: string | null;
  name: string | null;
  code: string;
  rule: string | null;
  reasons: string[];
  approvalId: string | null;
  policyRevision: string | null;
  /** True once Layer 2 wrote this decision's audit row (in its own transaction). */
  audited: boolean;
}

export type CheckResult =
  | {
      kind: 'allow';
      decisionId: string;
      upstreamHeaders: Record<string, string>;
      removeHeaders: string[];
      facts: DecisionFacts;
    }
  | { kind: 'deny'; decisionId: string; grpcCode: number; answer: DeniedAnswer; facts: DecisionFacts };

/** gRPC status codes used in CheckResponse.status (google.rpc.Code). */
export const GRPC_OK = 0;
export const GRPC_PERMISSION_DENIED = 7;
export const GRPC_UNAUTHENTICATED = 16;
export const GRPC_UNAVAILABLE = 14;

const LAYER1_METHODS: ReadonlySet<string> = new Set<Layer1Method>([
  'tools/call',
  'resources/read',
  'resources/subscribe',
  'prompts/get',
]);

/** Methods that need only a valid identity (and, when present, a valid session). */
const IDENTITY_ONLY_METHODS: ReadonlySet<string> = new Set([
  'initialize',
  'ping',
  'tools/list',
  'resources/list',
  'resources/templates/list',
  'resources/unsubscribe',
  'prompts/list',
  'completion/complete',
  'logging/setLevel',
  'notifications/initialized',
  'notifications/cancelled',
  'notifications/progress',
  'notifications/roots/list_changed',
]);

/** Admin routes an approver may use; everything else under /admin/v1 needs an admin. */
const APPROVER_ADMIN_PREFIXES = ['/admin/v1/approvals', '/admin/v1/status', '/admin/v1/whoami'];

export async function check(req: HttpRequestView, deps: CheckDeps): Promise<CheckResult> {
  const decisionId = deps.newDecisionId();
  const facts: DecisionFacts = {
    route: 'unknown',
    httpMethod: req.method,
    userId: null,
    rpcMethod: null,
    service: null,
    name: null,
    code: 'unknown',
    rule: null,
    reasons: [],
    approvalId: null,
    policyRevision: null,
    audited: false,
  };
  let result: CheckResult;
  try {
    result = await decide(req, deps, decisionId, facts);
  } catch (err) {
    // A bug or an unexpected failure is an outage, not an allow (fail closed).
    facts.code = 'internal_error';
    facts.reasons = [err instanceof Error ? err.message : String(err)];
    result = deny(
      decisionId,
      facts,
      GRPC_UNAVAILABLE,
      jsonRpcErrorAnswer(503, JSONRPC_INTERNAL_ERROR, 'Authorization failed; try again later'),
    );
  }
  // Every deny is an audit row, durable before the answer leaves; Layer 2 already wrote its own.
  if (result.kind === 'deny' && !facts.audited && deps.auditDenial) {
    try {
      await deps.auditDenial(decisionId, facts);
    } catch {
      // Already a deny; the store logs its own failure.
    }
  }
  return result;
}

async function decide(
  req: HttpRequestView,
  deps: CheckDeps,
  decisionId: string,
  facts: DecisionFacts,
): Promise<CheckResult> {
  const path = routePath(req.path);

  // 1. Route by exact path.
  if (path === '/healthz' || path.startsWith('/.well-known/')) {
    facts.route = 'public';
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return refuse(decisionId, facts, 'method_not_allowed', 'Only GET is allowed here', 405, JSONRPC_INVALID_REQUEST);
    }
    facts.code = 'public';
    const upstreamHeaders = { 'x-mcpgw-decision-id': decisionId };
    return { kind: 'allow', decisionId, upstreamHeaders, removeHeaders: inboundToRemove(req, upstreamHeaders), facts };
  }
  const isAdmin = path === '/admin/v1' || path.startsWith('/admin/v1/');
  if (isAdmin) facts.route = 'admin';
  else if (path === '/mcp') facts.route = 'mcp';
  else
    return refuse(
      decisionId,
      facts,
      'unknown_route',
      `No such endpoint: ${truncate(path, 100)}`,
      404,
      JSONRPC_INVALID_REQUEST,
    );

  // 2. Identity, before any body is decoded.
  const auth = await deps.authenticate(req.headers['authorization']);
  if (!auth.ok) {
    facts.code = auth.code;
    facts.reasons = [auth.message];
    const headers: Record<string, string> = auth.status === 401 ? { 'www-authenticate': deps.wwwAuthenticate } : {};
    const grpc =
      auth.status === 401 ? GRPC_UNAUTHENTICATED : auth.status === 503 ? GRPC_UNAVAILABLE : GRPC_PERMISSION_DENIED;
    return deny(
      decisionId,
      facts,
      grpc,
      jsonRpcErrorAnswer(
        auth.status,
        auth.status === 503 ? JSONRPC_INTERNAL_ERROR : JSONRPC_POLICY_ERROR,
        auth.message,
        null,
        headers,
      ),
    );
  }
  const principal = auth.principal;
  facts.userId = principal.id;

  if (isAdmin) return admitAdmin(path, principal, auth.keyKind, deps, decisionId, facts, req);

  // 3. /mcp by HTTP method.
  const sessionId = req.headers['mcp-session-id'];
  if (sessionId !== undefined && !deps.sessions.verify(sessionId, principal.id)) {
    return refuse(
      decisionId,
      facts,
      'invalid_session',
      'Unknown or foreign MCP session; send initialize again',
      404,
      JSONRPC_INVALID_REQUEST,
    );
  }
  if (req.method === 'GET' || req.method === 'DELETE') {
    if (req.rawBody.length > 0 || req.bodyAsString) {
      return refuse(
        decisionId,
        facts,
        'unexpected_body',
        `${req.method} /mcp takes no body`,
        400,
        JSONRPC_INVALID_REQUEST,
      );
    }
    if (req.method === 'DELETE' && sessionId === undefined) {
      return refuse(
        decisionId,
        facts,
        'missing_session',
        'DELETE /mcp needs an mcp-session-id',
        400,
        JSONRPC_INVALID_REQUEST,
      );
    }
    facts.code = req.method === 'GET' ? 'stream' : 'session_end';
    return allow(decisionId, facts, principal, req, deps);
  }
  if (req.method !== 'POST') {
    return refuse(
      decisionId,
      facts,
      'method_not_allowed',
      `${req.method} is not allowed on /mcp`,
      405,
      JSONRPC_INVALID_REQUEST,
    );
  }

  // 4. The body, strictly.
  const partial = req.headers['x-envoy-auth-partial-body'];
  if ((partial !== undefined && partial !== 'false') || req.rawBody.length >= deps.maxBodyBytes) {
    return refuse(
      decisionId,
      facts,
      'partial_body',
      'Request body too large to authorize',
      413,
      JSONRPC_INVALID_REQUEST,
    );
  }
  if (req.bodyAsString) {
    return refuse(
      decisionId,
      facts,
      'body_not_bytes',
      'Authorization needs the raw body (pack_as_bytes)',
      400,
      JSONRPC_INVALID_REQUEST,
    );
  }
  const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  if (encoding !== 'identity' && encoding !== '') {
    return refuse(
      decisionId,
      facts,
      'content_encoding',
      `Content-Encoding ${truncate(encoding, 40)} is not accepted`,
      415,
      JSONRPC_INVALID_REQUEST,
    );
  }
  const contentType = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (contentType !== 'application/json') {
    return refuse(
      decisionId,
      facts,
      'content_type',
      'Content-Type must be application/json',
      415,
      JSONRPC_INVALID_REQUEST,
    );
  }
  const msg = parseJsonRpc(req.rawBody);
  if (msg.kind === 'invalid') {
    const prefix = msg.jsonRpcCode === JSONRPC_PARSE_ERROR ? 'Parse error' : 'Invalid request';
    return refuse(decisionId, facts, `body_${msg.code}`, `${prefix}: ${msg.message}`, 400, msg.jsonRpcCode, msg.id);
  }

  // 5. Client responses: only to a request the gateway issued to this very session.
  if (msg.kind === 'response') {
    facts.rpcMethod = '(response)';
    if (sessionId === undefined || !deps.sessions.verifyServerRequestId(sessionId, msg.id)) {
      return refuse(
        decisionId,
        facts,
        'unsolicited_response',
        'Response to a request this session was not sent',
        403,
        JSONRPC_INVALID_REQUEST,
      );
    }
    facts.code = 'client_response';
    return allow(decisionId, facts, principal, req, deps);
  }

  facts.rpcMethod = msg.method;
  const id: JsonRpcId | null = msg.kind === 'request' ? msg.id : null;
  if (IDENTITY_ONLY_METHODS.has(msg.method)) {
    if (msg.method !== 'initialize' && msg.kind === 'request' && sessionId === undefined && msg.method !== 'ping') {
      return refuse(
        decisionId,
        facts,
        'missing_session',
        'No MCP session: send initialize first',
        400,
        JSONRPC_INVALID_REQUEST,
        id,
      );
    }
    facts.code = 'identity_only';
    return allow(decisionId, facts, principal, req, deps);
  }
  if (!LAYER1_METHODS.has(msg.method)) {
    return refuse(
      decisionId,
      facts,
      'unknown_method',
      `Method not allowed through the gateway: ${truncate(msg.method, 80)}`,
      403,
      JSONRPC_METHOD_NOT_FOUND,
      id,
    );
  }
  if (msg.kind !== 'request') {
    return refuse(
      decisionId,
      facts,
      'notification_not_allowed',
      `${msg.method} must be a request with an id`,
      400,
      JSONRPC_INVALID_REQUEST,
    );
  }
  if (sessionId === undefined) {
    return refuse(
      decisionId,
      facts,
      'missing_session',
      'No MCP session: send initialize first',
      400,
      JSONRPC_INVALID_REQUEST,
      msg.id,
    );
  }

  // 6. Which service and name the call is about.
  const method = msg.method as Layer1Method;
  const target = resolveTarget(msg.target, deps.separator, deps.noPrefixService ?? null);
  if (!target.ok) return refuse(decisionId, facts, target.code, target.message, 400, JSONRPC_INVALID_REQUEST, msg.id);
  facts.service = target.service;
  facts.name = target.name;

  // 7. Layer 1.
  const engine = deps.layer1();
  facts.policyRevision = engine.revision;
  const input: Layer1Input = {
    user: { id: principal.id, role: principal.role },
    grants: principal.grants,
    method,
    service: target.service,
    name: target.name,
    arguments: target.arguments,
  };
  const l1 = engine.evaluate(input);
  facts.code = l1.code;
  facts.rule = l1.rule;
  facts.reasons = l1.reasons;
  const toolCall = method === 'tools/call';

  const needsLayer2 =
    l1.outcome === 'require_approval' ||
    l1.layer2.limits.length + l1.layer2.budgets.length + l1.layer2.preconditions.length > 0 ||
    l1.layer2.flows.sources.length + l1.layer2.flows.sinks.length > 0 ||
    l1.layer2.duties.first.length + l1.layer2.duties.then.length > 0;

  // 8. Layer 2: state, approvals and the audit row. Without a store, only stateless allows pass.
  if (deps.layer2 === null) {
    if (l1.outcome === 'deny')
      return policyRefusal(decisionId, facts, msg.id, toolCall, {
        decision: 'deny',
        rule: l1.rule,
        reason: l1.reasons[0] ?? 'denied',
      });
    if (needsLayer2) {
      facts.code = 'layer2_unavailable';
      return policyRefusal(decisionId, facts, msg.id, toolCall, {
        decision: 'deny',
        rule: l1.rule,
        reason: 'this call needs the gateway state store (approvals, limits or flows), which is not configured',
      });
    }
    return allow(decisionId, facts, principal, req, deps);
  }
  const l2req = {
    decisionId,
    policyRevision: engine.revision,
    userId: principal.id,
    sessionId,
    method,
    service: target.service,
    name: target.name,
    arguments: target.arguments,
    layer1: l1,
    approval: l1.outcome === 'require_approval' ? deps.approvalSettings(l1) : null,
  };
  let outcome = await deps.layer2.decide(l2req);
  facts.audited = true;
  if (outcome.outcome === 'pending' && deps.approvalWait && deps.approvalWait.ms > 0) {
    // A decision within the wait turns into an answer now; the retry consumes the approval.
    if (await deps.approvalWait.until(outcome.approvalId, deps.approvalWait.ms)) {
      outcome = await deps.layer2.decide({ ...l2req, decisionId: `${decisionId}.retry` });
    }
  }
  facts.rule = outcome.rule;
  facts.reasons = outcome.reasons;
  if (outcome.outcome === 'allow') return allow(decisionId, facts, principal, req, deps);
  if (outcome.outcome === 'pending') {
    facts.code = 'pending';
    facts.approvalId = outcome.approvalId;
    return policyRefusal(decisionId, facts, msg.id, toolCall, {
      decision: 'pending',
      rule: outcome.rule,
      reason: outcome.reasons[0] ?? 'needs approval',
      approvalId: outcome.approvalId,
    });
  }
  if (facts.code === 'rule' && l1.outcome !== 'deny') facts.code = 'layer2_deny';
  return policyRefusal(decisionId, facts, msg.id, toolCall, {
    decision: 'deny',
    rule: outcome.rule,
    reason: outcome.reasons[0] ?? 'denied',
    ...(outcome.retryAfterSeconds !== undefined ? { retryAfterSeconds: outcome.retryAfterSeconds } : {}),
  });
}

type Target =
  | { ok: true; service: string; name: string; arguments: Record<string, unknown> }
  | { ok: false; code: string; message: string };

/** Which service and name a Layer 1 method is about; the JSON-RPC layer has already typed the params. */
function resolveTarget(target: McpTarget | undefined, separator: string, noPrefixService: string | null): Target {
  if (!target) return { ok: false, code: 'missing_target', message: 'Missing params for this method' };
  if (noPrefixService !== null) {
    // No-prefix mode: one backend, whose names and URIs travel unchanged.
    return target.method === 'tools/call' || target.method === 'prompts/get'
      ? { ok: true, service: noPrefixService, name: target.name, arguments: target.arguments }
      : { ok: true, service: noPrefixService, name: target.uri, arguments: {} };
  }
  if (target.method === 'tools/call' || target.method === 'prompts/get') {
    const split = splitToolName(target.name, separator);
    if (!split) return { ok: false, code: 'bad_name', message: `Name must be <service>${separator}<name>` };
    return { ok: true, service: split.service, name: split.tool, arguments: target.arguments };
  }
  const res = parseResourceUri(target.uri);
  if (!res) return { ok: false, code: 'bad_uri', message: 'Resource URIs look like mcpgw://<service>/<encoded uri>' };
  return { ok: true, service: res.service, name: res.original, arguments: {} };
}

async function admitAdmin(
  path: string,
  principal: Principal,
  keyKind: 'sk' | 'ak' | undefined,
  deps: CheckDeps,
  decisionId: string,
  facts: DecisionFacts,
  req: HttpRequestView,
): Promise<CheckResult> {
  // Agent keys never reach the admin API, whatever role the store claims.
  if (keyKind === 'sk' || principal.role === 'agent') {
    return refuse(
      decisionId,
      facts,
      'agent_on_admin',
      'Agent credentials cannot use the admin API',
      403,
      JSONRPC_POLICY_ERROR,
    );
  }
  if (principal.role === 'approver' && !APPROVER_ADMIN_PREFIXES.some((p) => path === p || path.startsWith(`${p}/`))) {
    return refuse(
      decisionId,
      facts,
      'approver_not_admin',
      'Approvers may only list and decide approvals',
      403,
      JSONRPC_POLICY_ERROR,
    );
  }
  facts.code = 'admin';
  return allow(decisionId, facts, principal, req, deps);
}

async function allow(
  decisionId: string,
  facts: DecisionFacts,
  principal: Principal,
  req: HttpRequestView,
  deps: CheckDeps,
): Promise<CheckResult> {
  const token = await deps.upstream.mintToken(principal);
  const upstreamHeaders: Record<string, string> = {
    authorization: `Bearer ${token}`,
    'x-mcpgw-user': principal.id,
    'x-mcpgw-decision-id': decisionId,
    'x-mcpgw-request-mac': deps.upstream.requestMac(decisionId, req.rawBody),
  };
  return { kind: 'allow', decisionId, upstreamHeaders, removeHeaders: inboundToRemove(req, upstreamHeaders), facts };
}

/**
 * The client's credential and anything that pretends to come from us never reach upstream. Headers
 * we set are overwritten instead of removed: Envoy applies headers_to_remove after the additions,
 * so removing them would drop our own values.
 */
function inboundToRemove(req: HttpRequestView, set: Record<string, string> = {}): string[] {
  const out: string[] = [];
  if (!('authorization' in set)) out.push('authorization');
  for (const name of Object.keys(req.headers)) {
    if (name.startsWith('x-mcpgw-') && !(name in set)) out.push(name);
  }
  return out;
}

function policyRefusal(
  decisionId: string,
  facts: DecisionFacts,
  id: JsonRpcId,
  toolCall: boolean,
  refusal: Parameters<typeof toolRefusalAnswer>[1],
): CheckResult {
  if (toolCall) return deny(decisionId, facts, GRPC_PERMISSION_DENIED, toolRefusalAnswer(id, refusal));
  const message =
    refusal.decision === 'pending'
      ? `Needs a human's approval (${refusal.approvalId ?? ''}); retry after it is approved`
      : `Denied by the gateway's security policy${refusal.rule ? ` (rule '${refusal.rule}')` : ''}: ${refusal.reason}`;
  const headers: Record<string, string> = { 'x-mcpgw-decision': refusal.decision };
  if (refusal.approvalId) headers['x-mcpgw-approval-id'] = refusal.approvalId;
  return deny(
    decisionId,
    facts,
    GRPC_PERMISSION_DENIED,
    jsonRpcErrorAnswer(403, JSONRPC_POLICY_ERROR, message, id, headers),
  );
}

function refuse(
  decisionId: string,
  facts: DecisionFacts,
  code: string,
  message: string,
  status: number,
  rpcCode: number,
  id: JsonRpcId | null = null,
): CheckResult {
  facts.code = code;
  facts.reasons = [message];
  return deny(decisionId, facts, GRPC_PERMISSION_DENIED, jsonRpcErrorAnswer(status, rpcCode, message, id));
}

function deny(decisionId: string, facts: DecisionFacts, grpcCode: number, answer: DeniedAnswer): CheckResult {
  return { kind: 'deny', decisionId, grpcCode, answer, facts };
}

function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}
