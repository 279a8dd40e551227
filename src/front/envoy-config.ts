/**
 * The Envoy front of mcpgw (DESIGN §2, §3) as a bootstrap document.
 *
 * `renderEnvoyConfig` is pure: options in, YAML out. `envoy/envoy.yaml` is its default rendering,
 * committed so packagers and the container can use it without Node; test/envoy/config.test.ts
 * fails when the two differ (regenerate with `npx vitest run test/envoy/config.test.ts -u`).
 *
 * Every setting here was checked against the real Envoy 1.40 binary (test/envoy/*.test.ts): the
 * comments record what it does there, not what the docs promise.
 */
import { isIP } from 'node:net';
import { stringify } from 'yaml';

/** A TCP endpoint, or a Unix socket (`path`) for co-located processes. */
export type Endpoint = { readonly host: string; readonly port: number } | { readonly path: string };

export interface EnvoyConfigOptions {
  /** Where agents connect. Default 127.0.0.1:8000 (native mode); the container uses 0.0.0.0. */
  readonly listen?: { readonly host: string; readonly port: number };
  /** The ext_authz gRPC server (`mcpgw serve --role authz`). Default 127.0.0.1:9191. */
  readonly authz?: Endpoint;
  /** The gateway (`mcpgw serve --role gateway`). Default 127.0.0.1:3000. */
  readonly gateway?: Endpoint;
  /**
   * Envoy's admin listener, always on 127.0.0.1. Off by default: in native mode the agent may share
   * the OS user and the loopback interface, and admin can stop Envoy or raise its log level until
   * it logs credentials. Port 0 asks the kernel for a free port (read it with --admin-address-path).
   */
  readonly adminPort?: number;
  /** Largest body authz sees (`with_request_body.max_request_bytes`). Default 1 MiB. */
  readonly maxRequestBytes?: number;
  /** ext_authz gRPC deadline. Default 1000 ms: above the Layer 1 + Layer 2 budgets and `approval.wait`. */
  readonly authzTimeoutMs?: number;
}

export const ENVOY_DEFAULTS = {
  listen: { host: '127.0.0.1', port: 8000 },
  authz: { host: '127.0.0.1', port: 9191 },
  gateway: { host: '127.0.0.1', port: 3000 },
  maxRequestBytes: 1024 * 1024,
  authzTimeoutMs: 1000,
} as const;

/** Cluster and filter names other parts of mcpgw (docs, s6 checks, tests) refer to. */
export const ENVOY_NAMES = {
  listener: 'mcpgw_front',
  authzCluster: 'mcpgw_authz',
  gatewayCluster: 'mcpgw_gateway',
  extAuthzFilter: 'envoy.filters.http.ext_authz',
} as const;

const TYPE = 'type.googleapis.com/';
const EXT_AUTHZ = `${TYPE}envoy.extensions.filters.http.ext_authz.v3.ExtAuthz`;
const EXT_AUTHZ_PER_ROUTE = `${TYPE}envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute`;
const HCM = `${TYPE}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`;
const ROUTER = `${TYPE}envoy.extensions.filters.http.router.v3.Router`;
const HTTP_PROTOCOL_OPTIONS = `${TYPE}envoy.extensions.upstreams.http.v3.HttpProtocolOptions`;
const STDOUT_LOG = `${TYPE}envoy.extensions.access_loggers.stream.v3.StdoutAccessLog`;
const CEL_FILTER = `${TYPE}envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter`;
const DOWNSTREAM_CONNECTIONS = `${TYPE}envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig`;

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

/**
 * Request headers that only authz may hand to the gateway (DESIGN §3, "Allowed"): the client's
 * credential and the `x-mcpgw-*` headers authz sets after a decision.
 */
export const AUTHZ_OWNED_HEADERS = [
  'authorization',
  'x-mcpgw-user',
  'x-mcpgw-decision-id',
  'x-mcpgw-request-mac',
] as const;

/** JSON-RPC error codes used in local replies (DESIGN §3: -32001 policy, -32600 invalid request). */
const RPC_POLICY = -32001;
const RPC_INVALID_REQUEST = -32600;
const RPC_INTERNAL = -32603;

/**
 * Local replies Envoy itself produces, by status. ext_authz denials are local replies too; they are
 * handled before this table (see `localReplyConfig`).
 */
const LOCAL_REPLIES: readonly { status: number; code: number; message: string }[] = [
  { status: 400, code: RPC_INVALID_REQUEST, message: 'Bad request' },
  { status: 401, code: RPC_POLICY, message: 'Unauthorized' },
  { status: 403, code: RPC_POLICY, message: 'Forbidden' },
  { status: 404, code: RPC_INVALID_REQUEST, message: 'Not found' },
  { status: 405, code: RPC_INVALID_REQUEST, message: 'Method not allowed' },
  { status: 408, code: RPC_INVALID_REQUEST, message: 'Request timeout' },
  { status: 413, code: RPC_INVALID_REQUEST, message: 'Request body too large' },
  { status: 429, code: RPC_POLICY, message: 'Too many requests' },
  { status: 431, code: RPC_INVALID_REQUEST, message: 'Request headers too large' },
  { status: 500, code: RPC_INTERNAL, message: 'Internal error' },
  { status: 502, code: RPC_INTERNAL, message: 'Bad gateway' },
  { status: 503, code: RPC_INTERNAL, message: 'Service unavailable' },
  { status: 504, code: RPC_INTERNAL, message: 'Gateway timeout' },
];

/** The JSON-RPC error object Envoy sends as a local reply body (`id` is unknown at this layer). */
export function localReplyBody(code: number, message: string): string {
  return JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message } });
}

function address(ep: Endpoint): JsonObject {
  if ('path' in ep) return { pipe: { path: ep.path } };
  return { socket_address: { address: ep.host, port_value: ep.port } };
}

function durationOf(ms: number): string {
  return `${ms / 1000}s`;
}

function checkPort(name: string, port: number, allowZero: boolean): void {
  if (!Number.isInteger(port) || port < (allowZero ? 0 : 1) || port > 65535) {
    throw new RangeError(`${name}: invalid port ${port}`);
  }
}

function checkEndpoint(name: string, ep: Endpoint): void {
  if ('path' in ep) {
    if (!ep.path.startsWith('/')) throw new RangeError(`${name}: a Unix socket path must be absolute`);
    return;
  }
  checkPort(name, ep.port, false);
}

function cluster(name: string, ep: Endpoint, extra: JsonObject): JsonObject {
  // STATIC takes IP literals and sockets only. A name (a container or Kubernetes service) is
  // resolved with STRICT_DNS so that every address it has (replicas) becomes an endpoint.
  const resolved = 'path' in ep || isIP(ep.host) !== 0;
  return {
    name,
    type: resolved ? 'STATIC' : 'STRICT_DNS',
    connect_timeout: '1s',
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: address(ep) } }] }],
    },
    ...extra,
  };
}

const statusIs = (status: number): JsonObject => ({
  status_code_filter: {
    comparison: { op: 'EQ', value: { default_value: status, runtime_key: `mcpgw.local_reply.status_${status}` } },
  },
});

const jsonBody = (code: number, message: string): JsonObject => ({
  text_format_source: { inline_string: localReplyBody(code, message) },
  content_type: 'application/json',
});

/**
 * ext_authz answers through `sendLocalReply`, so local_reply_config sees its denials as well. A
 * denial carries the body authz wrote (a JSON-RPC error or CallToolResult) and must reach the client
 * untouched; Envoy's own replies (no route, 413, bad path, authz unreachable…) have no useful body
 * and get a JSON-RPC one. Both kinds of ext_authz reply carry the UAEX flag, and authz may deny
 * with any status (503 when its database is down), so a status test cannot tell an authz-written
 * body from status_on_error's empty one: the response code details can (`ext_authz_denied` vs
 * `ext_authz_error`).
 */
function localReplyConfig(): JsonObject {
  const celIs = (expression: string): JsonObject => ({
    extension_filter: {
      name: 'envoy.access_loggers.extension_filters.cel',
      typed_config: { '@type': CEL_FILTER, expression },
    },
  });
  const detailsAre = (details: string): JsonObject => celIs(`response.code_details == '${details}'`);
  return {
    mappers: [
      // A mapper with no override stops the search and leaves the reply as authz built it.
      { filter: celIs("response.code_details == 'ext_authz_denied' && 'content-type' in response.headers") },
      {
        filter: detailsAre('ext_authz_error'),
        body_format_override: jsonBody(RPC_INTERNAL, 'Authorization service unavailable'),
      },
      ...LOCAL_REPLIES.map(({ status, code, message }) => ({
        filter: statusIs(status),
        body_format_override: jsonBody(code, message),
      })),
      {
        // Anything not listed above that is still an error gets a generic body, never an empty one.
        filter: {
          status_code_filter: {
            comparison: { op: 'GE', value: { default_value: 400, runtime_key: 'mcpgw.local_reply.status_error' } },
          },
        },
        body_format_override: jsonBody(RPC_INVALID_REQUEST, 'Request failed'),
      },
    ],
  };
}

/**
 * One JSON line per request on stdout. Request headers are never logged wholesale: `authorization`
 * and `mcp-session-id` are credentials. The user and decision id come from ext_authz dynamic
 * metadata, not headers, because a denied request still carries the client's own `x-mcpgw-*`.
 */
function accessLog(): Json[] {
  return [
    {
      name: 'envoy.access_loggers.stdout',
      typed_config: {
        '@type': STDOUT_LOG,
        log_format: {
          json_format: {
            time: '%START_TIME%',
            request_id: '%REQ(X-REQUEST-ID)%',
            client: '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%',
            method: '%REQ(:METHOD)%',
            path: '%PATH(NQ:ORIG_OR_PATH)%',
            protocol: '%PROTOCOL%',
            status: '%RESPONSE_CODE%',
            details: '%RESPONSE_CODE_DETAILS%',
            flags: '%RESPONSE_FLAGS%',
            bytes_in: '%BYTES_RECEIVED%',
            bytes_out: '%BYTES_SENT%',
            duration_ms: '%DURATION%',
            upstream: '%UPSTREAM_HOST%',
            user_agent: '%REQ(USER-AGENT)%',
            user: '%DYNAMIC_METADATA(envoy.filters.http.ext_authz:user)%',
            decision_id: '%DYNAMIC_METADATA(envoy.filters.http.ext_authz:decision_id)%',
            authz_us: `%FILTER_STATE(${ENVOY_NAMES.extAuthzFilter}:FIELD:latency_us)%`,
          },
        },
      },
    },
  ];
}

/**
 * Admin bodies carry secrets (vault values, keys): authz checks the admin credential from the
 * headers only, so the body never enters a CheckRequest or a decision log.
 */
function adminRoute(name: string, match: JsonObject): JsonObject {
  return {
    name,
    match,
    route: { cluster: ENVOY_NAMES.gatewayCluster, timeout: '60s' },
    typed_per_filter_config: {
      [ENVOY_NAMES.extAuthzFilter]: {
        '@type': EXT_AUTHZ_PER_ROUTE,
        check_settings: { disable_request_body_buffering: true },
      },
    },
  };
}

function routes(): Json[] {
  const gateway = ENVOY_NAMES.gatewayCluster;
  const noAuthz = { [ENVOY_NAMES.extAuthzFilter]: { '@type': EXT_AUTHZ_PER_ROUTE, disabled: true } };
  // On routes authz never sees, nobody strips what a client may send in the headers authz would
  // otherwise set or remove, so the route does.
  const unchecked = { typed_per_filter_config: noAuthz, request_headers_to_remove: [...AUTHZ_OWNED_HEADERS] };
  const methods = (regex: string): Json[] => [{ name: ':method', string_match: { safe_regex: { regex } } }];
  return [
    {
      // Liveness must answer while authz is down, and carries no credential.
      name: 'healthz',
      match: { path: '/healthz', headers: methods('^(GET|HEAD)$') },
      route: { cluster: gateway, timeout: '5s' },
      ...unchecked,
    },
    {
      // Public metadata (JWKS, RFC 9728 protected-resource metadata) that clients fetch before
      // they hold a credential.
      name: 'well-known',
      match: { prefix: '/.well-known/', headers: methods('^(GET|HEAD|OPTIONS)$') },
      route: { cluster: gateway, timeout: '5s' },
      ...unchecked,
    },
    adminRoute('admin', { path: '/admin/v1' }),
    adminRoute('admin-tree', { prefix: '/admin/v1/' }),
    {
      // POST answers may be SSE streams of a long tool call and GET is the server-to-client SSE
      // stream: no total deadline, and an idle limit long enough for a quiet stream.
      name: 'mcp',
      match: { path: '/mcp', headers: methods('^(GET|POST|DELETE)$') },
      route: { cluster: gateway, timeout: '0s', idle_timeout: '3600s' },
    },
    {
      name: 'mcp-method',
      match: { path: '/mcp' },
      direct_response: { status: 405 },
      response_headers_to_add: [
        { header: { key: 'allow', value: 'GET, POST, DELETE' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
      ],
      typed_per_filter_config: noAuthz,
    },
    {
      // Every other path is refused here rather than by authz: it would deny anyway (DESIGN §3.1),
      // and this way unknown paths cost no Check and never reach the gateway (/metrics included).
      name: 'not-found',
      match: { prefix: '/' },
      direct_response: { status: 404 },
      typed_per_filter_config: noAuthz,
    },
  ];
}

function extAuthz(maxRequestBytes: number, timeoutMs: number): JsonObject {
  return {
    name: ENVOY_NAMES.extAuthzFilter,
    typed_config: {
      '@type': EXT_AUTHZ,
      transport_api_version: 'V3',
      grpc_service: { envoy_grpc: { cluster_name: ENVOY_NAMES.authzCluster }, timeout: durationOf(timeoutMs) },
      with_request_body: { max_request_bytes: maxRequestBytes, allow_partial_message: true, pack_as_bytes: true },
      failure_mode_allow: false,
      status_on_error: { code: 503 },
      validate_mutations: true,
      clear_route_cache: false,
      stat_prefix: 'mcpgw',
      emit_filter_state_stats: true,
    },
  };
}

/** The bootstrap as a plain object (what `renderEnvoyConfig` serializes). */
export function envoyBootstrap(opts: EnvoyConfigOptions = {}): JsonObject {
  const listen = opts.listen ?? ENVOY_DEFAULTS.listen;
  const authz = opts.authz ?? ENVOY_DEFAULTS.authz;
  const gateway = opts.gateway ?? ENVOY_DEFAULTS.gateway;
  const maxRequestBytes = opts.maxRequestBytes ?? ENVOY_DEFAULTS.maxRequestBytes;
  const authzTimeoutMs = opts.authzTimeoutMs ?? ENVOY_DEFAULTS.authzTimeoutMs;
  checkPort('listen', listen.port, true);
  if (isIP(listen.host) === 0) throw new RangeError(`listen: ${listen.host} is not an IP address`);
  checkEndpoint('authz', authz);
  checkEndpoint('gateway', gateway);
  if (opts.adminPort !== undefined) checkPort('adminPort', opts.adminPort, true);
  if (!Number.isInteger(maxRequestBytes) || maxRequestBytes < 1 || maxRequestBytes > 64 * 1024 * 1024) {
    throw new RangeError(`maxRequestBytes: ${maxRequestBytes} is outside 1 B..64 MiB`);
  }
  if (!Number.isInteger(authzTimeoutMs) || authzTimeoutMs < 1) {
    throw new RangeError(`authzTimeoutMs: ${authzTimeoutMs} must be a positive integer`);
  }

  const hcm: JsonObject = {
    '@type': HCM,
    stat_prefix: 'mcpgw_front',
    codec_type: 'AUTO',
    // The peer address is the agent's: nothing trusted sits in front of this listener.
    use_remote_address: true,
    normalize_path: true,
    merge_slashes: true,
    path_with_escaped_slashes_action: 'REJECT_REQUEST',
    common_http_protocol_options: {
      idle_timeout: '3600s',
      // `x_mcpgw_user` must not pass for `x-mcpgw-user` in anything behind us.
      headers_with_underscores_action: 'REJECT_REQUEST',
    },
    request_headers_timeout: '10s',
    // Covers receiving the whole request (and the Check); it stops once the request is in, so it
    // does not limit SSE responses.
    request_timeout: '60s',
    stream_idle_timeout: '300s',
    access_log: accessLog(),
    local_reply_config: localReplyConfig(),
    route_config: {
      name: 'mcpgw',
      virtual_hosts: [{ name: 'mcpgw', domains: ['*'], routes: routes() }],
    },
    http_filters: [
      extAuthz(maxRequestBytes, authzTimeoutMs),
      { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER, suppress_envoy_headers: true } },
    ],
  };

  const bootstrap: JsonObject = {
    node: { id: 'mcpgw-front', cluster: 'mcpgw' },
    static_resources: {
      listeners: [
        {
          name: ENVOY_NAMES.listener,
          address: address(listen),
          // ext_authz buffers up to max_request_bytes before the Check; the connection buffer
          // must hold that much or flow control cuts the body short first.
          per_connection_buffer_limit_bytes: Math.max(maxRequestBytes + 65536, 1024 * 1024),
          filter_chains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm }] }],
        },
      ],
      clusters: [
        cluster(ENVOY_NAMES.authzCluster, authz, {
          // gRPC needs HTTP/2 to the authz server.
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': HTTP_PROTOCOL_OPTIONS,
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
          health_checks: [
            {
              timeout: '1s',
              interval: '5s',
              unhealthy_threshold: 2,
              healthy_threshold: 1,
              // src/authz answers NOT_SERVING while draining, so replicas leave the rotation.
              // A lone unhealthy host still gets Checks (panic routing), so this never fails
              // requests by itself.
              grpc_health_check: { service_name: 'envoy.service.auth.v3.Authorization' },
            },
          ],
        }),
        cluster(ENVOY_NAMES.gatewayCluster, gateway, {}),
      ],
    },
    // A static layer only: with no admin layer, nothing at run time can turn off the path checks
    // (their runtime keys) or other settings above.
    layered_runtime: { layers: [{ name: 'static', static_layer: {} }] },
    overload_manager: {
      resource_monitors: [
        {
          name: 'envoy.resource_monitors.global_downstream_max_connections',
          typed_config: { '@type': DOWNSTREAM_CONNECTIONS, max_active_downstream_connections: 10000 },
        },
      ],
    },
  };
  if (opts.adminPort !== undefined) {
    bootstrap['admin'] = { address: { socket_address: { address: '127.0.0.1', port_value: opts.adminPort } } };
  }
  return bootstrap;
}

/** The bootstrap as YAML, with a header saying where it comes from. */
export function renderEnvoyConfig(opts: EnvoyConfigOptions = {}): string {
  const header =
    '# Generated by renderEnvoyConfig() in src/front/envoy-config.ts. Do not edit: change the code and\n' +
    '# regenerate with `npx vitest run test/envoy/config.test.ts -u`.\n';
  return header + stringify(envoyBootstrap(opts), { lineWidth: 0, singleQuote: true });
}
