/**
 * Reading CheckResponses, local replies and the config compiler, as plain functions. Expected
 * values are what Envoy 1.40 did with the same input (see the differential suite).
 */
import { describe, expect, it } from 'vitest';
import { envoyBootstrap, localReplyBody } from '../../src/front/envoy-config.js';
import {
  applyRequestMutation,
  applyResponseOps,
  readCheckResponse,
  type MutableRequest,
} from '../../src/front/builtin/authz-response.js';
import { compileFrontConfig } from '../../src/front/builtin/config.js';
import { buildLocalReply, nodeCanWrite, rawResponse, reasonPhrase } from '../../src/front/builtin/responses.js';
import { HeaderValueOption_HeaderAppendAction as Action } from '../../src/gen/envoy/config/core/v3/base.js';
import { CheckResponse } from '../../src/gen/envoy/service/auth/v3/external_auth.js';

const cfg = compileFrontConfig(envoyBootstrap());
const opt = (key: string, value: string, appendAction = Action.APPEND_IF_EXISTS_OR_ADD, append?: boolean) => ({
  header: { key, value },
  appendAction,
  ...(append === undefined ? {} : { append }),
});

describe('compileFrontConfig', () => {
  it('reads the routes, timeouts and ext_authz settings of our bootstrap', () => {
    expect(cfg.listen).toEqual({ host: '127.0.0.1', port: 8000 });
    expect(cfg.authz).toMatchObject({
      endpoint: { host: '127.0.0.1', port: 9191 },
      timeoutMs: 1000,
      maxRequestBytes: 1024 * 1024,
      allowPartialMessage: true,
      statusOnError: 503,
      validateMutations: true,
    });
    expect(cfg.gateway).toEqual({ endpoint: { host: '127.0.0.1', port: 3000 }, connectTimeoutMs: 1000 });
    expect(cfg.routes.map((r) => [r.name, r.authz, r.directStatus, r.timeoutMs])).toEqual([
      ['healthz', 'off', null, 5000],
      ['well-known', 'off', null, 5000],
      ['admin', 'headers', null, 60000],
      ['admin-tree', 'headers', null, 60000],
      ['mcp', 'body', null, 0],
      ['mcp-method', 'off', 405, 15000],
      ['not-found', 'off', 404, 15000],
    ]);
    expect(cfg.routes[4]?.idleTimeoutMs).toBe(3_600_000);
    expect(cfg).toMatchObject({
      rejectEscapedSlashes: true,
      normalizePath: true,
      mergeSlashes: true,
      underscores: 'reject',
      requestHeadersTimeoutMs: 10_000,
      requestTimeoutMs: 60_000,
      streamIdleTimeoutMs: 300_000,
      idleTimeoutMs: 3_600_000,
      maxConnections: 10_000,
    });
  });

  it('follows the options (Unix sockets, larger bodies)', () => {
    const c = compileFrontConfig(
      envoyBootstrap({ gateway: { path: '/run/gw.sock' }, maxRequestBytes: 4 * 1024 * 1024, authzTimeoutMs: 2500 }),
    );
    expect(c.gateway.endpoint).toEqual({ path: '/run/gw.sock' });
    expect(c.authz.maxRequestBytes).toBe(4 * 1024 * 1024);
    expect(c.authz.timeoutMs).toBe(2500);
  });

  it('refuses a bootstrap with a setting the front does not implement', () => {
    type Hcm = Record<string, unknown> & { route_config: { virtual_hosts: { routes: Record<string, unknown>[] }[] } };
    const hcmOf = (b: ReturnType<typeof envoyBootstrap>): Hcm => {
      const resources = b['static_resources'] as {
        listeners: { filter_chains: { filters: { typed_config: Hcm }[] }[] }[];
      };
      const hcm = resources.listeners[0]?.filter_chains[0]?.filters[0]?.typed_config;
      if (!hcm) throw new Error('no HCM in the bootstrap');
      return hcm;
    };
    const withVia = envoyBootstrap();
    hcmOf(withVia)['via'] = 'mcpgw';
    expect(() => compileFrontConfig(withVia)).toThrow(/hcm\.via: unknown setting/);
    const withRouteHeaders = envoyBootstrap();
    const route = hcmOf(withRouteHeaders).route_config.virtual_hosts[0]?.routes[0];
    if (!route) throw new Error('no route');
    route['request_headers_to_add'] = [];
    expect(() => compileFrontConfig(withRouteHeaders)).toThrow(/request_headers_to_add: unknown setting/);
  });
});

describe('readCheckResponse', () => {
  it('status.code alone decides', () => {
    expect(
      readCheckResponse(CheckResponse.fromPartial({ status: { code: 0 }, deniedResponse: { body: 'x' } }), true).kind,
    ).toBe('allow');
    expect(readCheckResponse(CheckResponse.fromPartial({ status: { code: 7 } }), true)).toEqual({
      kind: 'deny',
      status: 403,
      headers: [],
      body: '',
    });
  });

  it('denied headers: added in order whatever the action; legacy append dropped; status cut to 16 bits', () => {
    const d = readCheckResponse(
      CheckResponse.fromPartial({
        status: { code: 7 },
        deniedResponse: {
          status: { code: 65536 + 401 },
          headers: [
            opt('X-A', '1', Action.ADD_IF_ABSENT),
            opt('x-a', '2', Action.OVERWRITE_IF_EXISTS_OR_ADD),
            opt('x-a', '3', 0, true),
          ],
        },
      }),
      true,
    );
    expect(d).toEqual({ kind: 'deny', status: 401, headers: ['x-a', '1', 'x-a', '2'], body: '' });
  });

  it('invalid names or values make a 500 (validate_mutations), removals are not checked', () => {
    const ok = (headers: ReturnType<typeof opt>[], remove: string[] = []) =>
      readCheckResponse(
        CheckResponse.fromPartial({ status: { code: 0 }, okResponse: { headers, headersToRemove: remove } }),
        true,
      ).kind;
    expect(ok([opt('bad key', 'v')])).toBe('invalid');
    expect(ok([opt('x', 'a\r\nb')])).toBe('invalid');
    expect(ok([opt(':path', '/x')])).toBe('allow');
    expect(ok([], ['bad key'])).toBe('allow');
  });

  it('request mutations: set moves the header to the end, append only extends, removal last', () => {
    const d = readCheckResponse(
      CheckResponse.fromPartial({
        status: { code: 0 },
        okResponse: {
          headers: [
            opt('x-a', '2'),
            opt('x-e', '2', 0, true),
            opt('x-new', '1', 0, true),
            opt('host', 'h2'),
            opt('x-gone', 'v'),
          ],
          headersToRemove: ['X-GONE', ':path', 'host'],
          queryParametersToSet: [{ key: 'q', value: '1' }],
          queryParametersToRemove: ['drop'],
        },
      }),
      true,
    );
    if (d.kind !== 'allow' || !d.mutation) throw new Error('expected an allow with a mutation');
    const req: MutableRequest = {
      method: 'GET',
      authority: 'h',
      path: '/mcp?drop=1&keep=2',
      headers: ['x-a', '1', 'x-e', '1', 'x-b', '1'],
    };
    applyRequestMutation(req, d.mutation);
    expect(req).toEqual({
      method: 'GET',
      authority: 'h2',
      path: '/mcp?keep=2&q=1',
      headers: ['x-e', '1,2', 'x-b', '1', 'x-a', '2'],
    });
  });

  it('response headers: add, then set, then add-if-absent, then overwrite-if-exists', () => {
    const d = readCheckResponse(
      CheckResponse.fromPartial({
        status: { code: 0 },
        okResponse: {
          responseHeadersToAdd: [
            opt('x-resp', '1', Action.OVERWRITE_IF_EXISTS_OR_ADD),
            opt('content-type', 'text/x', Action.OVERWRITE_IF_EXISTS_OR_ADD),
            opt('x-r2', 'a'),
            opt('date', 'd', Action.ADD_IF_ABSENT),
            opt('x-r3', 'z', Action.OVERWRITE_IF_EXISTS),
            opt('x-r4', 'z', Action.OVERWRITE_IF_EXISTS, true),
          ],
        },
      }),
      true,
    );
    if (d.kind !== 'allow' || !d.mutation?.response) throw new Error('expected response headers');
    const list = ['content-type', 'application/json', 'date', 'now'];
    applyResponseOps(list, d.mutation.response);
    expect(list).toEqual(['date', 'now', 'x-r2', 'a', 'x-r4', 'z', 'x-resp', '1', 'content-type', 'text/x']);
  });
});

describe('buildLocalReply', () => {
  const json = (status: number) => {
    const m = cfg.mappers.find((x) => x.filter.kind === 'status' && x.filter.op === 'EQ' && x.filter.status === status);
    return m?.body?.text;
  };

  it('an Envoy-made reply gets the JSON-RPC body of its status, in Envoy header order', () => {
    const r = buildLocalReply(cfg.mappers, 'route_not_found', 404, [], '', false);
    expect(r.body.toString()).toBe(localReplyBody(-32600, 'Not found'));
    expect(json(404)).toBe(localReplyBody(-32600, 'Not found'));
    expect(r.headers.filter((_, i) => i % 2 === 0)).toEqual(['content-length', 'content-type', 'date', 'server']);
  });

  it('an authz denial with a content type is kept as authz wrote it', () => {
    const r = buildLocalReply(
      cfg.mappers,
      'ext_authz_denied',
      403,
      ['content-type', 'application/json'],
      '{"x":1}',
      false,
    );
    expect(r.body.toString()).toBe('{"x":1}');
    expect(r.headers.filter((_, i) => i % 2 === 0)).toEqual(['content-type', 'content-length', 'date', 'server']);
  });

  it('an authz error is "Authorization service unavailable"', () => {
    const r = buildLocalReply(cfg.mappers, 'ext_authz_error', 503, [], '', false);
    expect(r.body.toString()).toBe(localReplyBody(-32603, 'Authorization service unavailable'));
  });

  it('an empty body loses its content type and ends with content-length: 0', () => {
    const r = buildLocalReply(
      cfg.mappers,
      'ext_authz_denied',
      302,
      ['content-type', 'text/plain', 'location', '/x'],
      '',
      true,
    );
    expect(r.headers.filter((_, i) => i % 2 === 0)).toEqual([
      'location',
      'date',
      'server',
      'connection',
      'content-length',
    ]);
  });

  it('a status below 400 without a mapper keeps its body as text/plain', () => {
    const r = buildLocalReply(cfg.mappers, 'ext_authz_denied', 200, [], 'hello', false);
    expect(r.headers.slice(0, 4)).toEqual(['content-length', '5', 'content-type', 'text/plain']);
  });

  it('odd statuses are written raw, with Envoy reason phrases', () => {
    expect(reasonPhrase(418)).toBe('Unknown');
    expect(reasonPhrase(599)).toBe('Last Unassigned Server Error Code');
    expect(nodeCanWrite(99, 5)).toBe(false);
    expect(nodeCanWrite(204, 5)).toBe(false);
    expect(nodeCanWrite(204, 0)).toBe(true);
    const raw = rawResponse({ status: 99, headers: ['content-length', '2'], body: Buffer.from('hi') }, false);
    expect(raw.toString()).toBe('HTTP/1.1 99 Unknown\r\ncontent-length: 2\r\n\r\nhi');
  });
});
