/**
 * The Layer 2 rule set compiled from `mcp-security.yaml` (limits, flows, budgets, preconditions,
 * duties) and the request that the Check handler hands to the Layer 2 store. Layer 1 names the
 * rules that apply (`Layer1Decision.layer2`); the store looks them up here by name.
 */
import type { Layer1Decision } from './layer1-types.js';

export type Scope = 'user' | 'session' | 'global';

export interface LimitRule {
  name: string;
  max: number;
  /** Window length in seconds (from the `per` duration). */
  perSeconds: number;
  scope: Scope;
  action: 'deny' | 'require_approval';
}

export interface BudgetRule {
  name: string;
  max: number;
  scope: Scope;
}

export interface PreconditionRule {
  name: string;
  /** flag name → required value. A missing flag denies. */
  require: Record<string, string>;
}

export interface FlowRule {
  name: string;
  scope: 'user' | 'session';
  /** Taint time to live in seconds; null = until cleared by an admin. */
  ttlSeconds: number | null;
  action: 'deny' | 'require_approval';
}

export type DutyKind = 'separation_of_duties' | 'four_eyes' | 'exclusive_actor';

export interface DutyRule {
  name: string;
  kind: DutyKind;
  /** Argument fields whose values identify the entity the duty is about. */
  entity: string[];
}

export interface Layer2Rules {
  limits: Record<string, LimitRule>;
  budgets: Record<string, BudgetRule>;
  preconditions: Record<string, PreconditionRule>;
  flows: Record<string, FlowRule>;
  duties: Record<string, DutyRule>;
}

/** Approval settings of the winning `require_approval` rule. */
export interface ApprovalSettings {
  approvers: string[];
  /** Seconds a pending approval lives, and how long a deny blocks identical calls. */
  timeoutSeconds: number;
  /** Seconds an approved call may wait to be consumed. */
  consumeWithinSeconds: number;
}

/** Everything Layer 2 needs to decide one call. */
export interface Layer2Request {
  decisionId: string;
  policyRevision: string;
  userId: string;
  sessionId: string | null;
  method: string;
  service: string;
  name: string;
  arguments: Record<string, unknown>;
  layer1: Layer1Decision;
  approval: ApprovalSettings | null;
}

export type Layer2Outcome =
  | { outcome: 'allow'; rule: string | null; reasons: string[] }
  | { outcome: 'deny'; rule: string | null; reasons: string[]; retryAfterSeconds?: number }
  | { outcome: 'pending'; rule: string; reasons: string[]; approvalId: string };
