/**
 * The admin API as a plain function: `handle({method, path, query, body, caller})` → `{status, body}`.
 * No sockets here (src/admin/http.ts adapts it to node:http), so every route is testable directly.
 *
 * Authz already admitted the caller (admin, or approver on approvals/status/whoami; never an agent
 * key). The same gate is applied again here, so a mis-mounted handler cannot widen access.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { CompiledPolicy } from '../policy/compile.js';
import type { ApprovalRecord, Layer2Store, ScopeTarget } from '../state/index.js';
import { EFFECTIVE_STATUS_SQL } from '../state/approvals.js';
import { asDate, asNumber, asNullableString, asString, type Row } from '../state/db.js';
import {
  ADMIN_ROUTES,
  approvalListQuerySchema,
  approveRequestSchema,
  auditQuerySchema,
  auditVerifyRequestSchema,
  counterQuerySchema,
  denyRequestSchema,
  flagNameSchema,
  pageQuerySchema,
  resetRequestSchema,
  ruleNameSchema,
  serviceActionRequestSchema,
  serviceNameSchema,
  setConditionRequestSchema,
  taintClearRequestSchema,
  taintQuerySchema,
  type ApprovalBody,
  type AuditEntryBody,
  type AuditReportBody,
  type BudgetUsageBody,
  type ConditionBody,
  type LimitUsageBody,
  type Page,
  type RouteName,
  type RouteSpec,
  type ServiceAction,
  type ServiceBody,
  type StatusResponse,
  type WhoamiResponse,
} from './contract.js';
import { AdminError, errorBody, toAdminError } from './errors.js';
import {
  iso,
  isoOrNull,
  ok,
  param,
  parse,
  parseOptionalBody,
  type AdminCaller,
  type AdminRequest,
  type AdminResponse,
  type BackendReport,
  type Call,
  type Handler,
  type HandlerEnv,
  type PolicyHolderLike,
} from './handler.js';
import { decodeCursor, encodeCursor, pageInMemory } from './pagination.js';
import { policyHandlers } from './policy.js';
import { secretHandlers, type SecretsAdminDeps } from './secrets.js';
import { effectiveServiceState, ServiceStateStore, type ServiceRuntimeState } from './services.js';
import { userHandlers } from './users.js';

export type { AdminCaller, AdminRequest, AdminResponse, BackendReport, PolicyHolderLike } from './handler.js';

export interface AdminDeps {
  store: Layer2Store;
  /** The authz `PolicyHolder` (validate → compile → swap). */
  policy: PolicyHolderLike;
  /** Backends and their health, from the aggregator (`() => aggregator.stats().backends`). */
  backends?: () => readonly BackendReport[] | Promise<readonly BackendReport[]>;
  /** Default: the service switches in `store.db` (table `service_state`). */
  services?: ServiceStateStore;
  /** Default: package.json's version. */
  version?: string;
  startedAt?: Date;
  now?: () => number;
  /** A user's grants changed or the user is gone (the gateway sends `list_changed`). */
  onGrantsChanged?: (userId: string) => void;
  /** A service was enabled, disabled, suspended or resumed (re-overlay the catalog). */
  onServicesChanged?: () => void | Promise<void>;
  onPolicyApplied?: (revision: string) => void;
  /** Unexpected failures (answered 500 / 503); never called with request bodies. */
  onError?: (err: unknown, context: string) => void;
  /** The secret store behind `/secrets` (absent: those routes answer 503). */
  secrets?: SecretsAdminDeps;
}

export interface AdminApi {
  handle(req: AdminRequest): Promise<AdminResponse>;
}

let packageVersion: string | undefined;
function readPackageVersion(): string {
  if (packageVersion === undefined) {
    try {
      // src/admin/ and dist/admin/ are both two levels below the package root.
      const raw: unknown = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
      packageVersion = z.object({ version: z.string() }).parse(raw).version;
    } catch {
      packageVersion = 'unknown';
    }
  }
  return packageVersion;
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

interface CompiledRoute {
  name: RouteName;
  spec: RouteSpec;
  segments: string[];
}

const ROUTES: CompiledRoute[] = (Object.entries(ADMIN_ROUTES) as [RouteName, RouteSpec][]).map(([name, spec]) => ({
  name,
  spec,
  segments: spec.path.split('/').slice(1),
}));

type Match = { route: CompiledRoute; params: Record<string, string> } | { allow: string[] } | null;

function match(method: string, path: string): Match {
  const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  if (!trimmed.startsWith('/')) return null;
  const raw = trimmed.split('/').slice(1);
  const allow: string[] = [];
  for (const route of ROUTES) {
    if (route.segments.length !== raw.length) continue;
    const params: Record<string, string> = {};
    let fits = true;
    for (let i = 0; i < raw.length && fits; i++) {
      const want = route.segments[i] as string;
      const got = raw[i] as string;
      if (want.startsWith(':')) {
        let value: string;
        try {
          value = decodeURIComponent(got);
        } catch {
          throw new AdminError('bad_request', 'malformed percent-encoding in the path');
        }
        if (value === '') fits = false;
        else params[want.slice(1)] = value;
      } else if (want !== got) {
        fits = false;
      }
    }
    if (!fits) continue;
    if (route.spec.method === method) return { route, params };
    allow.push(route.spec.method);
  }
  return allow.length > 0 ? { allow } : null;
}

function admitted(caller: AdminCaller, spec: RouteSpec): void {
  if (caller.role === 'agent') throw new AdminError('forbidden', 'agent credentials cannot use the admin API');
  if (caller.role === 'approver' && spec.approver !== true) {
    throw new AdminError('forbidden', 'approvers may only list and decide approvals');
  }
}

// ---------------------------------------------------------------------------------------------
// Mapping records to the contract
// ---------------------------------------------------------------------------------------------

function toApprovalBody(a: ApprovalRecord): ApprovalBody {
  return {
    id: a.id,
    userId: a.userId,
    sessionId: a.sessionId,
    method: a.method,
    service: a.service,
    tool: a.tool,
    digest: a.digest,
    rule: a.rule,
    reasons: a.reasons,
    labels: a.labels,
    approvers: a.approvers,
    status: a.status,
    createdAt: iso(a.createdAt),
    expiresAt: iso(a.expiresAt),
    timeoutSeconds: a.timeoutSeconds,
    consumeWithinSeconds: a.consumeWithinSeconds,
    decidedBy: a.decidedBy,
    decidedAt: isoOrNull(a.decidedAt),
    decisionReason: a.decisionReason,
    override: a.override,
    consumedAt: isoOrNull(a.consumedAt),
    consumedBy: a.consumedBy,
    requestDecisionId: a.requestDecisionId,
    policyRevision: a.policyRevision,
  };
}

/** `u:<user>`, `s:<session>`, `g` (see src/state/decide.ts). */
function splitScopeKey(key: string): { scope: 'user' | 'session' | 'global'; subject: string | null } {
  if (key.startsWith('u:')) return { scope: 'user', subject: key.slice(2) };
  if (key.startsWith('s:')) return { scope: 'session', subject: key.slice(2) };
  return { scope: 'global', subject: null };
}

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
const nullableDate = (v: unknown): string | null => (v === null || v === undefined ? null : iso(asDate(v)));
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

// ---------------------------------------------------------------------------------------------

export function createAdminApi(deps: AdminDeps): AdminApi {
  const env: HandlerEnv = {
    store: deps.store,
    policy: deps.policy,
    services: deps.services ?? new ServiceStateStore(deps.store.db),
    backends: deps.backends ?? (() => []),
    version: deps.version ?? readPackageVersion(),
    startedAt: deps.startedAt ?? new Date(),
    now: deps.now ?? Date.now,
    onGrantsChanged: deps.onGrantsChanged ?? (() => undefined),
    onServicesChanged: deps.onServicesChanged ?? (() => undefined),
    onPolicyApplied: deps.onPolicyApplied ?? (() => undefined),
    onError: deps.onError ?? (() => undefined),
  };
  const store = env.store;
  const compiled = (): CompiledPolicy => env.policy.active.compiled;

  async function serviceBodies(): Promise<ServiceBody[]> {
    const states = await env.services.list();
    const config = env.policy.active.policy.services;
    const byName = new Map<string, ServiceRuntimeState>(states.map((s) => [s.name, s]));
    return Object.entries(compiled().data.catalog).map(([name, entry]) => {
      const state = byName.get(name);
      const eff = effectiveServiceState(entry, state);
      return {
        name,
        // The catalog is compiled from `services:`, so every entry has its settings there.
        transport: (Object.hasOwn(config, name) ? config[name]?.transport : undefined) ?? 'unknown',
        policyEnabled: entry.enabled,
        enabled: eff.enabled,
        suspended: eff.suspended,
        tools: entry.tools,
        reason: state?.reason ?? null,
        updatedBy: state?.updatedBy ?? null,
        updatedAt: isoOrNull(state?.updatedAt),
      };
    });
  }

  /** Flags that are set, and flags the policy in force requires (set or not). */
  async function conditions(): Promise<ConditionBody[]> {
    const flags = await store.listFlags();
    const required = new Map<string, { precondition: string; value: string }[]>();
    for (const p of Object.values(compiled().layer2.preconditions)) {
      for (const [flag, value] of Object.entries(p.require)) {
        const list = required.get(flag) ?? [];
        list.push({ precondition: p.name, value });
        required.set(flag, list);
      }
    }
    const out = new Map<string, ConditionBody>();
    for (const f of flags) {
      out.set(f.name, {
        name: f.name,
        value: f.value,
        setBy: f.setBy,
        setAt: iso(f.setAt),
        requiredBy: required.get(f.name) ?? [],
      });
    }
    for (const [name, requiredBy] of required) {
      if (!out.has(name)) out.set(name, { name, value: null, setBy: null, setAt: null, requiredBy });
    }
    return [...out.values()];
  }

  async function condition(name: string): Promise<ConditionBody> {
    const found = (await conditions()).find((c) => c.name === name);
    if (!found) throw new AdminError('not_found', `flag ${name} is not set and no precondition requires it`);
    return found;
  }

  async function serviceAction(call: Call, action: ServiceAction): Promise<AdminResponse> {
    const name = param(call, 'name', serviceNameSchema);
    const req = parseOptionalBody(serviceActionRequestSchema, call.body);
    if (!Object.hasOwn(compiled().data.catalog, name)) {
      throw new AdminError('not_found', `service ${name} is not in the policy's catalog`);
    }
    await env.services.set(name, action, call.caller, req.reason ?? null);
    try {
      await env.onServicesChanged();
    } catch (err) {
      // The switch is stored and audited; replicas pick it up from the notification regardless.
      env.onError(err, 'onServicesChanged');
    }
    const body = (await serviceBodies()).find((s) => s.name === name);
    if (!body) throw new AdminError('not_found', `service ${name} is not in the policy's catalog`);
    return ok(body);
  }

  async function reset(call: Call, kind: 'limit' | 'budget'): Promise<AdminResponse> {
    const rule = param(call, 'rule', ruleNameSchema);
    const req = parseOptionalBody(resetRequestSchema, call.body);
    const scope: ScopeTarget | 'all' = req.scope;
    const n =
      kind === 'limit'
        ? await store.resetLimit(rule, scope, call.caller)
        : await store.resetBudget(rule, scope, call.caller);
    const rules = kind === 'limit' ? compiled().layer2.limits : compiled().layer2.budgets;
    if (n === 0 && !Object.hasOwn(rules, rule)) {
      throw new AdminError('not_found', `no ${kind} ${rule} in the policy in force, and no state recorded for it`);
    }
    return ok({ rule, reset: n });
  }

  const handlers: Record<RouteName, Handler> = {
    async status() {
      let reports: readonly BackendReport[] = [];
      try {
        reports = await env.backends();
      } catch (err) {
        env.onError(err, 'backends()');
      }
      const [services, pending] = await Promise.all([
        serviceBodies(),
        store.db.query<{ n: unknown }>(
          `SELECT count(*)::int AS n FROM approvals a WHERE a.status = 'pending' AND ${EFFECTIVE_STATUS_SQL} = 'pending'`,
        ),
      ]);
      const active = env.policy.active;
      const body: StatusResponse = {
        version: env.version,
        startedAt: iso(env.startedAt),
        uptimeSeconds: Math.max(0, (env.now() - env.startedAt.getTime()) / 1000),
        policy: { revision: active.engine.revision, file: active.source },
        store: { kind: store.kind },
        backends: reports.map((b) => ({
          service: b.service,
          state: b.state,
          scope: b.scope ?? null,
          lastError: b.lastError === undefined || b.lastError === '' ? null : b.lastError,
          healthy: b.state === 'ready',
        })),
        services: services.map((s) => ({
          name: s.name,
          transport: s.transport,
          enabled: s.enabled,
          suspended: s.suspended,
        })),
        approvals: { pending: asNumber(pending.rows[0]?.n ?? 0) },
      };
      return ok(body);
    },

    async whoami(call) {
      const user = await store.identity.findUser(call.caller.id);
      const body: WhoamiResponse = {
        id: call.caller.id,
        role: call.caller.role,
        email: user?.email ?? null,
        known: user !== null,
      };
      return ok(body);
    },

    ...policyHandlers(env),
    ...userHandlers(env),
    ...secretHandlers(env, deps.secrets),

    async listApprovals(call) {
      const q = parse(approvalListQuerySchema, call.query, 'query');
      const page = await store.listApprovals(
        {
          ...(q.status === undefined ? {} : { status: q.status }),
          ...(q.user === undefined ? {} : { userId: q.user }),
          ...(q.service === undefined ? {} : { service: q.service }),
          ...(q.tool === undefined ? {} : { tool: q.tool }),
          limit: q.limit,
        },
        q.cursor ?? null,
      );
      const body: Page<ApprovalBody> = { items: page.items.map(toApprovalBody), nextCursor: page.nextCursor };
      return ok(body);
    },

    async getApproval(call) {
      return ok(toApprovalBody(await store.getApproval(param(call, 'id'))));
    },

    async approve(call) {
      const req = parseOptionalBody(approveRequestSchema, call.body);
      const rec = await store.approve(param(call, 'id'), call.caller, {
        override: req.override,
        ...(req.reason === undefined ? {} : { reason: req.reason }),
      });
      return ok(toApprovalBody(rec));
    },

    async deny(call) {
      const req = parse(denyRequestSchema, call.body, 'request body');
      const rec = await store.deny(param(call, 'id'), call.caller, req.reason, { override: req.override });
      return ok(toApprovalBody(rec));
    },

    async listConditions(call) {
      const q = parse(pageQuerySchema, call.query, 'query');
      return ok(pageInMemory(await conditions(), (c) => [c.name], 1, q));
    },

    async getCondition(call) {
      return ok(await condition(param(call, 'name', flagNameSchema)));
    },

    async setCondition(call) {
      const name = param(call, 'name', flagNameSchema);
      const req = parse(setConditionRequestSchema, call.body, 'request body');
      await store.setFlag(name, String(req.value), call.caller);
      return ok(await condition(name));
    },

    async deleteCondition(call) {
      const name = param(call, 'name', flagNameSchema);
      if (!(await store.unsetFlag(name, call.caller))) throw new AdminError('not_found', `flag ${name} is not set`);
      return ok({ name, deleted: true });
    },

    async listLimits(call) {
      const q = parse(counterQuerySchema, call.query, 'query');
      const after = q.cursor === undefined ? null : decodeCursor(q.cursor, 2).map(String);
      const limits = compiled().layer2.limits;
      const windows = Object.fromEntries(Object.values(limits).map((l) => [l.name, l.perSeconds]));
      // Only stamps inside the rule's current window count; a rule gone from the policy shows all it kept.
      const r = await store.db.query(
        `SELECT v.rule, v.scope_key,
                (SELECT count(*) FROM unnest(v.stamps) AS s
                  WHERE ($1::jsonb ->> v.rule) IS NULL
                     OR s > clock_timestamp() - make_interval(secs => ($1::jsonb ->> v.rule)::double precision))::int AS n,
                (SELECT min(s) FROM unnest(v.stamps) AS s) AS oldest,
                (SELECT max(s) FROM unnest(v.stamps) AS s) AS newest
           FROM velocity v
          WHERE ($2::text IS NULL OR v.rule = $2)
            AND ($3::text IS NULL OR (v.rule, v.scope_key) > ($3::text, $4::text))
          ORDER BY v.rule, v.scope_key
          LIMIT $5`,
        [JSON.stringify(windows), q.rule ?? null, after?.[0] ?? null, after?.[1] ?? null, q.limit + 1],
      );
      const rows = r.rows.slice(0, q.limit);
      const items: LimitUsageBody[] = rows.map((row: Row) => {
        const rule = asString(row['rule']);
        const def = Object.hasOwn(limits, rule) ? limits[rule] : undefined;
        return {
          rule,
          ...splitScopeKey(asString(row['scope_key'])),
          count: asNumber(row['n']),
          max: def?.max ?? null,
          perSeconds: def?.perSeconds ?? null,
          oldest: nullableDate(row['oldest']),
          newest: nullableDate(row['newest']),
        };
      });
      const last = rows[rows.length - 1];
      const nextCursor =
        r.rows.length > q.limit && last ? encodeCursor([asString(last['rule']), asString(last['scope_key'])]) : null;
      return ok({ items, nextCursor });
    },

    resetLimit: (call) => reset(call, 'limit'),

    async listBudgets(call) {
      const q = parse(counterQuerySchema, call.query, 'query');
      const budgets = compiled().layer2.budgets;
      const items: BudgetUsageBody[] = (await store.listBudgets(q.rule)).map((b) => {
        const max = Object.hasOwn(budgets, b.rule) ? (budgets[b.rule]?.max ?? null) : null;
        return {
          rule: b.rule,
          ...splitScopeKey(b.scopeKey),
          used: b.used,
          max,
          remaining: max === null ? null : Math.max(0, max - b.used),
          updatedAt: iso(b.updatedAt),
        };
      });
      return ok(pageInMemory(items, (b) => [b.rule, `${b.scope}:${b.subject ?? ''}`], 2, q));
    },

    resetBudget: (call) => reset(call, 'budget'),

    async listTaint(call) {
      const q = parse(taintQuerySchema, call.query, 'query');
      const marks = await store.listTaint(q.user === undefined ? {} : { userId: q.user });
      const items = marks.map((m) => ({
        flow: m.flow,
        scope: m.scope,
        userId: m.userId,
        sessionId: m.sessionId,
        setAt: iso(m.setAt),
        expiresAt: isoOrNull(m.expiresAt),
        sourceDecisionId: m.sourceDecisionId,
      }));
      // (flow, scope key) is the table's key; the scope key is the session or the user.
      return ok(
        pageInMemory(items, (m) => [m.flow, m.scope, m.scope === 'session' ? (m.sessionId ?? '') : m.userId], 3, q),
      );
    },

    async clearTaint(call) {
      const req = parse(taintClearRequestSchema, call.body, 'request body');
      const target = 'all' in req ? 'all' : req;
      return ok({ cleared: await store.clearTaint(target, call.caller) });
    },

    async listAudit(call) {
      const q = parse(auditQuerySchema, call.query, 'query');
      let before: string | null = null;
      if (q.cursor !== undefined) {
        const [id] = decodeCursor(q.cursor, 1);
        if (typeof id !== 'string' || !/^\d{1,19}$/.test(id)) throw new AdminError('bad_request', 'invalid cursor');
        before = id;
      }
      // Newest first. Argument values are not in this table at all (only their digest).
      const r = await store.db.query(
        `SELECT id::text AS id, decision_id, at, user_id, session_id, method, service, tool, outcome, rule,
                reasons, policy_revision, digest, approval_id, detail, seq
           FROM audit_log
          WHERE ($1::timestamptz IS NULL OR at >= $1::timestamptz)
            AND ($2::timestamptz IS NULL OR at < $2::timestamptz)
            AND ($3::text IS NULL OR user_id = $3)
            AND ($4::text IS NULL OR outcome = $4)
            AND ($5::text IS NULL OR method = $5)
            AND ($6::text IS NULL OR service = $6)
            AND ($7::text IS NULL OR tool = $7)
            AND ($8::bigint IS NULL OR id < $8::bigint)
          ORDER BY id DESC
          LIMIT $9`,
        [
          q.since ?? null,
          q.until ?? null,
          q.user ?? null,
          q.outcome ?? null,
          q.method ?? null,
          q.service ?? null,
          q.tool ?? null,
          before,
          q.limit + 1,
        ],
      );
      const rows = r.rows.slice(0, q.limit);
      const items: AuditEntryBody[] = rows.map((row: Row) => ({
        id: asString(row['id']),
        decisionId: asString(row['decision_id']),
        at: iso(asDate(row['at'])),
        userId: asNullableString(row['user_id']),
        sessionId: asNullableString(row['session_id']),
        method: asString(row['method']),
        service: asNullableString(row['service']),
        tool: asNullableString(row['tool']),
        outcome: z.enum(['allow', 'deny', 'pending']).parse(row['outcome']),
        rule: asNullableString(row['rule']),
        reasons: strings(row['reasons']),
        policyRevision: asNullableString(row['policy_revision']),
        digest: asNullableString(row['digest']),
        approvalId: asNullableString(row['approval_id']),
        detail: isRecord(row['detail']) ? row['detail'] : null,
        seq: row['seq'] === null || row['seq'] === undefined ? null : asNumber(row['seq']),
      }));
      const last = rows[rows.length - 1];
      return ok({
        items,
        nextCursor: r.rows.length > q.limit && last ? encodeCursor([asString(last['id'])]) : null,
      });
    },

    async verifyAudit(call) {
      const req = parseOptionalBody(auditVerifyRequestSchema, call.body);
      const report = await store.verifyAudit({
        ...(req.unsealedAfterSeconds === undefined ? {} : { unsealedAfterSeconds: req.unsealedAfterSeconds }),
        ...(req.maxIssues === undefined ? {} : { maxIssues: req.maxIssues }),
      });
      const body: AuditReportBody = {
        ok: report.ok,
        checked: report.checked,
        head: report.head,
        unsealed: report.unsealed,
        issues: report.issues.map((i) => ({
          kind: i.kind,
          seq: i.seq,
          toSeq: i.toSeq ?? null,
          decisionId: i.decisionId ?? null,
          message: i.message,
        })),
      };
      return ok(body);
    },

    async listServices(call) {
      const q = parse(pageQuerySchema, call.query, 'query');
      return ok(pageInMemory(await serviceBodies(), (s) => [s.name], 1, q));
    },

    enableService: (call) => serviceAction(call, 'enable'),
    disableService: (call) => serviceAction(call, 'disable'),
    suspendService: (call) => serviceAction(call, 'suspend'),
    resumeService: (call) => serviceAction(call, 'resume'),
  };

  return {
    async handle(req: AdminRequest): Promise<AdminResponse> {
      let context = `${req.method} (unrouted)`;
      try {
        const m = match(req.method.toUpperCase(), req.path);
        if (m === null) throw new AdminError('not_found', 'no such admin route');
        if ('allow' in m) {
          const allow = [...new Set(m.allow)].join(', ');
          return {
            status: 405,
            body: errorBody('method_not_allowed', `use ${allow} here`, { allow: m.allow }),
            headers: { allow },
          };
        }
        context = m.route.name;
        admitted(req.caller, m.route.spec);
        return await handlers[m.route.name]({
          caller: req.caller,
          params: m.params,
          query: req.query ?? {},
          body: req.body,
        });
      } catch (err) {
        const e = toAdminError(err);
        if (e.code === 'internal' || e.code === 'unavailable') env.onError(err, context);
        return { status: e.status, body: errorBody(e.code, e.message, e.details) };
      }
    },
  };
}
