/**
 * A real Envoy between a fake ext_authz server and a fake gateway, for the end-to-end suite.
 *
 * Ports: the fakes listen on kernel-chosen ports; Envoy gets port 0 for its listener and admin and
 * reports what it bound through `--admin-address-path` and the admin `/listeners`, so nothing races
 * for a port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { renderEnvoyConfig, type EnvoyConfigOptions } from '../../src/front/envoy-config.js';
import { memorySocketPair } from '../../src/util/memory-socket.js';
import {
  AuthorizationService,
  CheckRequest,
  CheckResponse,
  type AuthorizationServer,
} from '../../src/gen/envoy/service/auth/v3/external_auth.js';
import {
  HealthCheckResponse,
  HealthCheckResponse_ServingStatus,
  HealthService,
  type HealthServer,
} from '../../src/gen/grpc/health/v1/health.js';

export type CheckHandler = (req: CheckRequest) => CheckResponse | Promise<CheckResponse>;

/** An ext_authz gRPC server that records every CheckRequest and answers with `handler`. */
export interface FakeAuthz {
  readonly port: number;
  readonly checks: CheckRequest[];
  handler: CheckHandler;
  close(): Promise<void>;
}

export async function startFakeAuthz(handler: CheckHandler): Promise<FakeAuthz> {
  const server = new grpc.Server();
  const fake: FakeAuthz = {
    port: 0,
    checks: [],
    handler,
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
      }),
  };
  const authz: AuthorizationServer = {
    check: (call, cb) => {
      fake.checks.push(call.request);
      Promise.resolve()
        .then(() => fake.handler(call.request))
        .then(
          (res) => cb(null, res),
          (err: unknown) => cb({ code: grpc.status.INTERNAL, details: String(err) }, null),
        );
    },
  };
  const health: HealthServer = {
    check: (_call, cb) =>
      cb(null, HealthCheckResponse.fromPartial({ status: HealthCheckResponse_ServingStatus.SERVING })),
    watch: (call) => call.end(),
  };
  server.addService(AuthorizationService, authz);
  server.addService(HealthService, health);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });
  return Object.assign(fake, { port });
}

export interface UpstreamHit {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/**
 * A fake gateway: records each request and answers 200 with a small JSON body, or, for a GET that
 * accepts `text/event-stream`, with SSE_EVENTS events SSE_GAP_MS apart.
 */
export interface FakeGateway {
  readonly port: number;
  readonly hits: UpstreamHit[];
  /** An in-memory connection to the same server (the built-in front's `connectGateway`). */
  connect(): Duplex;
  close(): Promise<void>;
}

export const SSE_EVENTS = 3;
export const SSE_GAP_MS = 150;

export async function startFakeGateway(): Promise<FakeGateway> {
  const hits: UpstreamHit[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      hits.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) });
      if (req.method === 'GET' && req.headers.accept === 'text/event-stream') {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        let n = 0;
        const timer = setInterval(() => {
          res.write(`data: ${n++}\n\n`);
          if (n === SSE_EVENTS) {
            clearInterval(timer);
            res.end();
          }
        }, SSE_GAP_MS);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ upstream: true }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    hits,
    connect: () => {
      const [client, serverSide] = memorySocketPair();
      server.emit('connection', serverSide);
      return client;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface RunningEnvoy {
  /** Port of the mcpgw listener. */
  readonly port: number;
  readonly adminPort: number;
  /** Everything Envoy wrote to stdout (the access log). */
  stdout(): string;
  stderr(): string;
  stop(): Promise<void>;
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** Starts `envoy` with `renderEnvoyConfig(opts)` (listener and admin on free ports). */
export async function startEnvoy(
  envoyBin: string,
  opts: Omit<EnvoyConfigOptions, 'listen' | 'adminPort'>,
): Promise<RunningEnvoy> {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-envoy-'));
  const configPath = join(dir, 'envoy.yaml');
  const adminPath = join(dir, 'admin-address');
  writeFileSync(configPath, renderEnvoyConfig({ ...opts, listen: { host: '127.0.0.1', port: 0 }, adminPort: 0 }));
  let out = '';
  let err = '';
  const child: ChildProcess = spawn(
    envoyBin,
    [
      '-c',
      configPath,
      '--admin-address-path',
      adminPath,
      '--concurrency',
      '1',
      '--log-level',
      'warn',
      '--disable-hot-restart',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // If the test process dies before afterAll, Envoy must not outlive it.
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  const stop = async (): Promise<void> => {
    process.off('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await Promise.race([exited, sleep(3000)]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const deadline = Date.now() + 15_000;
    let adminPort = 0;
    let port = 0;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`envoy exited with ${child.exitCode}:\n${err}`);
      if (adminPort === 0 && existsSync(adminPath)) {
        const text = readFileSync(adminPath, 'utf8').trim();
        adminPort = Number(text.slice(text.lastIndexOf(':') + 1));
      }
      if (adminPort !== 0) {
        const ready = await get(adminPort, '/ready').catch(() => null);
        if (ready?.status === 200) {
          const listeners = await get(adminPort, '/listeners?format=json');
          port = listenerPort(listeners.body.toString());
          break;
        }
      }
      await sleep(50);
    }
    if (port === 0) throw new Error(`envoy did not become ready:\n${err}`);
    return { port, adminPort, stdout: () => out, stderr: () => err, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

function listenerPort(json: string): number {
  const parsed = JSON.parse(json) as {
    listener_statuses?: { local_address?: { socket_address?: { port_value?: number } } }[];
  };
  return parsed.listener_statuses?.[0]?.local_address?.socket_address?.port_value ?? 0;
}

export interface HttpResult {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A plain HTTP/1.1 request; `path` goes on the wire exactly as given (no normalization). */
export function send(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: Buffer | string,
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export function get(port: number, path: string): Promise<HttpResult> {
  return send(port, 'GET', path);
}

export interface StreamedChunk {
  /** Milliseconds since the request was sent. */
  at: number;
  data: string;
}

/** A GET whose response body is recorded chunk by chunk, with arrival times. */
export function getStreaming(
  port: number,
  path: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: IncomingHttpHeaders; chunks: StreamedChunk[] }> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'GET', path, headers, agent: false }, (res) => {
      const chunks: StreamedChunk[] = [];
      res.on('data', (c: Buffer) => chunks.push({ at: Date.now() - t0, data: c.toString() }));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, chunks }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * A chunked POST sent in parts, `gapMs` apart, as a slow (or deliberate) client would. Each part
 * is flushed before the next is written.
 */
export function sendPaced(
  port: number,
  path: string,
  parts: Buffer[],
  gapMs: number,
  headers: Record<string, string> = {},
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    const next = (i: number): void => {
      const part = parts[i];
      if (part === undefined) {
        req.end();
        return;
      }
      req.write(part, () => setTimeout(() => next(i + 1), gapMs));
    };
    next(0);
  });
}
