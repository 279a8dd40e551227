/**
 * The admin API contract (`/admin/v1`): every route, request and response as zod schemas, shared by
 * the server (src/admin/api.ts) and the CLI. Responses are plain JSON: timestamps are ISO 8601
 * strings in UTC, absent values are `null` rather than missing, so a client written in any language
 * sees one shape.
 *
 * The server types its answers with the inferred types and the tests parse every answer with these
 * schemas, so the contract is checked without paying for a runtime parse on each response.
 */
import { z } from 'zod';
import { USER_ID_PATTERN } from '../identity/store.js';
import { ROLES } from '../policy/layer1-types.js';
import { ENV_NAME_PATTERN, FLAG_NAME_PATTERN, RULE_NAME_PATTERN, SERVICE_NAME_PATTERN } from '../policy/schema.js';

export const ADMIN_BASE_PATH = '/admin/v1';

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/** Stable error codes; clients branch on these, never on messages. */
export const ERROR_CODES = [
  'bad_request',
  'unauthorized',
  'forbidden',
  'not_found',
  'method_not_allowed',
  'conflict',
  'payload_too_large',
  'unsupported_media_type',
  'invalid_policy',
  'unavailable',
  'internal',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export const ERROR_STATUS: Readonly<Record<ErrorCode, number>> = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  invalid_policy: 422,
  unavailable: 503,
  internal: 500,
};

/**
 * `details` is always present: `null`, or per code — `invalid_policy`: the diagnostics list;
 * `bad_request` from validation: `{issues: [{path, message}]}`; approval errors: `{reason}` with
 * the store's code (`ambiguous`, `not_pending`, `expired`, …).
 */
export const errorBodySchema = z.strictObject({
  error: z.strictObject({
    code: z.enum(ERROR_CODES),
    message: z.string(),
    details: z.unknown(),
  }),
});
export type ErrorBody = z.infer<typeof errorBodySchema>;

export const validationIssueSchema = z.strictObject({ path: z.string(), message: z.string() });
export type ValidationIssue = z.infer<typeof validationIssueSchema>;

export const policyDiagnosticSchema = z.strictObject({
  file: z.string(),
  line: z.number().int(),
  column: z.number().int(),
  path: z.string(),
  message: z.string(),
});
export type PolicyDiagnosticBody = z.infer<typeof policyDiagnosticSchema>;

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;
/** Of the policy text itself (Envoy never buffers admin bodies, so this is ours to bound). */
export const MAX_POLICY_CHARS = 1024 * 1024;

const timestamp = z.iso.datetime();
const role = z.enum(ROLES);
export const userIdSchema = z.string().regex(USER_ID_PATTERN, 'user ids are 1–256 visible ASCII characters');
export const serviceNameSchema = z.string().regex(SERVICE_NAME_PATTERN, 'service names match ^[a-z][a-z0-9-]{0,30}$');
export const ruleNameSchema = z.string().regex(RULE_NAME_PATTERN, 'not a rule name');
export const flagNameSchema = z
  .string()
  .regex(FLAG_NAME_PATTERN, 'a flag name is lowercase letters, digits, "_", "." and "-" (64 at most)');
/** Tool, prompt or resource names as grants hold them; control characters never. */
export const grantedNameSchema = z
  .string()
  .min(1)
  .max(2048)
  .regex(/^[^\p{Cc}]+$/u, 'no control characters');
const reason = z.string().max(1000);

/** `?cursor=&limit=` on every list. A cursor is opaque: pass back `nextCursor` unchanged. */
export const pageQuerySchema = z.strictObject({
  cursor: z.string().min(1).max(2048).optional(),
  limit: z.coerce.number().int().min(1).max(MAX_PAGE_SIZE).default(DEFAULT_PAGE_SIZE),
});
export type PageQuery = z.infer<typeof pageQuerySchema>;

export function pageSchema<T extends z.ZodType>(item: T) {
  return z.strictObject({ items: z.array(item), nextCursor: z.string().nullable() });
}
export interface Page<T> {
  items: T[];
  /** Pass as `?cursor=` for the next page; null at the end. */
  nextCursor: string | null;
}

/** Where a counter or mark applies; `all` = every scope of the rule. */
export const scopeSchema = z.union([
  z.literal('all'),
  z.literal('global'),
  z.strictObject({ userId: userIdSchema }),
  z.strictObject({ sessionId: z.string().min(1).max(512) }),
]);
export type ScopeBody = z.infer<typeof scopeSchema>;

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------

/** What the aggregator reports per backend (`Aggregator.stats().backends`, plus its last error). */
export const backendStatusSchema = z.strictObject({
  service: z.string(),
  state: z.string(),
  scope: z.string().nullable(),
  lastError: z.string().nullable(),
  /** `state === 'ready'`. */
  healthy: z.boolean(),
});
export type BackendStatusBody = z.infer<typeof backendStatusSchema>;

export const serviceSummarySchema = z.strictObject({
  name: z.string(),
  /** `stdio`, `http` or `sse`. */
  transport: z.string(),
  enabled: z.boolean(),
  suspended: z.boolean(),
});

export const statusResponseSchema = z.strictObject({
  version: z.string(),
  startedAt: timestamp,
  uptimeSeconds: z.number().nonnegative(),
  policy: z.strictObject({ revision: z.string(), file: z.string() }),
  store: z.strictObject({ kind: z.enum(['postgres', 'pglite']) }),
  backends: z.array(backendStatusSchema),
  services: z.array(serviceSummarySchema),
  approvals: z.strictObject({ pending: z.number().int().nonnegative() }),
});
export type StatusResponse = z.infer<typeof statusResponseSchema>;

export const whoamiResponseSchema = z.strictObject({
  id: z.string(),
  role,
  email: z.string().nullable(),
  /** False when the caller authenticated (e.g. by OIDC) but has no user record. */
  known: z.boolean(),
});
export type WhoamiResponse = z.infer<typeof whoamiResponseSchema>;

// ---------------------------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------------------------

export const policyApplyRequestSchema = z.strictObject({
  /** Names the file in diagnostics and in the stored revision; never read from disk. */
  filename: z.string().min(1).max(512),
  content: z.string().max(MAX_POLICY_CHARS),
  dryRun: z.boolean().default(false),
});
export type PolicyApplyRequest = z.input<typeof policyApplyRequestSchema>;

export const DIFF_KINDS = [
  'rule',
  'limit',
  'flow',
  'budget',
  'precondition',
  'duty',
  'service',
  'tools',
  'approval',
] as const;
export type DiffKind = (typeof DIFF_KINDS)[number];

/** Names of what changed, never values: a service's settings may name secrets. */
export const diffEntrySchema = z.strictObject({
  kind: z.enum(DIFF_KINDS),
  name: z.string(),
  change: z.enum(['added', 'removed', 'changed']),
  /** For `changed`: the fields that differ. */
  fields: z.array(z.string()),
});
export type DiffEntry = z.infer<typeof diffEntrySchema>;

export const policyDiffSchema = z.strictObject({
  from: z.string(),
  to: z.string(),
  unchanged: z.boolean(),
  changes: z.array(diffEntrySchema),
  /** One line a human reads, e.g. `rules: 1 added, 1 changed; limits: 1 removed`. */
  summary: z.string(),
});
export type PolicyDiff = z.infer<typeof policyDiffSchema>;

export const policyApplyResponseSchema = z.strictObject({
  /** True when this request swapped the policy in. */
  applied: z.boolean(),
  dryRun: z.boolean(),
  revision: z.string(),
  previousRevision: z.string(),
  /** Id of the stored revision row; null on a dry run or when nothing changed. */
  storedAs: z.string().nullable(),
  diff: policyDiffSchema,
  warnings: z.array(policyDiagnosticSchema),
});
export type PolicyApplyResponse = z.infer<typeof policyApplyResponseSchema>;

export const policyInfoResponseSchema = z.strictObject({
  revision: z.string(),
  file: z.string(),
  storedAs: z.string().nullable(),
  appliedAt: timestamp.nullable(),
  appliedBy: z.string().nullable(),
});
export type PolicyInfoResponse = z.infer<typeof policyInfoResponseSchema>;

// ---------------------------------------------------------------------------------------------
// Users, keys, grants
// ---------------------------------------------------------------------------------------------

export const createUserRequestSchema = z.strictObject({
  id: userIdSchema,
  role,
  email: z.email().max(320).optional(),
});
export type CreateUserRequest = z.input<typeof createUserRequestSchema>;

export const apiKeyInfoSchema = z.strictObject({
  /** The 8 characters after `mcpgw_sk_` / `mcpgw_ak_`: enough to tell keys apart, useless to log in. */
  displayId: z.string(),
  kind: z.enum(['sk', 'ak']),
  createdAt: timestamp,
});

export const grantsSchema = z.record(z.string(), z.array(z.string()));

export const userSchema = z.strictObject({
  id: z.string(),
  role,
  email: z.string().nullable(),
  grants: grantsSchema,
  /** Unrevoked keys only. */
  keys: z.array(apiKeyInfoSchema),
});
export type UserBody = z.infer<typeof userSchema>;

export const userPageSchema = pageSchema(userSchema);

/** The only responses that ever contain a key: it is not stored, so it cannot be shown again. */
export const createUserResponseSchema = z.strictObject({ user: userSchema, apiKey: z.string() });
export type CreateUserResponse = z.infer<typeof createUserResponseSchema>;

export const rotateKeyResponseSchema = z.strictObject({
  user: userSchema,
  apiKey: z.string(),
  /** Display ids of the keys this rotation revoked. */
  revoked: z.array(z.string()),
});
export type RotateKeyResponse = z.infer<typeof rotateKeyResponseSchema>;

export const deleteUserResponseSchema = z.strictObject({ id: z.string(), deleted: z.literal(true) });

export const grantRequestSchema = z.strictObject({
  service: serviceNameSchema,
  /** `["*"]` grants every tool, prompt and resource of the service. */
  tools: z.array(grantedNameSchema).min(1).max(1000),
});
export type GrantRequest = z.input<typeof grantRequestSchema>;

export const grantsResponseSchema = z.strictObject({
  userId: z.string(),
  grants: grantsSchema,
  /** E.g. the service is not in the policy's catalog (yet): the grant is stored but has no effect. */
  warnings: z.array(z.string()),
});
export type GrantsResponse = z.infer<typeof grantsResponseSchema>;

export const revokeGrantResponseSchema = z.strictObject({
  userId: z.string(),
  removed: z.number().int().positive(),
  grants: grantsSchema,
});
export type RevokeGrantResponse = z.infer<typeof revokeGrantResponseSchema>;

// ---------------------------------------------------------------------------------------------
// Approvals
// ---------------------------------------------------------------------------------------------

export const APPROVAL_STATUSES = ['pending', 'approved', 'denied', 'expired'] as const;

export const approvalSchema = z.strictObject({
  id: z.string(),
  userId: z.string(),
  sessionId: z.string().nullable(),
  method: z.string(),
  service: z.string(),
  tool: z.string(),
  /** SHA-256 of the JCS of the arguments; the arguments themselves are never stored. */
  digest: z.string(),
  rule: z.string(),
  reasons: z.array(z.string()),
  /** The call's classification labels (e.g. `scope:external`): what kind of call waits, without its arguments. */
  labels: z.array(z.string()),
  approvers: z.array(z.string()),
  status: z.enum(APPROVAL_STATUSES),
  createdAt: timestamp,
  expiresAt: timestamp,
  timeoutSeconds: z.number(),
  consumeWithinSeconds: z.number(),
  decidedBy: z.string().nullable(),
  decidedAt: timestamp.nullable(),
  decisionReason: z.string().nullable(),
  override: z.boolean(),
  consumedAt: timestamp.nullable(),
  consumedBy: z.string().nullable(),
  requestDecisionId: z.string(),
  policyRevision: z.string().nullable(),
});
export type ApprovalBody = z.infer<typeof approvalSchema>;

export const approvalPageSchema = pageSchema(approvalSchema);

export const approvalListQuerySchema = pageQuerySchema.extend({
  /** One status or a comma-separated list. */
  status: z
    .string()
    .transform((s) => s.split(',').map((x) => x.trim()))
    .pipe(z.array(z.enum(APPROVAL_STATUSES)).min(1))
    .optional(),
  user: userIdSchema.optional(),
  service: z.string().min(1).max(64).optional(),
  tool: z.string().min(1).max(256).optional(),
});

export const approveRequestSchema = z.strictObject({
  /** An admin not among the rule's approvers must set this; it is audited. */
  override: z.boolean().default(false),
  reason: reason.optional(),
});
export type ApproveRequest = z.input<typeof approveRequestSchema>;

export const denyRequestSchema = z.strictObject({
  reason: reason.trim().min(1, 'say why (the agent is told)'),
  override: z.boolean().default(false),
});
export type DenyRequest = z.input<typeof denyRequestSchema>;

// ---------------------------------------------------------------------------------------------
// Preconditions (flags)
// ---------------------------------------------------------------------------------------------

export const conditionSchema = z.strictObject({
  name: z.string(),
  /** null: not set (a precondition that requires it denies). */
  value: z.string().nullable(),
  setBy: z.string().nullable(),
  setAt: timestamp.nullable(),
  /** Preconditions of the policy in force that read this flag, with the value each requires. */
  requiredBy: z.array(z.strictObject({ precondition: z.string(), value: z.string() })),
});
export type ConditionBody = z.infer<typeof conditionSchema>;
export const conditionPageSchema = pageSchema(conditionSchema);

export const setConditionRequestSchema = z.strictObject({
  value: z.union([z.string().max(1024), z.number(), z.boolean()]),
});
export type SetConditionRequest = z.input<typeof setConditionRequestSchema>;

export const deletedResponseSchema = z.strictObject({ name: z.string(), deleted: z.literal(true) });

// ---------------------------------------------------------------------------------------------
// Limits, budgets, taint
// ---------------------------------------------------------------------------------------------

const scopeKind = z.enum(['user', 'session', 'global']);

export const limitUsageSchema = z.strictObject({
  rule: z.string(),
  scope: scopeKind,
  /** The user or session id; null for global. */
  subject: z.string().nullable(),
  /** Calls counted in the current window. */
  count: z.number().int().nonnegative(),
  /** From the policy in force; null when the rule is no longer in it. */
  max: z.number().int().nullable(),
  perSeconds: z.number().nullable(),
  oldest: timestamp.nullable(),
  newest: timestamp.nullable(),
});
export type LimitUsageBody = z.infer<typeof limitUsageSchema>;
export const limitPageSchema = pageSchema(limitUsageSchema);

export const budgetUsageSchema = z.strictObject({
  rule: z.string(),
  scope: scopeKind,
  subject: z.string().nullable(),
  used: z.number().int().nonnegative(),
  max: z.number().int().nullable(),
  remaining: z.number().int().nullable(),
  updatedAt: timestamp,
});
export type BudgetUsageBody = z.infer<typeof budgetUsageSchema>;
export const budgetPageSchema = pageSchema(budgetUsageSchema);

export const resetRequestSchema = z.strictObject({ scope: scopeSchema.default('all') });
export type ResetRequest = z.input<typeof resetRequestSchema>;

export const resetResponseSchema = z.strictObject({ rule: z.string(), reset: z.number().int().nonnegative() });
export type ResetResponse = z.infer<typeof resetResponseSchema>;

export const counterQuerySchema = pageQuerySchema.extend({ rule: ruleNameSchema.optional() });

export const taintMarkSchema = z.strictObject({
  flow: z.string(),
  scope: scopeKind,
  userId: z.string(),
  sessionId: z.string().nullable(),
  setAt: timestamp,
  expiresAt: timestamp.nullable(),
  sourceDecisionId: z.string(),
});
export const taintPageSchema = pageSchema(taintMarkSchema);
export const taintQuerySchema = pageQuerySchema.extend({ user: userIdSchema.optional() });

export const taintClearRequestSchema = z.union([
  z.strictObject({ userId: userIdSchema }),
  z.strictObject({ sessionId: z.string().min(1).max(512) }),
  z.strictObject({ all: z.literal(true) }),
]);
export type TaintClearRequest = z.input<typeof taintClearRequestSchema>;

export const taintClearResponseSchema = z.strictObject({ cleared: z.number().int().nonnegative() });

// ---------------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------------

export const AUDIT_OUTCOMES = ['allow', 'deny', 'pending'] as const;

export const auditQuerySchema = pageQuerySchema.extend({
  /** Inclusive lower bound, ISO 8601 with an offset. */
  since: z.iso.datetime({ offset: true }).optional(),
  /** Exclusive upper bound. */
  until: z.iso.datetime({ offset: true }).optional(),
  user: userIdSchema.optional(),
  outcome: z.enum(AUDIT_OUTCOMES).optional(),
  method: z.string().min(1).max(128).optional(),
  service: z.string().min(1).max(64).optional(),
  tool: z.string().min(1).max(256).optional(),
});

/** An audit row: who, what, the verdict and why; argument values are never recorded. */
export const auditEntrySchema = z.strictObject({
  id: z.string(),
  decisionId: z.string(),
  at: timestamp,
  userId: z.string().nullable(),
  sessionId: z.string().nullable(),
  method: z.string(),
  service: z.string().nullable(),
  tool: z.string().nullable(),
  outcome: z.enum(AUDIT_OUTCOMES),
  rule: z.string().nullable(),
  reasons: z.array(z.string()),
  policyRevision: z.string().nullable(),
  digest: z.string().nullable(),
  approvalId: z.string().nullable(),
  detail: z.record(z.string(), z.unknown()).nullable(),
  /** null until the sealer chained the row. */
  seq: z.number().int().nullable(),
});
export type AuditEntryBody = z.infer<typeof auditEntrySchema>;
export const auditPageSchema = pageSchema(auditEntrySchema);

export const auditVerifyRequestSchema = z.strictObject({
  unsealedAfterSeconds: z.number().nonnegative().max(31_536_000).optional(),
  maxIssues: z.number().int().min(1).max(100_000).optional(),
});

export const auditReportSchema = z.strictObject({
  ok: z.boolean(),
  checked: z.number().int(),
  head: z.strictObject({ seq: z.number().int(), hash: z.string() }).nullable(),
  unsealed: z.number().int(),
  issues: z.array(
    z.strictObject({
      kind: z.enum(['deleted', 'modified', 'reordered', 'unsealed']),
      seq: z.number().int().nullable(),
      toSeq: z.number().int().nullable(),
      decisionId: z.string().nullable(),
      message: z.string(),
    }),
  ),
});
export type AuditReportBody = z.infer<typeof auditReportSchema>;

// ---------------------------------------------------------------------------------------------
// Services
// ---------------------------------------------------------------------------------------------

export const SERVICE_ACTIONS = ['enable', 'disable', 'suspend', 'resume'] as const;
export type ServiceAction = (typeof SERVICE_ACTIONS)[number];

export const serviceSchema = z.strictObject({
  name: z.string(),
  /** `stdio`, `http` or `sse`. */
  transport: z.string(),
  /** `enabled` as the policy file says. */
  policyEnabled: z.boolean(),
  /** In force: the runtime setting (enable/disable) when there is one, else the file's. */
  enabled: z.boolean(),
  suspended: z.boolean(),
  /** Allow-listed tools; null = every tool the backend offers. */
  tools: z.array(z.string()).nullable(),
  reason: z.string().nullable(),
  updatedBy: z.string().nullable(),
  updatedAt: timestamp.nullable(),
});
export type ServiceBody = z.infer<typeof serviceSchema>;
export const servicePageSchema = pageSchema(serviceSchema);

export const serviceActionRequestSchema = z.strictObject({ reason: reason.optional() });

// ---------------------------------------------------------------------------------------------
// Secrets (values go in, never out: no response or error carries one)
// ---------------------------------------------------------------------------------------------

export const secretVariableSchema = z
  .string()
  .regex(ENV_NAME_PATTERN, 'a variable name is A-Z, 0-9 and "_", not starting with a digit (128 at most)');
/** The value travels only in this request body (authz never buffers admin bodies). */
export const setSecretRequestSchema = z.strictObject({ value: z.string() });
export const SECRET_BACKENDS = ['builtin', 'vault', 'none'] as const;

export const secretEntrySchema = z.strictObject({
  service: z.string(),
  variable: z.string(),
  stored: z.boolean(),
  /** Named by the policy's `services.<service>.secrets` list. */
  declared: z.boolean(),
  updatedAt: timestamp.nullable(),
});
export type SecretEntryBody = z.infer<typeof secretEntrySchema>;
export const secretPageSchema = pageSchema(secretEntrySchema).extend({ backend: z.enum(SECRET_BACKENDS) });
export type SecretPage = z.infer<typeof secretPageSchema>;

export const setSecretResponseSchema = z.strictObject({
  service: z.string(),
  variable: z.string(),
  stored: z.literal(true),
  /** false when a value was replaced. */
  created: z.boolean(),
  backend: z.enum(SECRET_BACKENDS),
  /** Names the policy in force would not inject (not in the service's `secrets` list, unknown service). */
  warnings: z.array(z.string()),
  /** A running stdio child keeps the environment it was started with. */
  restart: z.strictObject({ needed: z.boolean(), done: z.boolean(), message: z.string().nullable() }),
});
export type SetSecretResponse = z.infer<typeof setSecretResponseSchema>;

export const deleteSecretResponseSchema = z.strictObject({
  service: z.string(),
  variable: z.string(),
  deleted: z.literal(true),
});

export const secretTestVariableSchema = z.strictObject({
  name: z.string(),
  stored: z.boolean(),
  declared: z.boolean(),
  /** Present and non-empty in the environment (stdio) or headers (http/sse) the backend gets. */
  delivered: z.boolean(),
});
export const secretTestResponseSchema = z.strictObject({
  service: z.string(),
  transport: z.string(),
  backend: z.enum(SECRET_BACKENDS),
  variables: z.array(secretTestVariableSchema),
  /** Declared (or referenced by a header) but not delivered. */
  missing: z.array(z.string()),
  /** Stored but outside the service's authoritative `secrets` list: never injected. */
  ignored: z.array(z.string()),
  /** stdio: the backend started with this environment and answered `initialize`; null for http/sse. */
  started: z.boolean().nullable(),
  /** Why the start failed; names and exit codes only. */
  error: z.string().nullable(),
  ok: z.boolean(),
});
export type SecretTestResponse = z.infer<typeof secretTestResponseSchema>;

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface RouteSpec {
  method: HttpMethod;
  /** Below `/admin/v1`; `:name` is one path segment (percent-decoded). */
  path: string;
  /** Approvers may call it too (the rest is admin-only); mirrors the authz allow-list. */
  approver?: true;
}

export const ADMIN_ROUTES = {
  status: { method: 'GET', path: '/status', approver: true },
  whoami: { method: 'GET', path: '/whoami', approver: true },
  getPolicy: { method: 'GET', path: '/policy' },
  applyPolicy: { method: 'POST', path: '/policy' },
  listUsers: { method: 'GET', path: '/users' },
  createUser: { method: 'POST', path: '/users' },
  getUser: { method: 'GET', path: '/users/:id' },
  deleteUser: { method: 'DELETE', path: '/users/:id' },
  rotateKey: { method: 'POST', path: '/users/:id/rotate-key' },
  addGrants: { method: 'POST', path: '/users/:id/grants' },
  revokeServiceGrants: { method: 'DELETE', path: '/users/:id/grants/:service' },
  revokeToolGrant: { method: 'DELETE', path: '/users/:id/grants/:service/:tool' },
  listApprovals: { method: 'GET', path: '/approvals', approver: true },
  getApproval: { method: 'GET', path: '/approvals/:id', approver: true },
  approve: { method: 'POST', path: '/approvals/:id/approve', approver: true },
  deny: { method: 'POST', path: '/approvals/:id/deny', approver: true },
  listConditions: { method: 'GET', path: '/conditions' },
  getCondition: { method: 'GET', path: '/conditions/:name' },
  setCondition: { method: 'PUT', path: '/conditions/:name' },
  deleteCondition: { method: 'DELETE', path: '/conditions/:name' },
  listLimits: { method: 'GET', path: '/limits' },
  resetLimit: { method: 'POST', path: '/limits/:rule/reset' },
  listBudgets: { method: 'GET', path: '/budgets' },
  resetBudget: { method: 'POST', path: '/budgets/:rule/reset' },
  listTaint: { method: 'GET', path: '/taint' },
  clearTaint: { method: 'POST', path: '/taint/clear' },
  listAudit: { method: 'GET', path: '/audit' },
  verifyAudit: { method: 'POST', path: '/audit/verify' },
  listServices: { method: 'GET', path: '/services' },
  enableService: { method: 'POST', path: '/services/:name/enable' },
  disableService: { method: 'POST', path: '/services/:name/disable' },
  suspendService: { method: 'POST', path: '/services/:name/suspend' },
  resumeService: { method: 'POST', path: '/services/:name/resume' },
  listSecrets: { method: 'GET', path: '/secrets' },
  setSecret: { method: 'PUT', path: '/secrets/:service/:name' },
  deleteSecret: { method: 'DELETE', path: '/secrets/:service/:name' },
  testSecrets: { method: 'POST', path: '/secrets/:service/test' },
} as const satisfies Record<string, RouteSpec>;

export type RouteName = keyof typeof ADMIN_ROUTES;
