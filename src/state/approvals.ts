/** Approval records as the admin API and the CLI see them. */
import { z } from 'zod';
import type { Role } from '../policy/layer1-types.js';
import { asDate, asNumber, asNullableString, asString, type Row } from './db.js';

export type ApprovalStatus = 'pending' | 'approved' | 'denied' | 'expired';

export interface ApprovalRecord {
  id: string;
  userId: string;
  sessionId: string | null;
  method: string;
  service: string;
  tool: string;
  /** Hex SHA-256 of the JCS of the call's arguments. */
  digest: string;
  rule: string;
  reasons: string[];
  /** The call's classification labels when it asked; `[]` for approvals created before they were kept. */
  labels: string[];
  approvers: string[];
  /** As of now: a pending approval past its timeout, or an approved one left unused, reads `expired`. */
  status: ApprovalStatus;
  createdAt: Date;
  expiresAt: Date;
  timeoutSeconds: number;
  consumeWithinSeconds: number;
  decidedBy: string | null;
  decidedAt: Date | null;
  decisionReason: string | null;
  /** True when an admin decided although not among `approvers`. */
  override: boolean;
  consumedAt: Date | null;
  consumedBy: string | null;
  requestDecisionId: string;
  policyRevision: string | null;
}

export interface Decider {
  id: string;
  role: Role;
}

export type ApprovalErrorCode = 'not_found' | 'ambiguous' | 'invalid_id' | 'forbidden' | 'not_pending' | 'expired';

export class ApprovalError extends Error {
  readonly code: ApprovalErrorCode;
  constructor(code: ApprovalErrorCode, message: string) {
    super(message);
    this.name = 'ApprovalError';
    this.code = code;
  }
}

export interface ApprovalFilter {
  status?: ApprovalStatus | ApprovalStatus[];
  userId?: string;
  service?: string;
  tool?: string;
  /** Page size, 1–500; default 50. */
  limit?: number;
}

export interface ApprovalPage {
  items: ApprovalRecord[];
  /** Pass back to get the next page; null at the end. */
  nextCursor: string | null;
}

/** Effective status as of the database clock; shared by every read. */
export const EFFECTIVE_STATUS_SQL = `CASE
    WHEN a.status = 'pending' AND a.expires_at <= clock_timestamp() THEN 'expired'
    WHEN a.status = 'approved' AND a.consumed_at IS NULL
         AND a.decided_at + make_interval(secs => a.consume_within_s) <= clock_timestamp() THEN 'expired'
    ELSE a.status END`;

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
const maybeDate = (v: unknown): Date | null => (v === null || v === undefined ? null : asDate(v));
const STATUSES: readonly ApprovalStatus[] = ['pending', 'approved', 'denied', 'expired'];

/** From a table row (with `effective_status`) or the `to_jsonb` of one. */
export function toApprovalRecord(r: Row): ApprovalRecord {
  const st = r['effective_status'] ?? r['status'];
  const status = STATUSES.find((s) => s === st);
  if (!status) throw new Error(`unexpected approval status ${String(st)}`);
  return {
    id: asString(r['id']),
    userId: asString(r['user_id']),
    sessionId: asNullableString(r['session_id']),
    method: asString(r['method']),
    service: asString(r['service']),
    tool: asString(r['tool']),
    digest: asString(r['digest']),
    rule: asString(r['rule']),
    reasons: strings(r['reasons']),
    labels: strings(r['labels']),
    approvers: strings(r['approvers']),
    status,
    createdAt: asDate(r['created_at']),
    expiresAt: asDate(r['expires_at']),
    timeoutSeconds: asNumber(r['timeout_s']),
    consumeWithinSeconds: asNumber(r['consume_within_s']),
    decidedBy: asNullableString(r['decided_by']),
    decidedAt: maybeDate(r['decided_at']),
    decisionReason: asNullableString(r['decision_reason']),
    override: r['override'] === true,
    consumedAt: maybeDate(r['consumed_at']),
    consumedBy: asNullableString(r['consumed_by']),
    requestDecisionId: asString(r['request_decision_id']),
    policyRevision: asNullableString(r['policy_revision']),
  };
}

const cursorSchema = z.tuple([z.string().regex(/^\d+$/), z.string()]);

/** Keyset cursor: creation time in microseconds (exact, unlike a JS Date) and the id. */
export function encodeCursor(createdUs: string, id: string): string {
  return Buffer.from(JSON.stringify([createdUs, id])).toString('base64url');
}

export function decodeCursor(cursor: string): [string, string] {
  try {
    return cursorSchema.parse(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')));
  } catch {
    throw new ApprovalError('invalid_id', 'invalid cursor');
  }
}
