/**
 * The front config without running Envoy: the committed file is the default rendering, every
 * rendering decodes strictly as an Envoy Bootstrap, and the DESIGN §3 settings are all there.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  AUTHZ_OWNED_HEADERS,
  ENVOY_NAMES,
  envoyBootstrap,
  renderEnvoyConfig,
  type EnvoyConfigOptions,
} from '../../src/front/envoy-config.js';
import { decodeBootstrap, loadBootstrapSchema, type BootstrapSchema } from './bootstrap-schema.js';
import { misspell, MISSPELLINGS, readCommittedConfig, VARIANTS } from './fixtures.js';

type Obj = Record<string, unknown>;

function obj(v: unknown, what: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${what}: not an object`);
  return v as Obj;
}

function list(v: unknown, what: string): Obj[] {
  if (!Array.isArray(v)) throw new Error(`${what}: not a list`);
  return v.map((x, i) => obj(x, `${what}[${i}]`));
}

/** The pieces of a rendered config the assertions look at. */
function parts(config: unknown) {
  const root = obj(config, 'config');
  const resources = obj(root['static_resources'], 'static_resources');
  const listener = list(resources['listeners'], 'listeners')[0] ?? {};
  const chain = list(listener['filter_chains'], 'filter_chains')[0] ?? {};
  const hcm = obj(list(chain['filters'], 'filters')[0]?.['typed_config'], 'hcm');
  const httpFilters = list(hcm['http_filters'], 'http_filters');
  const extAuthz = obj(
    httpFilters.find((f) => f['name'] === ENVOY_NAMES.extAuthzFilter)?.['typed_config'],
    'ext_authz',
  );
  const routeConfig = obj(hcm['route_config'], 'route_config');
  const routes = list(list(routeConfig['virtual_hosts'], 'virtual_hosts')[0]?.['routes'], 'routes');
  const clusters = list(resources['clusters'], 'clusters');
  const cluster = (name: string) =>
    obj(
      clusters.find((c) => c['name'] === name),
      name,
    );
  const perRouteAuthz = (route: Obj): Obj | undefined => {
    const per = route['typed_per_filter_config'];
    return per === undefined
      ? undefined
      : obj(obj(per, 'typed_per_filter_config')[ENVOY_NAMES.extAuthzFilter], 'per-route');
  };
  return { root, listener, hcm, httpFilters, extAuthz, routes, cluster, perRouteAuthz };
}

const routeNamed = (routes: Obj[], name: string): Obj =>
  obj(
    routes.find((r) => r['name'] === name),
    name,
  );

describe('envoy/envoy.yaml', () => {
  it('is exactly the default rendering (regenerate: npx vitest run test/envoy/config.test.ts -u)', async () => {
    await expect(renderEnvoyConfig()).toMatchFileSnapshot('../../envoy/envoy.yaml');
  });

  it('renders the same document that envoyBootstrap() builds', () => {
    expect(parse(renderEnvoyConfig())).toEqual(envoyBootstrap());
  });
});

describe('strict decode as envoy.config.bootstrap.v3.Bootstrap (buf image of the npm protos)', () => {
  let schema: BootstrapSchema;
  beforeAll(() => {
    schema = loadBootstrapSchema();
  });

  it('accepts the committed config', () => {
    const msg = decodeBootstrap(schema, parse(readCommittedConfig()));
    expect(msg.$typeName).toBe('envoy.config.bootstrap.v3.Bootstrap');
  });

  it.each(Object.entries(VARIANTS))('accepts the %s variant', (_name, opts: EnvoyConfigOptions) => {
    expect(() => decodeBootstrap(schema, parse(renderEnvoyConfig(opts)))).not.toThrow();
  });

  it.each(MISSPELLINGS.map((m) => [m.where, m] as const))('rejects a misspelling in %s', (_where, m) => {
    const broken = parse(misspell(readCommittedConfig(), m));
    expect(() => decodeBootstrap(schema, broken)).toThrow(`"${m.bad}"`);
  });

  it('rejects an Any whose @type it does not know', () => {
    const broken = readCommittedConfig().replace('router.v3.Router', 'router.v3.Routr');
    expect(() => decodeBootstrap(schema, parse(broken))).toThrow(/Routr/);
  });
});

describe('DESIGN §3 settings are all present in envoy/envoy.yaml', () => {
  let p: ReturnType<typeof parts>;
  beforeAll(() => {
    p = parts(parse(readCommittedConfig()));
  });

  it('path normalization on the connection manager', () => {
    expect(p.hcm).toMatchObject({
      normalize_path: true,
      merge_slashes: true,
      path_with_escaped_slashes_action: 'REJECT_REQUEST',
      use_remote_address: true,
      common_http_protocol_options: { headers_with_underscores_action: 'REJECT_REQUEST' },
    });
  });

  it('ext_authz: gRPC v3 with a 1 s deadline, raw body up to 1 MiB, fail closed with 503', () => {
    expect(p.extAuthz).toMatchObject({
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
      transport_api_version: 'V3',
      grpc_service: { envoy_grpc: { cluster_name: ENVOY_NAMES.authzCluster }, timeout: '1s' },
      with_request_body: { max_request_bytes: 1048576, allow_partial_message: true, pack_as_bytes: true },
      failure_mode_allow: false,
      status_on_error: { code: 503 },
      validate_mutations: true,
      clear_route_cache: false,
      emit_filter_state_stats: true,
      stat_prefix: 'mcpgw',
    });
    // Settings that would weaken the contract must stay unset.
    for (const k of ['failure_mode_allow_header_add', 'filter_enabled', 'filter_enabled_metadata', 'http_service']) {
      expect(p.extAuthz[k], k).toBeUndefined();
    }
  });

  it('ext_authz runs before the router, which is last', () => {
    expect(p.httpFilters.map((f) => f['name'])).toEqual([ENVOY_NAMES.extAuthzFilter, 'envoy.filters.http.router']);
  });

  it('the connection buffer holds a whole max_request_bytes body', () => {
    expect(p.listener['per_connection_buffer_limit_bytes']).toBeGreaterThanOrEqual(1048576);
    const big = parts(envoyBootstrap({ maxRequestBytes: 8 * 1048576 }));
    expect(big.listener['per_connection_buffer_limit_bytes']).toBeGreaterThan(8 * 1048576);
  });

  it('the authz cluster speaks HTTP/2 and is health-checked over gRPC', () => {
    expect(p.cluster(ENVOY_NAMES.authzCluster)).toMatchObject({
      typed_extension_protocol_options: {
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
          '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
          explicit_http_config: { http2_protocol_options: {} },
        },
      },
      health_checks: [{ grpc_health_check: { service_name: 'envoy.service.auth.v3.Authorization' } }],
    });
  });

  it('ext_authz is disabled on /healthz and /.well-known/ only, among routes that reach the gateway', () => {
    expect(routeNamed(p.routes, 'healthz')['match']).toMatchObject({ path: '/healthz' });
    expect(routeNamed(p.routes, 'well-known')['match']).toMatchObject({ prefix: '/.well-known/' });
    const toGateway = p.routes.filter((r) => r['route'] !== undefined);
    const unchecked = toGateway.filter((r) => p.perRouteAuthz(r)?.['disabled'] === true).map((r) => r['name']);
    expect(unchecked).toEqual(['healthz', 'well-known']);
    for (const name of unchecked) {
      expect(routeNamed(p.routes, String(name))['request_headers_to_remove']).toEqual([...AUTHZ_OWNED_HEADERS]);
    }
    // Routes Envoy answers itself skip the Check: they never reach anything.
    for (const r of p.routes.filter((x) => x['route'] === undefined)) {
      expect(r['direct_response'], String(r['name'])).toBeDefined();
    }
  });

  it('/admin/v1 is checked without its body', () => {
    const admin = p.routes.filter((r) => String(r['name']).startsWith('admin'));
    expect(admin.map((r) => r['match'])).toEqual([{ path: '/admin/v1' }, { prefix: '/admin/v1/' }]);
    for (const r of admin) {
      expect(p.perRouteAuthz(r)).toEqual({
        '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute',
        check_settings: { disable_request_body_buffering: true },
      });
    }
  });

  it('/mcp takes POST, GET and DELETE with SSE-friendly timeouts; anything else is a 404', () => {
    const mcp = routeNamed(p.routes, 'mcp');
    expect(mcp['match']).toMatchObject({ path: '/mcp' });
    expect(JSON.stringify(mcp['match'])).toContain('^(GET|POST|DELETE)$');
    expect(mcp['route']).toMatchObject({ cluster: ENVOY_NAMES.gatewayCluster, timeout: '0s', idle_timeout: '3600s' });
    expect(p.perRouteAuthz(mcp)).toBeUndefined();
    expect(p.hcm['stream_idle_timeout']).toBe('300s');
    expect(p.routes.at(-1)).toMatchObject({ match: { prefix: '/' }, direct_response: { status: 404 } });
  });

  it('local replies get JSON-RPC bodies, except ext_authz denials that carry their own', () => {
    const mappers = list(obj(p.hcm['local_reply_config'], 'local_reply_config')['mappers'], 'mappers');
    const first = mappers[0] ?? {};
    expect(JSON.stringify(first['filter'])).toContain("response.code_details == 'ext_authz_denied'");
    expect(first['body_format_override']).toBeUndefined();
    expect(first['body']).toBeUndefined();
    expect(first['status_code']).toBeUndefined();

    const byStatus = new Map<number, unknown>();
    for (const m of mappers) {
      const f = obj(m['filter'], 'filter');
      const cmp = f['status_code_filter'] as { comparison?: { op?: string; value?: { default_value?: number } } };
      if (cmp?.comparison?.op === 'EQ')
        byStatus.set(cmp.comparison.value?.default_value ?? 0, m['body_format_override']);
    }
    for (const status of [400, 401, 403, 404, 413, 429, 500, 503, 504]) {
      const fmt = obj(byStatus.get(status), `mapper for ${status}`);
      expect(fmt['content_type']).toBe('application/json');
      const body = JSON.parse(String(obj(fmt['text_format_source'], 'text_format_source')['inline_string'])) as unknown;
      expect(body).toMatchObject({
        jsonrpc: '2.0',
        id: null,
        error: { code: expect.any(Number), message: expect.any(String) },
      });
    }
    const last = mappers.at(-1) ?? {};
    expect(last['filter']).toMatchObject({ status_code_filter: { comparison: { op: 'GE' } } });
  });

  it('the access log is JSON on stdout and names no credential header', () => {
    const log = list(p.hcm['access_log'], 'access_log');
    expect(log).toHaveLength(1);
    expect(log[0]?.['name']).toBe('envoy.access_loggers.stdout');
    const text = JSON.stringify(log).toLowerCase();
    for (const h of ['authorization', 'cookie', 'mcp-session-id', 'x-mcpgw-request-mac']) expect(text).not.toContain(h);
  });

  it('no admin listener unless asked, and then only on 127.0.0.1; no run-time admin layer', () => {
    expect(p.root['admin']).toBeUndefined();
    expect(parts(envoyBootstrap({ adminPort: 9901 })).root['admin']).toEqual({
      address: { socket_address: { address: '127.0.0.1', port_value: 9901 } },
    });
    expect(JSON.stringify(p.root['layered_runtime'])).not.toContain('admin_layer');
  });

  it('defaults: agents on 127.0.0.1:8000, authz 127.0.0.1:9191, gateway 127.0.0.1:3000', () => {
    expect(p.listener['address']).toEqual({ socket_address: { address: '127.0.0.1', port_value: 8000 } });
    const endpoint = (name: string) => JSON.stringify(p.cluster(name)['load_assignment']);
    expect(endpoint(ENVOY_NAMES.authzCluster)).toContain('{"address":"127.0.0.1","port_value":9191}');
    expect(endpoint(ENVOY_NAMES.gatewayCluster)).toContain('{"address":"127.0.0.1","port_value":3000}');
    expect(p.cluster(ENVOY_NAMES.authzCluster)['type']).toBe('STATIC');
  });

  it('a service name instead of an IP is resolved with DNS', () => {
    const named = parts(envoyBootstrap({ authz: { host: 'mcpgw-authz', port: 9191 } }));
    expect(named.cluster(ENVOY_NAMES.authzCluster)['type']).toBe('STRICT_DNS');
    expect(named.cluster(ENVOY_NAMES.gatewayCluster)['type']).toBe('STATIC');
  });
});

describe('renderEnvoyConfig options', () => {
  it('carries the options into the document', () => {
    const p = parts(
      envoyBootstrap({
        listen: { host: '0.0.0.0', port: 8080 },
        authz: { path: '/run/mcpgw/authz.sock' },
        maxRequestBytes: 2048,
        authzTimeoutMs: 750,
      }),
    );
    expect(p.listener['address']).toEqual({ socket_address: { address: '0.0.0.0', port_value: 8080 } });
    expect(JSON.stringify(p.cluster(ENVOY_NAMES.authzCluster))).toContain('{"pipe":{"path":"/run/mcpgw/authz.sock"}}');
    expect(p.extAuthz).toMatchObject({
      grpc_service: { timeout: '0.75s' },
      with_request_body: { max_request_bytes: 2048 },
    });
  });

  it.each([
    ['a port out of range', { listen: { host: '127.0.0.1', port: 70000 } }],
    ['a relative socket path', { gateway: { path: 'run/gw.sock' } }],
    ['an empty body limit', { maxRequestBytes: 0 }],
    ['a fractional timeout', { authzTimeoutMs: 0.5 }],
    ['a negative admin port', { adminPort: -1 }],
    ['a listener on a host name', { listen: { host: 'localhost', port: 8000 } }],
  ] as [string, EnvoyConfigOptions][])('refuses %s', (_what, opts) => {
    expect(() => renderEnvoyConfig(opts)).toThrow(RangeError);
  });
});
