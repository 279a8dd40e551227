/**
 * The built-in front runs the same bootstrap as Envoy: `envoyBootstrap()` renders it and this module
 * reads the parts the front implements (listener, connection manager settings, routes, local reply
 * mappers, ext_authz filter, clusters) into plain data. Anything in the bootstrap this front does
 * not implement is an error at start-up, so the two fronts cannot drift apart silently when
 * src/front/envoy-config.ts changes.
 */
import type { Endpoint } from '../envoy-config.js';
import type { UnderscoreAction } from './headers.js';

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

export interface RouteSpec {
  name: string;
  /** Exact path (query excluded), or a prefix. */
  path?: string;
  prefix?: string;
  /** `:method` must match, when set. */
  methods?: RegExp;
  /** A route answered by the front itself with this status, or null for the gateway. */
  directStatus: number | null;
  /** Response headers a direct response carries (`OVERWRITE_IF_EXISTS_OR_ADD`). */
  directHeaders: readonly (readonly [string, string])[];
  /** ext_authz on this route: off, headers only (no body buffering), or with the buffered body. */
  authz: 'off' | 'headers' | 'body';
  /** Request headers removed before the gateway sees the request. */
  removeRequestHeaders: readonly string[];
  /** Route timeout (whole upstream exchange after the request is in); 0 means none. */
  timeoutMs: number;
  /** Per-route idle timeout replacing the connection manager's stream idle timeout, or null. */
  idleTimeoutMs: number | null;
}

export type MapperFilter =
  | { kind: 'denied-with-content-type' }
  | { kind: 'details'; details: string }
  | { kind: 'status'; op: 'EQ' | 'GE'; status: number };

export interface LocalReplyMapper {
  filter: MapperFilter;
  /** The body and content type it sets, or null to keep the reply as it is. */
  body: { text: string; contentType: string } | null;
}

export interface FrontConfig {
  listen: { host: string; port: number };
  /** Envoy's per-connection buffer limit: also how much request body the front holds at most. */
  connectionBufferBytes: number;
  normalizePath: boolean;
  mergeSlashes: boolean;
  rejectEscapedSlashes: boolean;
  underscores: UnderscoreAction;
  idleTimeoutMs: number;
  requestHeadersTimeoutMs: number;
  requestTimeoutMs: number;
  streamIdleTimeoutMs: number;
  maxRequestHeadersBytes: number;
  maxRequestHeaders: number;
  /** The overload manager's cap on open client connections. */
  maxConnections: number;
  mappers: readonly LocalReplyMapper[];
  routes: readonly RouteSpec[];
  authz: {
    endpoint: Endpoint;
    timeoutMs: number;
    maxRequestBytes: number;
    allowPartialMessage: boolean;
    statusOnError: number;
    validateMutations: boolean;
  };
  gateway: { endpoint: Endpoint; connectTimeoutMs: number };
}

class ConfigError extends Error {
  constructor(where: string, what: string) {
    super(`built-in front: ${where}: ${what} (not implemented by the built-in front, or malformed)`);
  }
}

function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function obj(v: Json | undefined, where: string): JsonObject {
  if (!isObject(v)) throw new ConfigError(where, 'expected an object');
  return v;
}

function arr(v: Json | undefined, where: string): Json[] {
  if (!Array.isArray(v)) throw new ConfigError(where, 'expected a list');
  return v;
}

function str(v: Json | undefined, where: string): string {
  if (typeof v !== 'string') throw new ConfigError(where, 'expected a string');
  return v;
}

function num(v: Json | undefined, where: string): number {
  if (typeof v !== 'number') throw new ConfigError(where, 'expected a number');
  return v;
}

function bool(v: Json | undefined, where: string, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw new ConfigError(where, 'expected a boolean');
  return v;
}

/** Only the keys listed may be present: an unknown setting is a behaviour this front lacks. */
function onlyKeys(o: JsonObject, where: string, keys: readonly string[]): void {
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw new ConfigError(`${where}.${k}`, 'unknown setting');
}

function durationMs(v: Json | undefined, where: string): number {
  const s = str(v, where);
  const m = /^(\d+(?:\.\d+)?)s$/.exec(s);
  if (!m) throw new ConfigError(where, `unsupported duration ${s}`);
  return Math.round(Number(m[1]) * 1000);
}

function endpointOf(address: Json | undefined, where: string): Endpoint {
  const a = obj(address, where);
  if (a['pipe'] !== undefined) return { path: str(obj(a['pipe'], `${where}.pipe`)['path'], `${where}.pipe.path`) };
  const sa = obj(a['socket_address'], `${where}.socket_address`);
  return { host: str(sa['address'], `${where}.address`), port: num(sa['port_value'], `${where}.port_value`) };
}

const EXT_AUTHZ_PER_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute';
const EXT_AUTHZ = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
const AUTHZ_FILTER = 'envoy.filters.http.ext_authz';
const DENIED_WITH_CONTENT_TYPE = "response.code_details == 'ext_authz_denied' && 'content-type' in response.headers";
const DETAILS_IS = /^response\.code_details == '([a-z_]+)'$/;
/** A `:method` regex the front can run as a JS RegExp with the same meaning as RE2. */
const METHOD_REGEX = /^\^\(([A-Z]+(?:\|[A-Z]+)*)\)\$$/;

function compileRoute(r: JsonObject, where: string): RouteSpec {
  onlyKeys(r, where, [
    'name',
    'match',
    'route',
    'direct_response',
    'typed_per_filter_config',
    'request_headers_to_remove',
    'response_headers_to_add',
  ]);
  const match = obj(r['match'], `${where}.match`);
  onlyKeys(match, `${where}.match`, ['path', 'prefix', 'headers']);
  const spec: RouteSpec = {
    name: str(r['name'], `${where}.name`),
    directStatus: null,
    directHeaders: [],
    authz: 'body',
    removeRequestHeaders: [],
    timeoutMs: 15_000,
    idleTimeoutMs: null,
  };
  if (match['path'] !== undefined) spec.path = str(match['path'], `${where}.match.path`);
  else spec.prefix = str(match['prefix'], `${where}.match.prefix`);
  if (match['headers'] !== undefined) {
    const headers = arr(match['headers'], `${where}.match.headers`);
    if (headers.length !== 1) throw new ConfigError(`${where}.match.headers`, 'only one :method matcher');
    const h = obj(headers[0], `${where}.match.headers[0]`);
    onlyKeys(h, `${where}.match.headers[0]`, ['name', 'string_match']);
    if (h['name'] !== ':method') throw new ConfigError(`${where}.match.headers[0]`, 'only :method');
    const sm = obj(h['string_match'], `${where}.string_match`);
    onlyKeys(sm, `${where}.string_match`, ['safe_regex']);
    const regex = str(obj(sm['safe_regex'], `${where}.safe_regex`)['regex'], `${where}.regex`);
    if (!METHOD_REGEX.test(regex)) throw new ConfigError(`${where}.regex`, `unsupported regex ${regex}`);
    spec.methods = new RegExp(regex);
  }
  if (r['direct_response'] !== undefined) {
    const d = obj(r['direct_response'], `${where}.direct_response`);
    onlyKeys(d, `${where}.direct_response`, ['status']);
    spec.directStatus = num(d['status'], `${where}.direct_response.status`);
    spec.authz = 'off';
  } else {
    const action = obj(r['route'], `${where}.route`);
    onlyKeys(action, `${where}.route`, ['cluster', 'timeout', 'idle_timeout']);
    str(action['cluster'], `${where}.route.cluster`);
    if (action['timeout'] !== undefined) spec.timeoutMs = durationMs(action['timeout'], `${where}.route.timeout`);
    if (action['idle_timeout'] !== undefined) {
      spec.idleTimeoutMs = durationMs(action['idle_timeout'], `${where}.route.idle_timeout`);
    }
  }
  if (r['response_headers_to_add'] !== undefined) {
    if (spec.directStatus === null) throw new ConfigError(where, 'response_headers_to_add on a proxied route');
    spec.directHeaders = arr(r['response_headers_to_add'], `${where}.response_headers_to_add`).map((h, i) => {
      const w = `${where}.response_headers_to_add[${i}]`;
      const o = obj(h, w);
      if (o['append_action'] !== 'OVERWRITE_IF_EXISTS_OR_ADD')
        throw new ConfigError(w, 'only OVERWRITE_IF_EXISTS_OR_ADD');
      const hv = obj(o['header'], `${w}.header`);
      return [str(hv['key'], `${w}.key`).toLowerCase(), str(hv['value'], `${w}.value`)] as const;
    });
  }
  if (r['request_headers_to_remove'] !== undefined) {
    spec.removeRequestHeaders = arr(r['request_headers_to_remove'], `${where}.request_headers_to_remove`).map((h, i) =>
      str(h, `${where}.request_headers_to_remove[${i}]`).toLowerCase(),
    );
  }
  if (r['typed_per_filter_config'] !== undefined) {
    const per = obj(r['typed_per_filter_config'], `${where}.typed_per_filter_config`);
    onlyKeys(per, `${where}.typed_per_filter_config`, [AUTHZ_FILTER]);
    const cfg = obj(per[AUTHZ_FILTER], `${where}.ext_authz`);
    if (cfg['@type'] !== EXT_AUTHZ_PER_ROUTE) throw new ConfigError(`${where}.ext_authz`, 'unexpected type');
    onlyKeys(cfg, `${where}.ext_authz`, ['@type', 'disabled', 'check_settings']);
    if (bool(cfg['disabled'], `${where}.ext_authz.disabled`, false)) spec.authz = 'off';
    else if (cfg['check_settings'] !== undefined) {
      const cs = obj(cfg['check_settings'], `${where}.check_settings`);
      onlyKeys(cs, `${where}.check_settings`, ['disable_request_body_buffering']);
      if (bool(cs['disable_request_body_buffering'], `${where}.check_settings`, false)) spec.authz = 'headers';
    }
  }
  return spec;
}

function compileMapper(m: JsonObject, where: string): LocalReplyMapper {
  onlyKeys(m, where, ['filter', 'body_format_override']);
  const f = obj(m['filter'], `${where}.filter`);
  let filter: MapperFilter;
  if (f['extension_filter'] !== undefined) {
    const ext = obj(f['extension_filter'], `${where}.extension_filter`);
    const expr = str(obj(ext['typed_config'], `${where}.typed_config`)['expression'], `${where}.expression`);
    const details = DETAILS_IS.exec(expr);
    if (expr === DENIED_WITH_CONTENT_TYPE) filter = { kind: 'denied-with-content-type' };
    else if (details) filter = { kind: 'details', details: details[1] as string };
    else throw new ConfigError(`${where}.expression`, `unsupported CEL expression ${expr}`);
  } else {
    const cmp = obj(obj(f['status_code_filter'], `${where}.status_code_filter`)['comparison'], `${where}.comparison`);
    const op = str(cmp['op'], `${where}.op`);
    if (op !== 'EQ' && op !== 'GE') throw new ConfigError(`${where}.op`, `unsupported ${op}`);
    filter = {
      kind: 'status',
      op,
      status: num(obj(cmp['value'], `${where}.value`)['default_value'], `${where}.value`),
    };
  }
  let body: LocalReplyMapper['body'] = null;
  if (m['body_format_override'] !== undefined) {
    const b = obj(m['body_format_override'], `${where}.body_format_override`);
    onlyKeys(b, `${where}.body_format_override`, ['text_format_source', 'content_type']);
    const text = str(obj(b['text_format_source'], `${where}.text_format_source`)['inline_string'], `${where}.inline`);
    // Envoy would expand %COMMAND% operators; the front serves the text verbatim.
    if (text.includes('%')) throw new ConfigError(`${where}.inline_string`, 'format operators');
    body = { text, contentType: str(b['content_type'], `${where}.content_type`) };
  }
  return { filter, body };
}

/** Reads an `envoyBootstrap()` document into the front's settings. */
export function compileFrontConfig(bootstrap: JsonObject): FrontConfig {
  onlyKeys(bootstrap, 'bootstrap', ['node', 'static_resources', 'layered_runtime', 'overload_manager', 'admin']);
  const resources = obj(bootstrap['static_resources'], 'static_resources');
  onlyKeys(resources, 'static_resources', ['listeners', 'clusters']);
  let maxConnections = 0;
  if (bootstrap['overload_manager'] !== undefined) {
    const om = obj(bootstrap['overload_manager'], 'overload_manager');
    onlyKeys(om, 'overload_manager', ['resource_monitors']);
    for (const [i, m] of arr(om['resource_monitors'], 'resource_monitors').entries()) {
      const w = `resource_monitors[${i}]`;
      const mon = obj(m, w);
      if (mon['name'] !== 'envoy.resource_monitors.global_downstream_max_connections') {
        throw new ConfigError(w, `unsupported monitor ${String(mon['name'])}`);
      }
      maxConnections = num(obj(mon['typed_config'], w)['max_active_downstream_connections'], w);
    }
  }
  const listeners = arr(resources['listeners'], 'listeners');
  if (listeners.length !== 1) throw new ConfigError('listeners', 'exactly one listener');
  const listener = obj(listeners[0], 'listener');
  onlyKeys(listener, 'listener', ['name', 'address', 'per_connection_buffer_limit_bytes', 'filter_chains']);
  const listen = endpointOf(listener['address'], 'listener.address');
  if ('path' in listen) throw new ConfigError('listener.address', 'a TCP address');
  const chains = arr(listener['filter_chains'], 'filter_chains');
  const filters = arr(obj(chains[0], 'filter_chains[0]')['filters'], 'filters');
  if (chains.length !== 1 || filters.length !== 1) throw new ConfigError('filter_chains', 'one chain, one filter');
  const hcm = obj(obj(filters[0], 'filters[0]')['typed_config'], 'hcm');
  onlyKeys(hcm, 'hcm', [
    '@type',
    'stat_prefix',
    'codec_type',
    'use_remote_address',
    'normalize_path',
    'merge_slashes',
    'path_with_escaped_slashes_action',
    'common_http_protocol_options',
    'request_headers_timeout',
    'request_timeout',
    'stream_idle_timeout',
    // The front keeps no access log of its own yet.
    'access_log',
    'local_reply_config',
    'route_config',
    'http_filters',
  ]);
  if (hcm['use_remote_address'] !== true) throw new ConfigError('hcm.use_remote_address', 'must be true');
  if (hcm['codec_type'] !== 'AUTO') throw new ConfigError('hcm.codec_type', 'must be AUTO');
  const escaped = str(hcm['path_with_escaped_slashes_action'] ?? 'KEEP_UNCHANGED', 'hcm.escaped_slashes');
  if (escaped !== 'REJECT_REQUEST' && escaped !== 'KEEP_UNCHANGED') throw new ConfigError('hcm.escaped', escaped);
  const normalizePath = bool(hcm['normalize_path'], 'normalize_path', false);
  const mergeSlashes = bool(hcm['merge_slashes'], 'merge_slashes', false);
  if (normalizePath !== mergeSlashes || normalizePath !== (escaped === 'REJECT_REQUEST')) {
    throw new ConfigError('hcm', 'normalize_path, merge_slashes and escaped-slash rejection go together');
  }
  const common = obj(hcm['common_http_protocol_options'] ?? {}, 'hcm.common_http_protocol_options');
  onlyKeys(common, 'common_http_protocol_options', ['idle_timeout', 'headers_with_underscores_action']);
  const underscore = str(common['headers_with_underscores_action'] ?? 'ALLOW', 'headers_with_underscores_action');
  const underscores: UnderscoreAction =
    underscore === 'REJECT_REQUEST' ? 'reject' : underscore === 'DROP_HEADER' ? 'drop' : 'allow';

  const mappers = arr(obj(hcm['local_reply_config'], 'local_reply_config')['mappers'], 'mappers').map((m, i) =>
    compileMapper(obj(m, `mappers[${i}]`), `mappers[${i}]`),
  );
  const vhosts = arr(obj(hcm['route_config'], 'route_config')['virtual_hosts'], 'virtual_hosts');
  if (vhosts.length !== 1) throw new ConfigError('virtual_hosts', 'exactly one virtual host');
  const vhost = obj(vhosts[0], 'virtual_hosts[0]');
  onlyKeys(vhost, 'virtual_hosts[0]', ['name', 'domains', 'routes']);
  const domains = arr(vhost['domains'], 'domains');
  if (domains.length !== 1 || domains[0] !== '*') throw new ConfigError('domains', "only '*'");
  const routes = arr(vhost['routes'], 'routes').map((r, i) => compileRoute(obj(r, `routes[${i}]`), `routes[${i}]`));

  const httpFilters = arr(hcm['http_filters'], 'http_filters').map((f, i) => obj(f, `http_filters[${i}]`));
  if (httpFilters.length !== 2 || httpFilters[0]?.['name'] !== AUTHZ_FILTER) {
    throw new ConfigError('http_filters', 'ext_authz then the router');
  }
  const router = obj(httpFilters[1]?.['typed_config'], 'router');
  if (router['@type'] !== ROUTER || router['suppress_envoy_headers'] !== true) {
    throw new ConfigError('router', 'suppress_envoy_headers must be true');
  }
  const ext = obj(httpFilters[0]?.['typed_config'], 'ext_authz');
  if (ext['@type'] !== EXT_AUTHZ) throw new ConfigError('ext_authz', 'unexpected type');
  onlyKeys(ext, 'ext_authz', [
    '@type',
    'transport_api_version',
    'grpc_service',
    'with_request_body',
    'failure_mode_allow',
    'status_on_error',
    'validate_mutations',
    'clear_route_cache',
    'stat_prefix',
    'emit_filter_state_stats',
  ]);
  if (ext['failure_mode_allow'] !== false) throw new ConfigError('ext_authz.failure_mode_allow', 'must be false');
  if (ext['clear_route_cache'] === true) throw new ConfigError('ext_authz.clear_route_cache', 'must be false');
  const body = obj(ext['with_request_body'], 'with_request_body');
  if (body['pack_as_bytes'] !== true) throw new ConfigError('with_request_body.pack_as_bytes', 'must be true');
  const grpcService = obj(ext['grpc_service'], 'grpc_service');
  const authzCluster = str(obj(grpcService['envoy_grpc'], 'envoy_grpc')['cluster_name'], 'cluster_name');

  const clusters = new Map<string, JsonObject>();
  for (const [i, c] of arr(resources['clusters'], 'clusters').entries()) {
    const co = obj(c, `clusters[${i}]`);
    // HTTP/2 options and health checks concern Envoy's connection to authz; grpc-js speaks HTTP/2
    // anyway and a single authz endpoint gets every Check whatever its health (panic routing).
    onlyKeys(co, `clusters[${i}]`, [
      'name',
      'type',
      'connect_timeout',
      'load_assignment',
      'typed_extension_protocol_options',
      'health_checks',
    ]);
    clusters.set(str(co['name'], `clusters[${i}].name`), co);
  }
  const clusterEndpoint = (name: string): { endpoint: Endpoint; connectTimeoutMs: number } => {
    const c = clusters.get(name);
    if (!c) throw new ConfigError('clusters', `no cluster ${name}`);
    const eps = arr(obj(c['load_assignment'], `${name}.load_assignment`)['endpoints'], `${name}.endpoints`);
    const lb = arr(obj(eps[0], `${name}.endpoints[0]`)['lb_endpoints'], `${name}.lb_endpoints`);
    const ep = obj(obj(lb[0], `${name}.lb_endpoints[0]`)['endpoint'], `${name}.endpoint`);
    return {
      endpoint: endpointOf(ep['address'], `${name}.address`),
      connectTimeoutMs: durationMs(c['connect_timeout'], `${name}.connect_timeout`),
    };
  };
  const gatewayClusters = new Set<string>();
  for (const r of arr(vhost['routes'], 'routes')) {
    const action = obj(r, 'route')['route'];
    if (isObject(action)) gatewayClusters.add(str(action['cluster'], 'route.cluster'));
  }
  if (gatewayClusters.size !== 1) throw new ConfigError('routes', 'exactly one upstream cluster');
  const [gatewayCluster] = gatewayClusters;

  return {
    listen,
    connectionBufferBytes: num(listener['per_connection_buffer_limit_bytes'] ?? 1024 * 1024, 'buffer_limit'),
    normalizePath,
    mergeSlashes,
    rejectEscapedSlashes: escaped === 'REJECT_REQUEST',
    underscores,
    idleTimeoutMs: common['idle_timeout'] === undefined ? 3_600_000 : durationMs(common['idle_timeout'], 'idle'),
    requestHeadersTimeoutMs: durationMs(hcm['request_headers_timeout'] ?? '0s', 'request_headers_timeout'),
    requestTimeoutMs: durationMs(hcm['request_timeout'] ?? '0s', 'request_timeout'),
    streamIdleTimeoutMs: durationMs(hcm['stream_idle_timeout'] ?? '300s', 'stream_idle_timeout'),
    // Envoy's defaults: 60 KiB of request headers, 100 headers.
    maxRequestHeadersBytes: 60 * 1024,
    maxRequestHeaders: 100,
    maxConnections,
    mappers,
    routes,
    authz: {
      endpoint: clusterEndpoint(authzCluster).endpoint,
      timeoutMs: durationMs(grpcService['timeout'] ?? '0.2s', 'grpc_service.timeout'),
      maxRequestBytes: num(body['max_request_bytes'], 'max_request_bytes'),
      allowPartialMessage: bool(body['allow_partial_message'], 'allow_partial_message', false),
      statusOnError: num(obj(ext['status_on_error'] ?? { code: 403 }, 'status_on_error')['code'], 'status_on_error'),
      validateMutations: bool(ext['validate_mutations'], 'validate_mutations', false),
    },
    gateway: clusterEndpoint(gatewayCluster as string),
  };
}
