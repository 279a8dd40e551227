/**
 * The CheckRequest Envoy 1.40's ext_authz filter sends for an HTTP/1.1 request on our listener, as
 * recorded from the real binary:
 * - `headers`: the pseudo-headers `:authority`, `:path`, `:method`, `:scheme` and every request
 *   header after the connection manager's edge mutations, names lower-case, repeated headers joined
 *   with `,` (cookies too), values decoded as UTF-8 with `!` for each invalid byte. A client's own
 *   `x-envoy-auth-partial-body` never appears; Envoy sets it ("true" when it cut the body at
 *   `max_request_bytes`, else "false") only when it buffered a body.
 * - `size`: the bytes Envoy had buffered when it sent the Check (0 without buffering), which can be
 *   more than `raw_body` holds; `raw_body` is at most `max_request_bytes`; `body` stays empty
 *   (`pack_as_bytes`).
 * - `query` and `fragment` are empty (the query stays in `path`), `protocol` is "HTTP/1.1",
 *   `scheme` "http", `id` Envoy's stream id (a random unsigned 64-bit number in decimal).
 * - `source` and `destination` are the TCP peer and local addresses; `metadata_context` and
 *   `route_metadata_context` are present and empty; no context extensions, no TLS session.
 */
import type { CheckRequest } from '../../gen/envoy/service/auth/v3/external_auth.js';
import { sanitizeUtf8, type HeaderList } from './headers.js';

export interface CheckInput {
  id: string;
  time: Date;
  method: string;
  /** `:path` after normalization, query included. */
  path: string;
  authority: string;
  /** Request headers after the edge mutations (binary values, lower-case names). */
  headers: readonly string[] | HeaderList;
  /** The buffered body, when the route buffers and the request has one. */
  body: { bytes: Buffer; size: number; partial: boolean } | null;
  source: { address: string; port: number };
  destination: { address: string; port: number };
}

const PARTIAL_BODY = 'x-envoy-auth-partial-body';
const EMPTY = Buffer.alloc(0);

function peer(p: { address: string; port: number }) {
  return {
    address: {
      socketAddress: { protocol: 0, address: p.address, portValue: p.port, resolverName: '', ipv4Compat: false },
    },
    service: '',
    labels: {},
    principal: '',
    certificate: '',
  };
}

export function buildCheckRequest(input: CheckInput): CheckRequest {
  // A prototype-less map: a client header named `__proto__` is a header like any other.
  const headers = Object.create(null) as Record<string, string>;
  headers[':authority'] = sanitizeUtf8(input.authority);
  headers[':path'] = input.path;
  headers[':method'] = input.method;
  headers[':scheme'] = 'http';
  const list = input.headers;
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i] as string;
    if (name === PARTIAL_BODY) continue;
    const value = sanitizeUtf8(list[i + 1] as string);
    const prev = headers[name];
    // Repeated lines Envoy did not merge are joined as they are, empty ones included.
    headers[name] = prev === undefined ? value : `${prev},${value}`;
  }
  const body = input.body;
  if (body) headers[PARTIAL_BODY] = body.partial ? 'true' : 'false';
  return {
    attributes: {
      source: peer(input.source),
      destination: peer(input.destination),
      request: {
        time: input.time,
        http: {
          id: input.id,
          method: input.method,
          headers,
          headerMap: undefined,
          path: input.path,
          host: headers[':authority'],
          scheme: 'http',
          query: '',
          fragment: '',
          size: body ? body.size : 0,
          protocol: 'HTTP/1.1',
          body: '',
          rawBody: body ? body.bytes : EMPTY,
        },
      },
      contextExtensions: {},
      metadataContext: { filterMetadata: {}, typedFilterMetadata: {} },
      routeMetadataContext: { filterMetadata: {}, typedFilterMetadata: {} },
      tlsSession: undefined,
    },
  };
}
