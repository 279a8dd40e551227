/** Pieces every admin route handler shares: its input, its environment, parsing and auditing. */
import { randomUUID } from 'node:crypto';
import type { z } from 'zod';
import type { ActivePolicy, ApplyResult } from '../authz/runtime.js';
import type { Role } from '../policy/layer1-types.js';
import type { Layer2Store } from '../state/index.js';
import { AdminError, badRequest } from './errors.js';
import type { ServiceStateStore } from './services.js';

/** Who is calling, as the internal JWT says (never `x-mcpgw-user` alone). */
export interface AdminCaller {
  id: string;
  role: Role;
}

export interface AdminRequest {
  method: string;
  /** After `/admin/v1`, e.g. `/users/alice`; segments percent-encoded as on the wire. */
  path: string;
  query?: Readonly<Record<string, string | undefined>>;
  /** Parsed JSON; undefined when the request had no body. */
  body?: unknown;
  caller: AdminCaller;
}

export interface AdminResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** The part of `PolicyHolder` the admin API uses. */
export interface PolicyHolderLike {
  readonly active: ActivePolicy;
  apply(text: string, file: string): Promise<ApplyResult>;
  /**
   * Serializes "store a revision, then swap" with the swaps this process makes when it hears of a
   * revision through the database (PolicyHolder.exclusive); without it, applies here are
   * serialized among themselves only.
   */
  exclusive?<T>(fn: () => Promise<T>): Promise<T>;
}

/** One backend as the aggregator reports it (`Aggregator.stats().backends`). */
export interface BackendReport {
  service: string;
  state: string;
  scope?: string;
  lastError?: string;
}

export interface HandlerEnv {
  store: Layer2Store;
  policy: PolicyHolderLike;
  services: ServiceStateStore;
  backends: () => readonly BackendReport[] | Promise<readonly BackendReport[]>;
  version: string;
  startedAt: Date;
  now: () => number;
  onGrantsChanged: (userId: string) => void;
  onServicesChanged: () => void | Promise<void>;
  onPolicyApplied: (revision: string) => void;
  onError: (err: unknown, context: string) => void;
}

export interface Call {
  caller: AdminCaller;
  /** Path parameters, percent-decoded. */
  params: Readonly<Record<string, string>>;
  query: Readonly<Record<string, string | undefined>>;
  body: unknown;
}

export type Handler = (call: Call) => Promise<AdminResponse>;

export function ok(body: unknown, status = 200): AdminResponse {
  return { status, body };
}

export function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw badRequest(what, r.error);
  return r.data;
}

/** The body, where every field is optional and an empty request means "defaults". */
export function parseOptionalBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  return parse(schema, body ?? {}, 'request body');
}

export function param(call: Call, name: string, schema?: z.ZodType<string>): string {
  const v = call.params[name];
  if (v === undefined) throw new AdminError('internal', `route has no parameter ${name}`);
  return schema ? parse(schema, v, name) : v;
}

/**
 * Records an admin change that has no audited store method (identities, policy). Runs after the
 * change: a failure here is reported to the caller, who then knows the trail misses this entry.
 */
export async function auditChange(
  env: HandlerEnv,
  caller: AdminCaller,
  method: string,
  detail: Record<string, unknown>,
  service: string | null = null,
): Promise<void> {
  await env.store.appendAudit({
    decisionId: `adm-${randomUUID()}`,
    userId: caller.id,
    method,
    service,
    outcome: 'allow',
    reasons: [],
    detail: { ...detail, role: caller.role },
  });
}

export const iso = (d: Date): string => d.toISOString();
export const isoOrNull = (d: Date | null | undefined): string | null => (d ? d.toISOString() : null);
