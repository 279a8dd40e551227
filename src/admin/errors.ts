/**
 * Admin API errors: one class carrying a stable code, and the mapping from what the store and
 * validation throw. Messages of unexpected errors are never passed on: they may quote SQL or
 * internals, and the person at the CLI can do nothing with them.
 */
import type { z } from 'zod';
import { ApprovalError, ForbiddenError, StateTimeoutError } from '../state/index.js';
import { sqlState } from '../state/db.js';
import { ERROR_STATUS, type ErrorBody, type ErrorCode, type ValidationIssue } from './contract.js';

export class AdminError extends Error {
  readonly code: ErrorCode;
  readonly details: unknown;
  constructor(code: ErrorCode, message: string, details: unknown = null) {
    super(message);
    this.name = 'AdminError';
    this.code = code;
    this.details = details;
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

export function errorBody(code: ErrorCode, message: string, details: unknown = null): ErrorBody {
  return { error: { code, message, details } };
}

export function zodIssues(err: z.ZodError): ValidationIssue[] {
  return err.issues.map((i) => ({
    path: i.path.length === 0 ? '(root)' : i.path.map(String).join('.'),
    message: i.message,
  }));
}

export function badRequest(what: string, err: z.ZodError): AdminError {
  const issues = zodIssues(err);
  const first = issues[0];
  return new AdminError(
    'bad_request',
    `invalid ${what}${first ? `: ${first.path === '(root)' ? '' : `${first.path}: `}${first.message}` : ''}`,
    { issues },
  );
}

const APPROVAL_CODES: Record<ApprovalError['code'], ErrorCode> = {
  not_found: 'not_found',
  ambiguous: 'bad_request',
  invalid_id: 'bad_request',
  forbidden: 'forbidden',
  not_pending: 'conflict',
  expired: 'conflict',
};

/** Database errors that mean "try again later" rather than "your request is wrong". */
function isUnavailable(err: unknown): boolean {
  if (err instanceof StateTimeoutError) return true;
  const code = sqlState(err);
  if (code !== undefined && (code.startsWith('08') || code.startsWith('57') || code === '55P03')) return true;
  if (code === 'ECONNREFUSED' || code === 'ETIMEDOUT' || code === 'ECONNRESET') return true;
  const msg = err instanceof Error ? err.message : '';
  return /database is closed|after calling end on the pool|timeout exceeded when trying to connect|Connection terminated/i.test(
    msg,
  );
}

export function toAdminError(err: unknown): AdminError {
  if (err instanceof AdminError) return err;
  if (err instanceof ApprovalError) {
    return new AdminError(APPROVAL_CODES[err.code], err.message, { reason: err.code });
  }
  if (err instanceof ForbiddenError) return new AdminError('forbidden', err.message);
  if (sqlState(err) === '23505') return new AdminError('conflict', 'that already exists');
  if (isUnavailable(err)) return new AdminError('unavailable', 'the state store is unavailable; try again shortly');
  return new AdminError('internal', 'internal error');
}
