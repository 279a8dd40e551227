/**
 * Turns a Layer2Request plus the Layer 2 rule set into the one JSON document `mcpgw_decide`
 * receives, and its answer back into a Layer2Outcome.
 *
 * Everything that can be decided without state is decided here as an "error" the SQL turns into a
 * deny (an unknown rule name, a session-scoped rule without a session, a duty whose entity fields
 * are missing): fail closed, and still one audited statement.
 */
import { createHash } from 'node:crypto';
import type { Layer2Outcome, Layer2Request, Layer2Rules, Scope } from '../policy/layer2-types.js';
import type { JsonValue } from '../authz/strict-json.js';
import { argumentsDigest, canonicalize } from '../util/jcs.js';
import { newApprovalId } from './ids.js';

export interface DecideConfig {
  maxPendingPerUser: number;
  /** For approvals required by a Layer 2 rule when the winning Layer 1 rule gave no settings. */
  approvalDefaults: { approvers: string[]; timeoutSeconds: number; consumeWithinSeconds: number };
}

interface RuleError {
  rule: string;
  reason: string;
}

export interface DecideInput {
  decision_id: string;
  revision: string;
  user: string;
  session: string | null;
  method: string;
  service: string;
  tool: string;
  digest: string | null;
  /** `labels`: the call's classification labels, which a new pending approval records for the humans deciding. */
  l1: { outcome: string; rule: string | null; reasons: string[]; labels: string[] };
  approval: {
    approvers: string[];
    timeout_s: number;
    consume_within_s: number;
    max_pending: number;
    /** The id a new pending approval gets; null when no rule of this call can ask for one. */
    new_id: string | null;
  };
  locks: string[];
  errors: RuleError[];
  preconditions: { name: string; require: Record<string, string> }[];
  budgets: { name: string; max: number; key: string }[];
  limits: { name: string; max: number; per_s: number; action: string; key: string }[];
  sources: { name: string; ttl_s: number | null; key: string }[];
  sinks: { name: string; action: string; scope: string; key: string }[];
  duties_first: { name: string; kind: string; entity: string | null }[];
  duties_then: { name: string; kind: string; entity: string | null }[];
}

/** Scope keys are prefixed so a user id can never collide with a session id. */
export function scopeKey(scope: Scope, userId: string, sessionId: string | null): string | null {
  if (scope === 'global') return 'g';
  if (scope === 'user') return `u:${userId}`;
  return sessionId === null || sessionId === '' ? null : `s:${sessionId}`;
}

/**
 * The entity a duty is about: a hash of the named argument values (in the order the rule lists
 * the fields), so history never holds argument values. Null when a field is missing.
 */
export function dutyEntity(fields: readonly string[], args: Record<string, unknown>): string | null {
  if (fields.length === 0) return null;
  const values: unknown[] = [];
  for (const f of fields) {
    if (!Object.hasOwn(args, f) || args[f] === undefined || args[f] === null) return null;
    values.push(args[f]);
  }
  return createHash('sha256')
    .update(canonicalize(values as JsonValue[]), 'utf8')
    .digest('hex');
}

const lockKey = (...parts: string[]): string => JSON.stringify(parts);

const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0;
const isPositive = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n) && n > 0;

export function buildDecideInput(req: Layer2Request, rules: Layer2Rules, cfg: DecideConfig): DecideInput {
  const errors: RuleError[] = [];
  const locks: string[] = [];
  const l2 = req.layer1.layer2;
  const user = req.userId;
  const session = req.sessionId;

  let digest: string | null = null;
  try {
    // Arguments come from the strict JSON parser; canonicalize throws on anything JSON cannot hold.
    digest = argumentsDigest(req.arguments as JsonValue);
  } catch (err) {
    errors.push({ rule: 'arguments', reason: `arguments cannot be canonicalized: ${(err as Error).message}` });
  }

  const keyFor = (rule: string, scope: Scope): string | null => {
    const k = scopeKey(scope, user, session);
    if (k === null) errors.push({ rule, reason: `rule "${rule}" is session-scoped but the call has no session` });
    return k;
  };
  const unknown = (kind: string, name: string): void => {
    errors.push({
      rule: name,
      reason: `${kind} "${name}" is not in the Layer 2 rules of revision ${req.policyRevision}`,
    });
  };
  const invalid = (kind: string, name: string): void => {
    errors.push({ rule: name, reason: `${kind} "${name}" has invalid parameters` });
  };

  const preconditions: DecideInput['preconditions'] = [];
  for (const name of l2.preconditions) {
    const r = rules.preconditions[name];
    if (!r) unknown('precondition', name);
    else preconditions.push({ name, require: { ...r.require } });
  }

  const budgets: DecideInput['budgets'] = [];
  for (const name of l2.budgets) {
    const r = rules.budgets[name];
    if (!r) {
      unknown('budget', name);
      continue;
    }
    if (!isCount(r.max)) {
      invalid('budget', name);
      continue;
    }
    const key = keyFor(name, r.scope);
    if (key === null) continue;
    budgets.push({ name, max: r.max, key });
    locks.push(lockKey('budget', name, key));
  }

  let mayNeedApproval = req.layer1.outcome === 'require_approval';
  const limits: DecideInput['limits'] = [];
  for (const name of l2.limits) {
    const r = rules.limits[name];
    if (!r) {
      unknown('limit', name);
      continue;
    }
    if (!isCount(r.max) || !isPositive(r.perSeconds)) {
      invalid('limit', name);
      continue;
    }
    const key = keyFor(name, r.scope);
    if (key === null) continue;
    limits.push({ name, max: r.max, per_s: r.perSeconds, action: r.action, key });
    locks.push(lockKey('limit', name, key));
    if (r.action === 'require_approval') mayNeedApproval = true;
  }

  const sources: DecideInput['sources'] = [];
  for (const name of l2.flows.sources) {
    const r = rules.flows[name];
    if (!r) {
      unknown('flow', name);
      continue;
    }
    if (r.ttlSeconds !== null && !isPositive(r.ttlSeconds)) {
      invalid('flow', name);
      continue;
    }
    const key = keyFor(name, r.scope);
    if (key === null) continue;
    sources.push({ name, ttl_s: r.ttlSeconds, key });
    locks.push(lockKey('flow', name, key));
  }
  const sinks: DecideInput['sinks'] = [];
  for (const name of l2.flows.sinks) {
    const r = rules.flows[name];
    if (!r) {
      unknown('flow', name);
      continue;
    }
    const key = keyFor(name, r.scope);
    if (key === null) continue;
    sinks.push({ name, action: r.action, scope: r.scope, key });
    locks.push(lockKey('flow', name, key));
    if (r.action === 'require_approval') mayNeedApproval = true;
  }

  const dutiesFirst: DecideInput['duties_first'] = [];
  const dutiesThen: DecideInput['duties_then'] = [];
  for (const [phase, names, out] of [
    ['first', l2.duties.first, dutiesFirst],
    ['then', l2.duties.then, dutiesThen],
  ] as const) {
    for (const name of names) {
      const r = rules.duties[name];
      if (!r) {
        unknown('duty', name);
        continue;
      }
      let entity: string | null = null;
      try {
        entity = dutyEntity(r.entity, req.arguments);
      } catch {
        entity = null;
      }
      // A first step we cannot tie to an entity is simply not remembered; a second step we cannot
      // tie to one cannot be checked, so it is refused.
      if (entity === null && phase === 'then') {
        errors.push({
          rule: name,
          reason: `duty "${name}": argument fields ${r.entity.join(', ')} are needed to identify the entity`,
        });
        continue;
      }
      out.push({ name, kind: r.kind, entity });
      if (entity !== null) locks.push(lockKey('duty', name, entity));
    }
  }

  const settings = req.approval ?? cfg.approvalDefaults;
  const approval = {
    approvers: [...settings.approvers],
    timeout_s: isPositive(settings.timeoutSeconds) ? settings.timeoutSeconds : cfg.approvalDefaults.timeoutSeconds,
    consume_within_s: isPositive(settings.consumeWithinSeconds)
      ? settings.consumeWithinSeconds
      : cfg.approvalDefaults.consumeWithinSeconds,
    max_pending: cfg.maxPendingPerUser,
    // The SQL reads it only on the require_approval branch, which needs mayNeedApproval.
    new_id: mayNeedApproval ? newApprovalId() : null,
  };
  if (mayNeedApproval && digest !== null) {
    locks.push(lockKey('approval', user, req.service, req.name, digest));
    locks.push(lockKey('approval-quota', user));
  }

  return {
    decision_id: req.decisionId,
    revision: req.policyRevision,
    user,
    session,
    method: req.method,
    service: req.service,
    tool: req.name,
    digest,
    l1: {
      outcome: req.layer1.outcome,
      rule: req.layer1.rule,
      reasons: [...req.layer1.reasons],
      labels: [...req.layer1.classification.labels],
    },
    approval,
    locks,
    errors,
    preconditions,
    budgets,
    limits,
    sources,
    sinks,
    duties_first: dutiesFirst,
    duties_then: dutiesThen,
  };
}

const OUTCOMES = new Set(['allow', 'deny', 'pending']);

const isNullableString = (v: unknown): v is string | null => v === null || typeof v === 'string';

/**
 * Checks the shape of what `mcpgw_decide` returned by hand (it runs once per decision; a schema
 * library costs more than the decision's own JavaScript). Anything unexpected throws, and the
 * caller turns that into a fail-closed deny.
 */
export function parseDecideOutput(raw: unknown): Layer2Outcome {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error('decide output is not an object');
  const o = raw as Record<string, unknown>;
  const outcome = o['outcome'];
  const rule = o['rule'] ?? null;
  const reasons = o['reasons'];
  const approvalId = o['approval_id'] ?? null;
  const retry = o['retry_after'] ?? null;
  if (typeof outcome !== 'string' || !OUTCOMES.has(outcome)) throw new Error('decide output has no valid outcome');
  if (!isNullableString(rule) || !isNullableString(approvalId)) throw new Error('decide output has a malformed field');
  if (!Array.isArray(reasons) || !reasons.every((x) => typeof x === 'string'))
    throw new Error('decide output has malformed reasons');
  if (retry !== null && (typeof retry !== 'number' || !Number.isFinite(retry)))
    throw new Error('decide output has a malformed retry time');
  const texts = reasons as string[];
  if (outcome === 'allow') return { outcome: 'allow', rule, reasons: texts };
  if (outcome === 'pending') {
    if (approvalId === null) throw new Error('pending outcome without an approval id');
    return { outcome: 'pending', rule: rule ?? 'approval', reasons: texts, approvalId };
  }
  const out: Layer2Outcome = { outcome: 'deny', rule, reasons: texts };
  if (retry !== null) out.retryAfterSeconds = Math.max(1, Math.ceil(retry));
  return out;
}

/**
 * True when `mcpgw_decide` could only allow `input` and write its audit row: Layer 1 allowed and
 * nothing of Layer 2 applies (no lock, rule error, precondition, budget, limit, flow or duty).
 * Such a decision goes to `mcpgw_audit_allow` (0080_audit_allow.sql), which writes the same row
 * and returns the same answer for a fraction of the cost.
 */
export function isAuditOnly(input: DecideInput): boolean {
  return (
    input.l1.outcome === 'allow' &&
    input.locks.length === 0 &&
    input.errors.length === 0 &&
    input.preconditions.length === 0 &&
    input.budgets.length === 0 &&
    input.limits.length === 0 &&
    input.sources.length === 0 &&
    input.sinks.length === 0 &&
    input.duties_first.length === 0 &&
    input.duties_then.length === 0
  );
}

/** A Layer 1 decision that names no Layer 2 rule needs no rules at all. */
export function needsRules(req: Layer2Request): boolean {
  const l2 = req.layer1.layer2;
  return (
    l2.limits.length +
      l2.budgets.length +
      l2.preconditions.length +
      l2.flows.sources.length +
      l2.flows.sinks.length +
      l2.duties.first.length +
      l2.duties.then.length >
    0
  );
}
