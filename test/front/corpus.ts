/**
 * The request corpus both fronts get, and the fake authz verdicts it drives (by `x-verdict`).
 * Each case is raw bytes so that what reaches a front is exactly what a client could send.
 */
import { HeaderValueOption_HeaderAppendAction as Action } from '../../src/gen/envoy/config/core/v3/base.js';
import { CheckResponse, type CheckRequest } from '../../src/gen/envoy/service/auth/v3/external_auth.js';
import { rawRequest, type WireOptions } from './wire.js';

export const MAX_BODY = 1024 * 1024;

export interface Case {
  name: string;
  request: Buffer;
  opts?: WireOptions;
  /** What the case is about, checked on Envoy's answer so a corpus entry cannot silently test nothing. */
  expectStatus: number;
}

const header = (key: string, value: string, appendAction = Action.OVERWRITE_IF_EXISTS_OR_ADD) => ({
  header: { key, value },
  appendAction,
});

function deny(status: number, body: string, headers: Record<string, string> = {}): CheckResponse {
  return CheckResponse.fromPartial({
    status: { code: 7 },
    deniedResponse: {
      status: { code: status },
      body,
      headers: Object.entries(headers).map(([k, v]) => header(k, v)),
    },
  });
}

const rpcError = (code: number, message: string): string =>
  JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message } });

const TOOL_PENDING = JSON.stringify({
  jsonrpc: '2.0',
  id: 7,
  result: { isError: true, content: [{ type: 'text', text: 'This call needs a human approval (ap-7F3K9Q2M1X).' }] },
});

/** As src/authz/check-response.ts answers an allowed call. */
const ALLOW = CheckResponse.fromPartial({
  status: { code: 0 },
  okResponse: {
    headers: [
      header('authorization', 'Bearer internal.jwt'),
      header('x-mcpgw-user', 'alice'),
      header('x-mcpgw-decision-id', 'dec-1'),
      header('x-mcpgw-request-mac', 'mac-1'),
    ],
    headersToRemove: ['x-mcpgw-rule'],
    responseHeadersToAdd: [header('x-mcpgw-decision-id', 'dec-1')],
  },
  dynamicMetadata: { decision_id: 'dec-1', decision: 'allow' },
});

/** Every way a CheckResponse can change the request and the response, at once. */
const MUTATE = CheckResponse.fromPartial({
  status: { code: 0 },
  okResponse: {
    headers: [
      header('x-a', '2', Action.APPEND_IF_EXISTS_OR_ADD),
      header('x-b', '2', Action.ADD_IF_ABSENT),
      header('x-new-b', '2', Action.ADD_IF_ABSENT),
      header('x-c', '2', Action.OVERWRITE_IF_EXISTS_OR_ADD),
      header('x-d', '2', Action.OVERWRITE_IF_EXISTS),
      header('x-new-d', '2', Action.OVERWRITE_IF_EXISTS),
      { header: { key: 'x-e', value: '2' }, append: true },
      { header: { key: 'x-new-e', value: '2' }, append: true },
      { header: { key: 'x-l', value: '2' }, append: false },
      header('X-Upper', 'u'),
      header('x-empty', ''),
      header('x-utf8', 'café ✓'),
      header('x-gone', 'added'),
      header('host', 'rewritten.example'),
    ],
    headersToRemove: ['x-gone', 'X-F', 'host', ':path', 'x-request-id', 'content-length', 'nothere', 'bad key'],
    responseHeadersToAdd: [
      header('x-resp', '1'),
      header('content-type', 'text/x'),
      header('x-r2', 'a', Action.APPEND_IF_EXISTS_OR_ADD),
      header('x-r2', 'b', Action.APPEND_IF_EXISTS_OR_ADD),
      header('date', 'never', Action.ADD_IF_ABSENT),
      header('x-r3', 'z', Action.OVERWRITE_IF_EXISTS),
      { header: { key: 'x-r4', value: 'z' }, append: true },
    ],
    queryParametersToSet: [{ key: 'q', value: '1' }],
    queryParametersToRemove: ['drop'],
  },
});

/** The fake authz: behaves like the real one on partial bodies, otherwise obeys `x-verdict`. */
export async function verdict(req: CheckRequest): Promise<CheckResponse> {
  const http = req.attributes?.request?.http;
  if (http?.headers['x-envoy-auth-partial-body'] === 'true') {
    return deny(413, rpcError(-32600, 'request body too large'), { 'content-type': 'application/json' });
  }
  switch (http?.headers['x-verdict'] ?? 'allow') {
    case 'deny-403':
      return deny(403, rpcError(-32001, 'denied by rule "no writes"'), {
        'content-type': 'application/json',
        'x-mcpgw-rule': 'no writes',
        'x-mcpgw-decision-id': 'dec-2',
      });
    case 'deny-401':
      return deny(401, rpcError(-32001, 'missing credential'), {
        'content-type': 'application/json',
        'www-authenticate': 'Bearer resource_metadata="http://127.0.0.1/.well-known/oauth-protected-resource"',
      });
    case 'pending-200':
      return deny(200, TOOL_PENDING, { 'content-type': 'application/json', 'x-mcpgw-decision': 'pending' });
    case 'deny-503':
      return deny(503, rpcError(-32001, 'policy store unavailable'), { 'content-type': 'application/json' });
    case 'deny-bare':
      return deny(403, '');
    case 'deny-no-content-type':
      return deny(401, 'denied, in plain words');
    case 'deny-empty-with-content-type':
      return deny(302, '', { 'content-type': 'text/plain', location: '/elsewhere' });
    case 'deny-418':
      return deny(418, 'teapot');
    case 'deny-299':
      return deny(299, 'odd but allowed');
    case 'deny-unset':
      return CheckResponse.fromPartial({ status: { code: 16 } });
    case 'deny-headers':
      return CheckResponse.fromPartial({
        status: { code: 7 },
        deniedResponse: {
          status: { code: 401 },
          body: '{"a":1}',
          headers: [
            { header: { key: 'x-up', value: 'v' }, append: true },
            header('X-Up2', 'v'),
            header('x-a', '1', Action.ADD_IF_ABSENT),
            header('x-a', '2', Action.ADD_IF_ABSENT),
            header('x-c', '1', Action.APPEND_IF_EXISTS_OR_ADD),
            header('x-c', '2'),
            { header: { key: 'x-c', value: '3' }, append: true },
            header('x-e', ''),
            header('content-length', '99'),
            header('date', 'yesterday'),
            header('server', 'me'),
            header('connection', 'close'),
          ],
        },
      });
    case 'ok-ignores-denied':
      return CheckResponse.fromPartial({
        status: { code: 0 },
        deniedResponse: { status: { code: 401 }, body: 'ignored' },
      });
    case 'invalid-header':
      return CheckResponse.fromPartial({ status: { code: 0 }, okResponse: { headers: [header('bad key', 'v')] } });
    case 'invalid-value':
      return CheckResponse.fromPartial({ status: { code: 0 }, okResponse: { headers: [header('x-v', 'a\nb')] } });
    case 'invalid-denied-header':
      return CheckResponse.fromPartial({
        status: { code: 7 },
        deniedResponse: { headers: [header('x-v', 'v\u0000')], body: '{}' },
      });
    case 'mutate':
      return MUTATE;
    case 'grpc-error':
      throw new Error('fake internal error');
    case 'slow':
      await new Promise((resolve) => setTimeout(resolve, 1300));
      return ALLOW;
    default:
      return ALLOW;
  }
}

const H = 'Host: mcpgw.test:8000';
const json = '{"jsonrpc":"2.0","id":1,"method":"ping"}';

function post(path: string, headers: string[], body: Buffer | string = json): Buffer {
  const len = typeof body === 'string' ? Buffer.byteLength(body, 'latin1') : body.length;
  return rawRequest([`POST ${path} HTTP/1.1`, H, ...headers, `Content-Length: ${len}`], body);
}

function get(path: string, headers: string[] = [], method = 'GET'): Buffer {
  return rawRequest([`${method} ${path} HTTP/1.1`, H, ...headers]);
}

const verdictCase = (v: string, expectStatus: number): Case => ({
  name: `verdict ${v}`,
  request: post('/mcp', [`x-verdict: ${v}`, 'content-type: application/json']),
  expectStatus,
});

/** Headers an edge Envoy treats specially, all at once (it keeps some and drops others). */
const ENVOY_CONTROL_HEADERS = [
  'x-envoy-attempt-count',
  'x-envoy-decorator-operation',
  'x-envoy-downstream-service-cluster',
  'x-envoy-downstream-service-node',
  'x-envoy-external-address',
  'x-envoy-force-trace',
  'x-envoy-hedge-on-per-try-timeout',
  'x-envoy-internal',
  'x-envoy-ip-tags',
  'x-envoy-max-retries',
  'x-envoy-original-host',
  'x-envoy-original-method',
  'x-envoy-original-path',
  'x-envoy-original-url',
  'x-envoy-retriable-header-names',
  'x-envoy-retriable-status-codes',
  'x-envoy-retry-grpc-on',
  'x-envoy-retry-on',
  'x-envoy-upstream-alt-stat-name',
  'x-envoy-upstream-rq-per-try-timeout-ms',
  'x-envoy-upstream-rq-timeout-alt-response',
  'x-envoy-upstream-rq-timeout-ms',
  'x-envoy-upstream-stream-duration-ms',
  'x-envoy-expected-rq-timeout-ms',
  'x-envoy-upstream-service-time',
  'x-envoy-auth-partial-body',
  'x-envoy-foo',
  'x-forwarded-client-cert',
  'x-forwarded-host',
  'x-forwarded-port',
  'forwarded',
  'via',
  'keep-alive',
  'proxy-connection',
  'upgrade',
  'te',
  'proxy-authorization',
  'traceparent',
];

export const CORPUS: Case[] = [
  {
    name: 'allowed POST /mcp with a client credential',
    request: post('/mcp', [
      'authorization: Bearer mcpgw_sk_client',
      'content-type: application/json',
      'accept: application/json, text/event-stream',
    ]),
    expectStatus: 200,
  },
  verdictCase('deny-403', 403),
  verdictCase('deny-401', 401),
  verdictCase('pending-200', 200),
  verdictCase('deny-503', 503),
  verdictCase('deny-bare', 403),
  verdictCase('deny-no-content-type', 401),
  verdictCase('deny-empty-with-content-type', 302),
  verdictCase('deny-418', 418),
  verdictCase('deny-299', 299),
  verdictCase('deny-unset', 403),
  verdictCase('deny-headers', 401),
  verdictCase('ok-ignores-denied', 200),
  verdictCase('invalid-header', 500),
  verdictCase('invalid-value', 500),
  verdictCase('invalid-denied-header', 500),
  verdictCase('grpc-error', 503),
  { name: 'authz past the 1 s deadline', request: post('/mcp', ['x-verdict: slow']), expectStatus: 503 },
  {
    name: 'every CheckResponse mutation',
    request: post('/mcp?keep=1&drop=2', [
      'x-verdict: mutate',
      'x-a: 1',
      'x-b: 1',
      'x-c: 1',
      'x-d: 1',
      'x-e: 1',
      'x-f: 1',
      'x-l: 1',
    ]),
    expectStatus: 200,
  },
  {
    name: 'body of exactly max_request_bytes',
    request: post('/mcp', [], Buffer.alloc(MAX_BODY, 0x61)),
    expectStatus: 200,
  },
  {
    name: 'oversized body (max_request_bytes + 1), client claims it is complete',
    request: post('/mcp', ['x-envoy-auth-partial-body: false'], Buffer.alloc(MAX_BODY + 1, 0x61)),
    expectStatus: 413,
  },
  {
    name: 'non-UTF-8 body bytes',
    request: post('/mcp', ['content-type: application/json'], Buffer.from([0x7b, 0xff, 0xfe, 0x22, 0xc3, 0x28, 0x7d])),
    expectStatus: 200,
  },
  {
    name: 'non-UTF-8 header bytes',
    request: rawRequest(['GET /mcp HTTP/1.1', H, 'x-bin: a\xff\xc3\xa9\x80b\xe2\x82', 'x-ok: caf\xc3\xa9']),
    expectStatus: 200,
  },
  {
    name: 'chunked body',
    request: rawRequest(['POST /mcp HTTP/1.1', H, 'Transfer-Encoding: chunked'], '5\r\n{"a":\r\n3\r\n12}\r\n0\r\n\r\n'),
    expectStatus: 200,
  },
  {
    name: 'chunked empty body',
    request: rawRequest(['POST /mcp HTTP/1.1', H, 'Transfer-Encoding: chunked'], '0\r\n\r\n'),
    expectStatus: 200,
  },
  {
    name: 'chunked body with trailers',
    request: rawRequest(
      ['POST /mcp HTTP/1.1', H, 'Transfer-Encoding: chunked'],
      '2\r\n{}\r\n0\r\nx-trailer: t\r\n\r\n',
    ),
    expectStatus: 200,
  },
  {
    name: 'GET with a body',
    request: rawRequest(['GET /mcp HTTP/1.1', H, 'Content-Length: 2'], '{}'),
    expectStatus: 200,
  },
  { name: 'POST without a body', request: rawRequest(['POST /mcp HTTP/1.1', H]), expectStatus: 200 },
  {
    name: 'POST with Content-Length: 0',
    request: rawRequest(['POST /mcp HTTP/1.1', H, 'Content-Length: 0']),
    expectStatus: 200,
  },
  {
    name: 'Expect: 100-continue',
    request: post('/mcp', ['Expect: 100-continue']),
    expectStatus: 200,
  },
  {
    name: 'Expect: 100-continue on a wrong method',
    request: rawRequest(['PUT /mcp HTTP/1.1', H, 'Expect: 100-continue', 'Content-Length: 2'], '{}'),
    expectStatus: 405,
  },
  {
    name: 'Expect: 100-continue, denied',
    request: post('/mcp', ['Expect: 100-continue', 'x-verdict: deny-403']),
    expectStatus: 403,
  },
  { name: 'Expect: 100-continue, bad path', request: post('/mcp%2F', ['Expect: 100-continue']), expectStatus: 400 },
  { name: 'Expect: something else', request: get('/mcp', ['Expect: something-else']), expectStatus: 417 },
  { name: 'escaped slash %2F', request: post('/mcp%2Fx', []), expectStatus: 400 },
  { name: 'escaped backslash %5c, no body', request: get('/mcp%5cx'), expectStatus: 400 },
  { name: 'escaped slash in /admin', request: get('/admin%2fv1/users'), expectStatus: 400 },
  { name: '//mcp', request: post('//mcp', []), expectStatus: 200 },
  { name: '/x/../mcp', request: post('/x/../mcp', []), expectStatus: 200 },
  { name: '/./mcp', request: post('/./mcp', []), expectStatus: 200 },
  { name: '/%6dcp (an unreserved escape)', request: post('/%6dcp', []), expectStatus: 200 },
  { name: '/mcp/ (trailing slash is another path)', request: post('/mcp/', []), expectStatus: 404 },
  { name: '/mcp?x=%2F (query untouched)', request: post('/mcp?x=%2F&y=/../', []), expectStatus: 200 },
  { name: 'unknown path GET /metrics', request: get('/metrics'), expectStatus: 404 },
  { name: 'unknown path with a body', request: post('/nope', []), expectStatus: 404 },
  {
    name: 'wrong method PUT /mcp',
    request: rawRequest(['PUT /mcp HTTP/1.1', H, 'Content-Length: 2'], '{}'),
    expectStatus: 405,
  },
  { name: 'wrong method HEAD /mcp', request: get('/mcp', [], 'HEAD'), opts: { head: true }, expectStatus: 405 },
  { name: 'wrong method PATCH /mcp, no body', request: get('/mcp', [], 'PATCH'), expectStatus: 405 },
  {
    name: '/healthz with spoofed credentials',
    request: get('/healthz', [
      'authorization: Bearer x',
      'x-mcpgw-user: root',
      'x-mcpgw-decision-id: d',
      'x-mcpgw-request-mac: m',
      'x-mcpgw-other: o',
    ]),
    expectStatus: 200,
  },
  { name: 'HEAD /healthz', request: get('/healthz', [], 'HEAD'), opts: { head: true }, expectStatus: 200 },
  { name: 'POST /healthz', request: post('/healthz', []), expectStatus: 404 },
  {
    name: '/.well-known/jwks.json',
    request: get('/.well-known/jwks.json', ['authorization: Bearer x']),
    expectStatus: 200,
  },
  {
    name: 'OPTIONS /.well-known/',
    request: get('/.well-known/oauth-protected-resource', [], 'OPTIONS'),
    expectStatus: 200,
  },
  {
    name: 'admin PUT with a secret body (no buffering)',
    request: rawRequest(
      [
        'PUT /admin/v1/secrets/github/GITHUB_TOKEN HTTP/1.1',
        H,
        'authorization: Bearer mcpgw_ak_x',
        'content-type: application/json',
        'x-envoy-auth-partial-body: true',
        'Content-Length: 30',
      ],
      '{"value":"s3cret-token-value"}',
    ),
    expectStatus: 200,
  },
  { name: 'admin GET', request: get('/admin/v1', ['authorization: Bearer mcpgw_ak_x']), expectStatus: 200 },
  {
    name: 'admin POST denied',
    request: post('/admin/v1/users', ['x-verdict: deny-403']),
    expectStatus: 403,
  },
  {
    name: 'SSE GET /mcp',
    request: get('/mcp', ['accept: text/event-stream', 'mcp-session-id: s-1']),
    expectStatus: 200,
  },
  { name: 'DELETE /mcp', request: get('/mcp', ['mcp-session-id: s-1'], 'DELETE'), expectStatus: 200 },
  {
    name: 'DELETE /mcp with a body',
    request: rawRequest(['DELETE /mcp HTTP/1.1', H, 'Content-Length: 3'], 'abc'),
    expectStatus: 200,
  },
  { name: 'header name with an underscore', request: post('/mcp', ['x_mcpgw_user: root']), expectStatus: 400 },
  {
    name: 'x-mcpgw-* spoofing on /mcp',
    request: post('/mcp', [
      'x-mcpgw-user: root',
      'x-mcpgw-decision-id: forged',
      'x-mcpgw-request-mac: forged',
      'x-mcpgw-rule: forged',
    ]),
    expectStatus: 200,
  },
  {
    name: 'repeated headers, cookies, client forwarding headers',
    request: get('/mcp', [
      'X-Dup: a',
      'x-dup: b',
      'Cookie: a=1',
      'Cookie: b=2',
      'x-forwarded-for: 1.2.3.4',
      'X-Forwarded-For: 5.6.7.8',
      'x-forwarded-proto: https',
      'x-request-id: mine',
      'x-empty:',
      'x-spaces:   padded   ',
      'User-Agent: probe/1.0',
    ]),
    expectStatus: 200,
  },
  {
    name: 'Envoy control and hop-by-hop headers from a client',
    request: get(
      '/mcp',
      ENVOY_CONTROL_HEADERS.map((h) => `${h}: v`),
    ),
    expectStatus: 200,
  },
  {
    name: 'Connection nominates headers',
    request: get('/mcp', ['Connection: keep-alive, X-Foo, te', 'x-foo: 1', 'te: gzip, trailers', 'x-bar: 2']),
    expectStatus: 200,
  },
  {
    name: 'Connection nominates x-forwarded-for',
    request: get('/mcp', ['Connection: x-forwarded-for']),
    expectStatus: 400,
  },
  { name: 'Connection with ten tokens', request: get('/mcp', ['Connection: a,b,c,d,e,f,g,h,i,j']), expectStatus: 400 },
  { name: 'Connection: close', request: get('/mcp', ['Connection: close']), expectStatus: 200 },
  { name: 'Connection: close on a local reply', request: get('/nope', ['Connection: close']), expectStatus: 404 },
  { name: 'websocket upgrade', request: get('/mcp', ['Upgrade: websocket', 'Connection: Upgrade']), expectStatus: 403 },
  {
    name: 'h2c upgrade is ignored',
    request: get('/mcp', ['Upgrade: h2c', 'Connection: Upgrade, HTTP2-Settings', 'HTTP2-Settings: AAMAAABkAAQAAP__']),
    expectStatus: 200,
  },
  {
    name: 'websocket upgrade on a bad path (the path check wins)',
    request: get('/mcp%2F', ['Upgrade: websocket', 'Connection: upgrade']),
    expectStatus: 400,
  },
  {
    name: 'websocket upgrade matching no route (404 wins)',
    request: get('*', ['Upgrade: websocket', 'Connection: upgrade'], 'OPTIONS'),
    expectStatus: 404,
  },
  {
    name: 'websocket upgrade keeps its Connection header (no nomination checks)',
    request: get('/nope', ['Upgrade: websocket', 'Connection: upgrade, x-forwarded-for, a, b, c, d, e, f, g, h']),
    expectStatus: 403,
  },
  { name: 'HTTP/1.0', request: rawRequest(['GET /mcp HTTP/1.0', H]), expectStatus: 426 },
  { name: 'no Host', request: rawRequest(['GET /mcp HTTP/1.1']), expectStatus: 400 },
  { name: 'two Host headers', request: rawRequest(['GET /mcp HTTP/1.1', H, 'Host: other']), expectStatus: 200 },
  {
    name: 'absolute-form target',
    request: rawRequest(['GET http://other.example/mcp?a=1 HTTP/1.1', H]),
    expectStatus: 200,
  },
  {
    name: 'absolute-form target with userinfo and an upper-case scheme',
    request: rawRequest(['GET HTTP://user@other.example/mcp HTTP/1.1', H]),
    expectStatus: 200,
  },
  {
    name: 'absolute-form target without a path',
    request: rawRequest(['GET http://other.example?x=1 HTTP/1.1', H]),
    expectStatus: 404,
  },
  { name: 'Host with a space', request: rawRequest(['GET /mcp HTTP/1.1', 'Host: a b']), expectStatus: 400 },
  { name: 'Host with a slash', request: rawRequest(['GET /mcp HTTP/1.1', 'Host: h/x']), expectStatus: 400 },
  { name: 'Host with non-ASCII', request: rawRequest(['GET /mcp HTTP/1.1', 'Host: h\xc3\xa9']), expectStatus: 400 },
  {
    name: 'Host with userinfo and an IPv6 literal',
    request: rawRequest(['GET /mcp HTTP/1.1', 'Host: user@[::1]:80']),
    expectStatus: 200,
  },
  { name: 'empty Host', request: rawRequest(['GET /mcp HTTP/1.1', 'Host:']), expectStatus: 200 },
  {
    name: 'absolute-form https target',
    request: rawRequest(['GET https://other.example/mcp HTTP/1.1', H]),
    expectStatus: 403,
  },
  { name: 'fragment in the target', request: get('/mcp#frag'), expectStatus: 400 },
  { name: 'OPTIONS *', request: get('*', [], 'OPTIONS'), expectStatus: 404 },
  { name: 'OPTIONS */../mcp (not normalized)', request: get('*/../mcp', [], 'OPTIONS'), expectStatus: 404 },
  { name: 'GET *', request: get('*'), expectStatus: 400 },
  { name: 'QUERY method (node:http knows it, Envoy does not)', request: get('/mcp', [], 'QUERY'), expectStatus: 400 },
  { name: 'WebDAV method on /mcp', request: get('/mcp', [], 'PROPFIND'), expectStatus: 405 },
  {
    name: 'CONNECT',
    request: rawRequest(['CONNECT mcpgw.test:443 HTTP/1.1', 'Host: mcpgw.test:443']),
    expectStatus: 404,
  },
  {
    name: '100 headers and Host',
    request: get(
      '/mcp',
      Array.from({ length: 100 }, (_, i) => `x-h${i}: v`),
    ),
    expectStatus: 431,
  },
  {
    name: '99 headers and Host, authz adds four: over the limit after the Check',
    request: get(
      '/mcp',
      Array.from({ length: 99 }, (_, i) => `x-h${i}: v`),
    ),
    expectStatus: 500,
  },
  {
    name: '88 headers and Host, authz adds four: at the limit',
    request: get(
      '/mcp',
      Array.from({ length: 88 }, (_, i) => `x-h${i}: v`),
    ),
    expectStatus: 200,
  },
  {
    name: '89 headers and Host, authz adds four: one over',
    request: get(
      '/mcp',
      Array.from({ length: 89 }, (_, i) => `x-h${i}: v`),
    ),
    expectStatus: 500,
  },
  {
    name: '99 headers and Host, authz adds none',
    request: get('/mcp', ['x-verdict: ok-ignores-denied', ...Array.from({ length: 98 }, (_, i) => `x-h${i}: v`)]),
    expectStatus: 200,
  },
  { name: 'control character in a header value', request: get('/mcp', ['x-bad: a\x7fb']), expectStatus: 400 },
  {
    name: 'Content-Length and Transfer-Encoding',
    request: rawRequest(['POST /mcp HTTP/1.1', H, 'Content-Length: 5', 'Transfer-Encoding: chunked'], '0\r\n\r\n'),
    expectStatus: 400,
  },
];

/**
 * Paths through the admin prefix route (checked, not buffered): the CheckRequest shows what
 * normalization made of them. Observed on Envoy 1.40; see src/front/builtin/path.ts.
 */
export const PATHS = [
  '/admin/v1/a/./b',
  '/admin/v1/a/../b',
  '/admin/v1/../../../mcp',
  '/admin/v1/a/%2E/b',
  '/admin/v1/a/.%2e/b',
  '/admin/v1/%41%42%7e%2D%5f%2e',
  '/admin/v1/%3a%3A%40%21%24%26%27%28%29%2a%2b%2c%3b%3d',
  '/admin/v1/%zz%',
  '/admin/v1/%4',
  '/admin/v1/a%20b',
  '/admin/v1/"<>`{}|^',
  '/admin/v1/\\x',
  '/admin/v1/a\\..\\b',
  '/admin/v1/;a=b/../c',
  '/admin/v1/a//b///c',
  '/admin/v1/a/.',
  '/admin/v1/a/..',
  '/admin/v1/a/...',
  '/admin/v1/a/.b',
  '/admin/v1/x?%zz',
  '/admin/v1/%00',
  '/admin/v1/%e9',
  '/admin/v1/%C3%A9',
  "/admin/v1/~!$&'()*+,;=:@",
  '/admin/v1/%7B%7d',
  '/admin/v1/%25',
  '/admin/v1/%2541',
  '/admin/v1/.',
  '//admin//v1//x',
  '/admin/v1/x/..//y',
  '/admin/v1/a//../b',
  '/admin/v1/x?q=/../a/./b//c%41',
  '/admin/v1/a%2eb',
  '/admin/v1/%01',
  '/admin/v1/%7f',
  '/admin/v1/x\\?a\\b',
  '/%2e%2e/admin/v1/z',
  '/admin/v1/%%41',
  '/admin/v1/%%41%42',
  '/admin/v1/%%41B',
  '/admin/v1/%4%31',
  '/admin/v1/%%34%31',
  '/admin/v1/%z%41',
  '/admin/v1/%%%41',
  '/admin/v1/%2%65',
  '/admin/v1/%2%65/..',
  '/admin/v1/%4%3a',
  '/admin/v1/%a%62%63',
  '/admin/v1/%%%41%42',
  '/admin/v1/%/..',
  '/admin/v1/%2E%2e%41',
  '/admin/v1/x%',
  '/admin/v1/[x]',
  '/admin/v1/a?',
  '/admin/v1/a??b',
  '/admin/v1/a%3Fb',
  '/admin/v1/a%23b',
  '/admin/v1/x/..%2f',
  '/admin/v1/..',
  '/admin/v1',
  '//',
];
