/**
 * The built-in front on its own (no Envoy needed): connection reuse towards authz and the gateway,
 * cancellation, timeouts (shortened through the compiled config), and shutdown.
 */
import { connect } from 'node:net';
import { Server, ServerCredentials, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBuiltinFront, startBuiltinFrontFromConfig, type BuiltinFront } from '../../src/front/builtin.js';
import { compileFrontConfig } from '../../src/front/builtin/config.js';
import { envoyBootstrap, localReplyBody } from '../../src/front/envoy-config.js';
import {
  AuthorizationService,
  CheckResponse,
  type CheckRequest,
} from '../../src/gen/envoy/service/auth/v3/external_auth.js';
import { startScriptedGateway, type ScriptedGateway } from './scripted-gateway.js';
import { exchange, rawRequest } from './wire.js';

interface RecordingAuthz {
  port: number;
  peers: string[];
  cancelled: number;
  delayMs: number;
  close(): Promise<void>;
}

/** An authz server that allows everything and records which connection each Check came on. */
async function startRecordingAuthz(): Promise<RecordingAuthz> {
  const server = new Server();
  const rec: RecordingAuthz = {
    port: 0,
    peers: [],
    cancelled: 0,
    delayMs: 0,
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
  server.addService(AuthorizationService, {
    check: (call: ServerUnaryCall<CheckRequest, CheckResponse>, cb: sendUnaryData<CheckResponse>) => {
      rec.peers.push(call.getPeer());
      call.on('cancelled', () => rec.cancelled++);
      setTimeout(() => cb(null, CheckResponse.fromPartial({ status: { code: 0 } })), rec.delayMs);
    },
  });
  rec.port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return rec;
}

const request = (mode: string, extra: string[] = [], path = '/mcp') =>
  rawRequest([`GET ${path} HTTP/1.1`, 'Host: mcpgw.test', `x-mode: ${mode}`, ...extra]);

describe('built-in front on its own', () => {
  let authz: RecordingAuthz;
  let gateway: ScriptedGateway;
  let front: BuiltinFront;
  let quick: BuiltinFront;

  beforeAll(async () => {
    authz = await startRecordingAuthz();
    gateway = await startScriptedGateway();
    const upstreams = {
      authz: { host: '127.0.0.1', port: authz.port },
      gateway: { host: '127.0.0.1', port: gateway.port },
      listen: { host: '127.0.0.1', port: 0 },
    };
    front = await startBuiltinFront(upstreams);
    // The same bootstrap with Envoy's long timeouts cut down to test size.
    const cfg = compileFrontConfig(envoyBootstrap(upstreams));
    quick = await startBuiltinFrontFromConfig({
      ...cfg,
      requestHeadersTimeoutMs: 500,
      requestTimeoutMs: 300,
      routes: cfg.routes.map((r) => (r.name === 'mcp' ? { ...r, idleTimeoutMs: 700 } : r)),
    });
  });

  afterAll(async () => {
    await quick?.close();
    await front?.close();
    await gateway?.close();
    await authz?.close();
  });

  it('one gRPC channel for every Check, and keep-alive connections to the gateway', async () => {
    const peersBefore = authz.peers.length;
    const requestsBefore = gateway.requests.length;
    for (let i = 0; i < 5; i++) {
      const r = await exchange(front.port, request('default'));
      expect(r.status).toBe(200);
    }
    expect(new Set(authz.peers.slice(peersBefore)).size).toBe(1);
    expect(new Set(gateway.requests.slice(requestsBefore).map((r) => r.remotePort)).size).toBe(1);
  });

  it('two requests on one client connection', async () => {
    const socket = connect(front.port, '127.0.0.1');
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    socket.write(Buffer.concat([request('default'), request('default')]));
    await new Promise((resolve) => setTimeout(resolve, 300));
    socket.destroy();
    expect(text.match(/HTTP\/1\.1 200 OK/g)?.length).toBe(2);
  });

  it('a client that leaves during the Check cancels it, and nothing reaches the gateway', async () => {
    authz.delayMs = 400;
    try {
      const cancelledBefore = authz.cancelled;
      const requestsBefore = gateway.requests.length;
      await exchange(front.port, request('default'), { abortAfterMs: 100, timeoutMs: 2000 });
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(authz.cancelled).toBe(cancelledBefore + 1);
      expect(gateway.requests.length).toBe(requestsBefore);
    } finally {
      authz.delayMs = 0;
    }
  });

  it('request head not finished in time: 408, JSON-RPC body, connection closed', async () => {
    const r = await exchange(quick.port, 'GET /mcp HTTP/1.1\r\nHost: x\r\n', { timeoutMs: 4000, closeWaitMs: 300 });
    expect(r.status).toBe(408);
    expect(r.body.toString()).toBe(localReplyBody(-32600, 'Request timeout'));
    expect(r.headers).toContainEqual(['connection', 'close']);
    expect(r.closed).toBe(true);
  });

  it('request body not finished in time (request_timeout): 408 and the connection closes', async () => {
    const r = await exchange(quick.port, 'POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc', {
      timeoutMs: 3000,
    });
    expect(r.status).toBe(408);
    expect(r.headers).toContainEqual(['connection', 'close']);
  });

  it('a stream idle past the route idle timeout: reset after the head was sent', async () => {
    const r = await exchange(quick.port, request('stream'), { timeoutMs: 3000 });
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('data: first\n\n');
    expect(r.framing).toBe('close');
  });

  it('a head over 60 KiB: 431', async () => {
    const r = await exchange(front.port, request('default', [`x-big: ${'a'.repeat(61 * 1024)}`]));
    expect(r.status).toBe(431);
    expect(r.body.toString()).toBe(localReplyBody(-32600, 'Request headers too large'));
  });

  it('close() frees the port and ends open connections', async () => {
    const f = await startBuiltinFront({
      authz: { host: '127.0.0.1', port: authz.port },
      gateway: { host: '127.0.0.1', port: gateway.port },
      listen: { host: '127.0.0.1', port: 0 },
    });
    const open = connect(f.port, '127.0.0.1');
    await new Promise((resolve) => open.once('connect', resolve));
    const closed = new Promise((resolve) => open.once('close', resolve));
    await f.close();
    await closed;
    await expect(exchange(f.port, request('default'), { timeoutMs: 500 })).rejects.toThrow();
  });

  it('options are validated as for Envoy', async () => {
    await expect(startBuiltinFront({ maxRequestBytes: 0 })).rejects.toThrow(RangeError);
    await expect(startBuiltinFront({ listen: { host: 'localhost', port: 0 } })).rejects.toThrow(/not an IP/);
  });
});
