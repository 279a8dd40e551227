/**
 * The part of an Envoy CheckRequest the Check handler reads, as plain data: the gRPC server and
 * the built-in front both produce it, and the handler is tested without any socket.
 */
import type { CheckRequest } from '../gen/envoy/service/auth/v3/external_auth.js';

export interface HttpRequestView {
  method: string;
  /** Path as Envoy forwarded it, query included. */
  path: string;
  /** Lower-cased header names, as Envoy sends them. */
  headers: Readonly<Record<string, string>>;
  /** `raw_body` (Envoy `pack_as_bytes: true`); empty when there is no body. */
  rawBody: Uint8Array;
  /** True when Envoy sent the body as a UTF-8 string (`body`), i.e. `pack_as_bytes` is off. */
  bodyAsString: boolean;
}

export function httpViewFromCheckRequest(req: CheckRequest): HttpRequestView | null {
  const http = req.attributes?.request?.http;
  if (!http) return null;
  return {
    method: http.method,
    path: http.path,
    headers: http.headers,
    rawBody: http.rawBody,
    bodyAsString: http.body.length > 0 && http.rawBody.length === 0,
  };
}

/** Path without query or fragment; routing is by exact path. */
export function routePath(path: string): string {
  const q = path.search(/[?#]/);
  return q === -1 ? path : path.slice(0, q);
}
