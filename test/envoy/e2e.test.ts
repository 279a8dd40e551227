/**
 * The rendered config in the real Envoy, between a fake ext_authz server and a fake gateway.
 * What this suite pins down about Envoy 1.40 is recorded next to each test.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AUTHZ_OWNED_HEADERS, localReplyBody } from '../../src/front/envoy-config.js';
import { CheckResponse, type CheckRequest } from '../../src/gen/envoy/service/auth/v3/external_auth.js';
import { HeaderValueOption_HeaderAppendAction } from '../../src/gen/envoy/config/core/v3/base.js';
import { describeWith, findExecutable } from '../helpers/components.js';
import {
  getStreaming,
  send,
  sendPaced,
  SSE_EVENTS,
  SSE_GAP_MS,
  startEnvoy,
  startFakeAuthz,
  startFakeGateway,
  type FakeAuthz,
  type FakeGateway,
  type RunningEnvoy,
} from './harness.js';

const MAX_BODY = 1024 * 1024;
const OVERWRITE = HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD;

const header = (key: string, value: string) => ({ header: { key, value }, appendAction: OVERWRITE });

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

/**
 * Behaves like the real authz where this suite needs it (partial bodies are denied with 413, the
 * client credential is swapped for an internal one), and otherwise obeys `x-fake-verdict`.
 */
async function fakeVerdict(req: CheckRequest): Promise<CheckResponse> {
  const http = req.attributes?.request?.http;
  const verdict = http?.headers['x-fake-verdict'] ?? 'allow';
  if (http?.headers['x-envoy-auth-partial-body'] === 'true') {
    return deny(413, rpcError(-32600, 'request body too large'), { 'content-type': 'application/json' });
  }
  switch (verdict) {
    case 'deny-403':
      return deny(403, rpcError(-32001, 'denied by rule "no writes"'), {
        'content-type': 'application/json',
        'x-mcpgw-rule': 'no writes',
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
    case 'grpc-error':
      throw new Error('fake internal error');
    case 'slow':
      await new Promise((resolve) => setTimeout(resolve, 1500));
      return CheckResponse.fromPartial({ status: { code: 0 } });
    default:
      return CheckResponse.fromPartial({
        status: { code: 0 },
        okResponse: {
          headers: [
            header('authorization', 'Bearer internal.jwt'),
            header('x-mcpgw-user', 'alice'),
            header('x-mcpgw-decision-id', 'dec-1'),
          ],
          headersToRemove: ['x-mcpgw-request-mac'],
        },
        dynamicMetadata: { decision_id: 'dec-1', user: 'alice' },
      });
  }
}

const TOOL_PENDING = JSON.stringify({
  jsonrpc: '2.0',
  id: 7,
  result: { isError: true, content: [{ type: 'text', text: 'This call needs a human approval (ap-7F3K9Q2M1X).' }] },
});

const envoyBin = findExecutable('envoy');

describeWith(['envoy'], 'Envoy front end to end (real envoy)', () => {
  let fakeAuthz: FakeAuthz;
  let fakeGateway: FakeGateway;
  let envoy: RunningEnvoy;

  beforeAll(async () => {
    fakeAuthz = await startFakeAuthz(fakeVerdict);
    fakeGateway = await startFakeGateway();
    envoy = await startEnvoy(envoyBin ?? 'envoy', {
      authz: { host: '127.0.0.1', port: fakeAuthz.port },
      gateway: { host: '127.0.0.1', port: fakeGateway.port },
    });
  });

  afterAll(async () => {
    await envoy?.stop();
    await fakeGateway?.close();
    await fakeAuthz?.close();
  });

  const lastCheck = () => {
    const http = fakeAuthz.checks.at(-1)?.attributes?.request?.http;
    if (!http) throw new Error('no CheckRequest recorded');
    return http;
  };
  const counts = () => ({ checks: fakeAuthz.checks.length, hits: fakeGateway.hits.length });

  it('allowed: the gateway gets the body and authz headers, never the client credential', async () => {
    const body = '{"jsonrpc":"2.0","id":1,"method":"ping"}';
    const res = await send(
      envoy.port,
      'POST',
      '/mcp',
      {
        authorization: 'Bearer mcpgw_sk_client',
        'content-type': 'application/json',
        'x-mcpgw-request-mac': 'forged',
      },
      body,
    );
    expect(res.status).toBe(200);
    const check = lastCheck();
    expect(check.method).toBe('POST');
    expect(check.path).toBe('/mcp');
    expect(check.headers['authorization']).toBe('Bearer mcpgw_sk_client');
    const hit = fakeGateway.hits.at(-1);
    expect(hit?.body.toString()).toBe(body);
    expect(hit?.headers['authorization']).toBe('Bearer internal.jwt');
    expect(hit?.headers['x-mcpgw-user']).toBe('alice');
    expect(hit?.headers['x-mcpgw-decision-id']).toBe('dec-1');
    expect(hit?.headers['x-mcpgw-request-mac']).toBeUndefined();
    // Neither Envoy's partial-body marker nor router x-envoy-* headers reach the gateway.
    expect(
      Object.keys(hit?.headers ?? {}).filter((h) => h.startsWith('x-envoy-') && h !== 'x-envoy-external-address'),
    ).toEqual([]);
  });

  it('raw_body carries the exact bytes (pack_as_bytes), even when they are not UTF-8', async () => {
    const bytes = Buffer.from([0x7b, 0xff, 0xfe, 0x22, 0xc3, 0x28, 0x7d]);
    await send(envoy.port, 'POST', '/mcp', { 'content-type': 'application/json' }, bytes);
    const check = lastCheck();
    expect(Buffer.from(check.rawBody).equals(bytes)).toBe(true);
    expect(check.body).toBe('');
    expect(check.headers['x-envoy-auth-partial-body']).toBe('false');
  });

  it('denied: the status, headers and body authz wrote reach the client untouched', async () => {
    const before = counts();
    const res = await send(envoy.port, 'POST', '/mcp', { 'x-fake-verdict': 'deny-403' }, '{}');
    expect(res.status).toBe(403);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers['x-mcpgw-rule']).toBe('no writes');
    expect(res.body.toString()).toBe(rpcError(-32001, 'denied by rule "no writes"'));

    const unauth = await send(envoy.port, 'POST', '/mcp', { 'x-fake-verdict': 'deny-401' }, '{}');
    expect(unauth.status).toBe(401);
    expect(unauth.headers['www-authenticate']).toContain('resource_metadata=');
    expect(unauth.body.toString()).toBe(rpcError(-32001, 'missing credential'));
    expect(fakeGateway.hits.length).toBe(before.hits);
  });

  it('a pending tools/call is an HTTP 200 CallToolResult from authz, kept as is', async () => {
    const res = await send(envoy.port, 'POST', '/mcp', { 'x-fake-verdict': 'pending-200' }, '{}');
    expect(res.status).toBe(200);
    expect(res.headers['x-mcpgw-decision']).toBe('pending');
    expect(res.body.toString()).toBe(TOOL_PENDING);
  });

  it('an authz denial with status 503 keeps its own body (it is not status_on_error)', async () => {
    const res = await send(envoy.port, 'POST', '/mcp', { 'x-fake-verdict': 'deny-503' }, '{}');
    expect(res.status).toBe(503);
    expect(res.body.toString()).toBe(rpcError(-32001, 'policy store unavailable'));
  });

  it('an authz denial without content-type gets the JSON-RPC body of its status, never an empty one', async () => {
    const res = await send(envoy.port, 'POST', '/mcp', { 'x-fake-verdict': 'deny-bare' }, '{}');
    expect(res.status).toBe(403);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.body.toString()).toBe(localReplyBody(-32001, 'Forbidden'));
  });

  it('an authz error or a Check past the 1 s timeout is a 503 with a JSON-RPC body', async () => {
    const before = counts();
    for (const verdict of ['grpc-error', 'slow']) {
      const t0 = Date.now();
      const res = await send(envoy.port, 'POST', '/mcp', { 'x-fake-verdict': verdict }, '{}');
      expect(res.status).toBe(503);
      expect(res.headers['content-type']).toBe('application/json');
      expect(res.body.toString()).toBe(localReplyBody(-32603, 'Authorization service unavailable'));
      if (verdict === 'slow') expect(Date.now() - t0).toBeLessThan(1450);
    }
    expect(fakeGateway.hits.length).toBe(before.hits);
  });

  it('/healthz and /.well-known/ bypass authz and lose any credential-like header', async () => {
    const before = counts();
    const forged = Object.fromEntries(AUTHZ_OWNED_HEADERS.map((h) => [h, 'forged']));
    for (const path of ['/healthz', '/.well-known/jwks.json']) {
      const res = await send(envoy.port, 'GET', path, forged);
      expect(res.status).toBe(200);
      const hit = fakeGateway.hits.at(-1);
      expect(hit?.url).toBe(path);
      for (const h of AUTHZ_OWNED_HEADERS) expect(hit?.headers[h]).toBeUndefined();
    }
    expect(fakeAuthz.checks.length).toBe(before.checks);
    // Only reads are public: a POST to /healthz is an unknown route.
    const post = await send(envoy.port, 'POST', '/healthz', {}, '{}');
    expect(post.status).toBe(404);
  });

  it('/admin/v1: authz checks the request but never sees the body', async () => {
    const body = '{"value":"s3cret-token-value"}';
    const res = await send(
      envoy.port,
      'PUT',
      '/admin/v1/secrets/github/GITHUB_TOKEN',
      { authorization: 'Bearer mcpgw_ak_x' },
      body,
    );
    expect(res.status).toBe(200);
    const check = lastCheck();
    expect(check.path).toBe('/admin/v1/secrets/github/GITHUB_TOKEN');
    expect(check.rawBody.length).toBe(0);
    expect(check.body).toBe('');
    // Envoy sets the partial-body marker only when it buffers; here the header is absent (or the
    // client's own, which authz must ignore on admin routes).
    expect(check.headers['x-envoy-auth-partial-body']).toBeUndefined();
    expect(fakeGateway.hits.at(-1)?.body.toString()).toBe(body);
  });

  /*
   * With allow_partial_message: true and a body over max_request_bytes, Envoy 1.40 sends ONE Check
   * with the first max_request_bytes bytes in raw_body and `x-envoy-auth-partial-body: true`;
   * `size` is the number of bytes Envoy had buffered (not Content-Length). A body of exactly
   * max_request_bytes is complete ("false"). Envoy overwrites the marker a client sends. Had authz
   * allowed, the gateway would get the whole body; the server denies partial bodies (DESIGN §3.3),
   * as this fake does, with 413. See the next test for when the marker is wrong.
   */
  it('oversized body: authz sees a marked partial body and its 413 JSON-RPC body reaches the client', async () => {
    const before = counts();
    const exact = await send(envoy.port, 'POST', '/mcp', {}, Buffer.alloc(MAX_BODY, 0x61));
    expect(exact.status).toBe(200);
    expect(lastCheck().rawBody.length).toBe(MAX_BODY);
    expect(lastCheck().headers['x-envoy-auth-partial-body']).toBe('false');

    const res = await send(
      envoy.port,
      'POST',
      '/mcp',
      { 'x-envoy-auth-partial-body': 'false' },
      Buffer.alloc(MAX_BODY + 1, 0x61),
    );
    expect(res.status).toBe(413);
    expect(res.headers['content-type']).toBe('application/json');
    expect(JSON.parse(res.body.toString())).toMatchObject({ jsonrpc: '2.0', error: { code: -32600 } });
    const check = lastCheck();
    expect(check.rawBody.length).toBe(MAX_BODY);
    expect(check.size).toBe(MAX_BODY + 1);
    expect(check.headers['content-length']).toBe(String(MAX_BODY + 1));
    expect(check.headers['x-envoy-auth-partial-body']).toBe('true');
    expect(fakeAuthz.checks.length).toBe(before.checks + 2);
    expect(fakeGateway.hits.length).toBe(before.hits + 1);
  });

  /*
   * The marker means "Envoy truncated what it had buffered", not "the body is incomplete": when
   * exactly max_request_bytes arrive before the rest, Envoy checks at once with those bytes and
   * "false" (with or without Content-Length). So authz must also treat raw_body.length >=
   * max_request_bytes as partial; the gateway's x-mcpgw-request-mac (over the body it receives)
   * catches whatever still slips through.
   */
  it('Envoy quirk: a body paced to fill the buffer exactly is checked as complete ("false")', async () => {
    const head = Buffer.alloc(MAX_BODY, 0x61);
    const tail = Buffer.from('"tail"');
    const res = await sendPaced(envoy.port, '/mcp', [head, tail], 300);
    expect(res.status).toBe(200);
    const check = lastCheck();
    expect(check.rawBody.length).toBe(MAX_BODY);
    expect(check.headers['x-envoy-auth-partial-body']).toBe('false');
    expect(check.headers['content-length']).toBeUndefined();
    expect(fakeGateway.hits.at(-1)?.body.length).toBe(MAX_BODY + tail.length);
  });

  it('escaped slashes are rejected before authz with a JSON-RPC 400', async () => {
    const before = counts();
    for (const path of ['/mcp%2Fx', '/admin%2Fv1/users', '/mcp%5Cx']) {
      const res = await send(envoy.port, 'POST', path, {}, '{}');
      expect(res.status, path).toBe(400);
      expect(res.headers['content-type']).toBe('application/json');
      expect(res.body.toString()).toBe(localReplyBody(-32600, 'Bad request'));
    }
    expect(counts()).toEqual(before);
  });

  it('paths are normalized before routing, authz and the gateway', async () => {
    for (const path of ['//mcp', '/x/../mcp', '/./mcp']) {
      const res = await send(envoy.port, 'POST', path, {}, '{}');
      expect(res.status, path).toBe(200);
      expect(lastCheck().path).toBe('/mcp');
      expect(fakeGateway.hits.at(-1)?.url).toBe('/mcp');
    }
  });

  it('unknown paths and methods are answered by Envoy with JSON-RPC errors, without a Check', async () => {
    const before = counts();
    const missing = await send(envoy.port, 'GET', '/metrics');
    expect(missing.status).toBe(404);
    expect(missing.headers['content-type']).toBe('application/json');
    expect(missing.body.toString()).toBe(localReplyBody(-32600, 'Not found'));
    const put = await send(envoy.port, 'PUT', '/mcp', {}, '{}');
    expect(put.status).toBe(405);
    expect(put.headers['allow']).toBe('GET, POST, DELETE');
    expect(put.body.toString()).toBe(localReplyBody(-32600, 'Method not allowed'));
    expect(counts()).toEqual(before);
  });

  it('a header name with an underscore is refused (no x_mcpgw_user smuggling)', async () => {
    const before = counts();
    const res = await send(envoy.port, 'POST', '/mcp', { x_mcpgw_user: 'root' }, '{}');
    expect(res.status).toBe(400);
    expect(res.body.toString()).toBe(localReplyBody(-32600, 'Bad request'));
    expect(counts()).toEqual(before);
  });

  it('GET /mcp streams SSE events as they come', async () => {
    const res = await getStreaming(envoy.port, '/mcp', { accept: 'text/event-stream' });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    expect(res.chunks.map((c) => c.data).join('')).toBe(
      Array.from({ length: SSE_EVENTS }, (_, i) => `data: ${i}\n\n`).join(''),
    );
    // The first event arrives well before the stream ends: nothing buffers the response.
    expect(res.chunks.length).toBeGreaterThan(1);
    const first = res.chunks[0];
    const last = res.chunks.at(-1);
    expect((last?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThanOrEqual((SSE_EVENTS - 1) * SSE_GAP_MS - 50);
  });

  it('the access log is JSON on stdout with the decision id and without credentials', async () => {
    await send(envoy.port, 'POST', '/mcp', { authorization: 'Bearer mcpgw_sk_logged?' }, '{}');
    // Envoy flushes the access log asynchronously.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const lines = envoy
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const mine = lines.filter((l) => l['path'] === '/mcp' && l['status'] === 200);
    expect(mine.at(-1)).toMatchObject({ method: 'POST', decision_id: 'dec-1', user: 'alice' });
    expect(envoy.stdout()).not.toContain('mcpgw_sk_');
    expect(envoy.stdout()).not.toContain('internal.jwt');
  });

  // Last: it stops the fake authz server.
  it('authz unreachable: 503 with a JSON-RPC body, and /healthz still answers', async () => {
    await fakeAuthz.close();
    const res = await send(envoy.port, 'POST', '/mcp', {}, '{}');
    expect(res.status).toBe(503);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.body.toString()).toBe(localReplyBody(-32603, 'Authorization service unavailable'));
    const health = await send(envoy.port, 'GET', '/healthz');
    expect(health.status).toBe(200);
  });
});
