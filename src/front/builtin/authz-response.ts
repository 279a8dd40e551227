/**
 * A CheckResponse read as Envoy 1.40's ext_authz filter (gRPC, `validate_mutations: true`) reads it,
 * as observed with the real binary:
 * - `status.code` alone decides: 0 allows (a `denied_response` is then ignored), anything else denies.
 * - Denied: the status is `denied_response.status.code` (0 or absent → 403; Envoy keeps only its low
 *   16 bits). Every header is added in order, whatever its `append_action`, except those with the
 *   legacy `append: true`, which Envoy drops (even when an earlier entry added that header).
 * - Allowed, request headers: `append_action` is ignored; `append: true` extends an existing header
 *   (and adds nothing when it is absent), anything else replaces every value of the header (Envoy's
 *   setCopy: the header moves to the end). `headers_to_remove` runs after both and cannot remove
 *   pseudo-headers or `host`.
 * - Allowed, response headers: grouped as add (APPEND_IF_EXISTS_OR_ADD or `append: true`), set,
 *   add-if-absent, overwrite-if-exists, applied to the upstream response in that order.
 * - An invalid header name or value anywhere but `headers_to_remove` turns the answer into a 500.
 */
import { HeaderValueOption_HeaderAppendAction as Action } from '../../gen/envoy/config/core/v3/base.js';
import type { HeaderValueOption } from '../../gen/envoy/config/core/v3/base.js';
import type { CheckResponse } from '../../gen/envoy/service/auth/v3/external_auth.js';
import {
  headerAppendToExisting,
  headerHas,
  headerRemove,
  headerSet,
  isValidMutationName,
  isValidMutationValue,
  utf8AsBinary,
  type HeaderList,
} from './headers.js';

export interface ResponseHeaderOps {
  add: HeaderList;
  set: HeaderList;
  addIfAbsent: HeaderList;
  overwriteIfExists: HeaderList;
}

export interface RequestMutation {
  /** Replace-or-add, in order (values already in wire form). */
  set: HeaderList;
  /** Extend-if-present. */
  append: HeaderList;
  remove: string[];
  queryToSet: [string, string][];
  queryToRemove: string[];
  response: ResponseHeaderOps | null;
}

export type AuthzDecision =
  | { kind: 'invalid' }
  | { kind: 'deny'; status: number; headers: HeaderList; body: string }
  | { kind: 'allow'; mutation: RequestMutation | null };

function validOptions(options: readonly HeaderValueOption[]): boolean {
  for (const o of options) {
    const key = o.header?.key ?? '';
    if (!isValidMutationName(key) || !isValidMutationValue(o.header?.value ?? '')) return false;
  }
  return true;
}

export function readCheckResponse(res: CheckResponse, validate: boolean): AuthzDecision {
  if ((res.status?.code ?? 0) !== 0) {
    const denied = res.deniedResponse;
    const options = denied?.headers ?? [];
    if (validate && !validOptions(options)) return { kind: 'invalid' };
    const headers: HeaderList = [];
    for (const o of options) {
      if (o.append === true) continue;
      headers.push((o.header?.key ?? '').toLowerCase(), utf8AsBinary(o.header?.value ?? ''));
    }
    const code = denied?.status?.code ?? 0;
    return { kind: 'deny', status: code === 0 ? 403 : code & 0xffff, headers, body: denied?.body ?? '' };
  }
  const ok = res.okResponse;
  if (!ok) return { kind: 'allow', mutation: null };
  if (validate && (!validOptions(ok.headers) || !validOptions(ok.responseHeadersToAdd))) return { kind: 'invalid' };
  const mutation: RequestMutation = {
    set: [],
    append: [],
    remove: ok.headersToRemove.map((h) => h.toLowerCase()),
    queryToSet: ok.queryParametersToSet.map((q) => [q.key, q.value]),
    queryToRemove: ok.queryParametersToRemove,
    response: null,
  };
  for (const o of ok.headers) {
    const key = (o.header?.key ?? '').toLowerCase();
    const value = utf8AsBinary(o.header?.value ?? '');
    if (o.append === true) mutation.append.push(key, value);
    else mutation.set.push(key, value);
  }
  if (ok.responseHeadersToAdd.length > 0) {
    const ops: ResponseHeaderOps = { add: [], set: [], addIfAbsent: [], overwriteIfExists: [] };
    for (const o of ok.responseHeadersToAdd) {
      const key = (o.header?.key ?? '').toLowerCase();
      const value = utf8AsBinary(o.header?.value ?? '');
      if (o.append !== undefined) (o.append ? ops.add : ops.set).push(key, value);
      else if (o.appendAction === Action.ADD_IF_ABSENT) ops.addIfAbsent.push(key, value);
      else if (o.appendAction === Action.OVERWRITE_IF_EXISTS) ops.overwriteIfExists.push(key, value);
      else if (o.appendAction === Action.OVERWRITE_IF_EXISTS_OR_ADD) ops.set.push(key, value);
      else ops.add.push(key, value);
    }
    mutation.response = ops;
  }
  return { kind: 'allow', mutation };
}

/** The request as the gateway should see it: `authority` and `path` may change with the headers. */
export interface MutableRequest {
  method: string;
  authority: string;
  path: string;
  headers: HeaderList;
}

export function applyRequestMutation(req: MutableRequest, m: RequestMutation): void {
  for (let i = 0; i < m.set.length; i += 2) {
    const key = m.set[i] as string;
    const value = m.set[i + 1] as string;
    if (key.charCodeAt(0) === 0x3a || key === 'host') {
      if (key === ':authority' || key === 'host') req.authority = value;
      else if (key === ':path') req.path = value;
      else if (key === ':method') req.method = value;
      continue;
    }
    headerSet(req.headers, key, value);
  }
  for (let i = 0; i < m.append.length; i += 2) {
    headerAppendToExisting(req.headers, m.append[i] as string, m.append[i + 1] as string);
  }
  for (const key of m.remove) {
    if (key.charCodeAt(0) === 0x3a || key === 'host') continue;
    headerRemove(req.headers, key);
  }
  if (m.queryToSet.length > 0 || m.queryToRemove.length > 0) {
    req.path = mutateQuery(req.path, m.queryToSet, m.queryToRemove);
  }
}

function mutateQuery(path: string, set: readonly [string, string][], remove: readonly string[]): string {
  const q = path.indexOf('?');
  const base = q === -1 ? path : path.slice(0, q);
  const pairs = q === -1 || q === path.length - 1 ? [] : path.slice(q + 1).split('&');
  const keyOf = (p: string): string => {
    const eq = p.indexOf('=');
    return eq === -1 ? p : p.slice(0, eq);
  };
  let kept = pairs.filter((p) => !remove.includes(keyOf(p)));
  for (const [k, v] of set) {
    const at = kept.findIndex((p) => keyOf(p) === k);
    const pair = `${k}=${v}`;
    if (at === -1) kept.push(pair);
    else kept = [...kept.slice(0, at), pair, ...kept.slice(at + 1).filter((p) => keyOf(p) !== k)];
  }
  return kept.length === 0 ? base : `${base}?${kept.join('&')}`;
}

export function applyResponseOps(list: HeaderList, ops: ResponseHeaderOps): void {
  for (let i = 0; i < ops.add.length; i += 2) list.push(ops.add[i] as string, ops.add[i + 1] as string);
  for (let i = 0; i < ops.set.length; i += 2) headerSet(list, ops.set[i] as string, ops.set[i + 1] as string);
  for (let i = 0; i < ops.addIfAbsent.length; i += 2) {
    const key = ops.addIfAbsent[i] as string;
    if (!headerHas(list, key)) list.push(key, ops.addIfAbsent[i + 1] as string);
  }
  for (let i = 0; i < ops.overwriteIfExists.length; i += 2) {
    const key = ops.overwriteIfExists[i] as string;
    if (headerHas(list, key)) headerSet(list, key, ops.overwriteIfExists[i + 1] as string);
  }
}
