/**
 * The built-in front (DESIGN §2): what runs on :8000 when no Envoy is installed. It serves the same
 * bootstrap `envoyBootstrap()` renders for Envoy and behaves as the real Envoy 1.40 binary does with
 * it (test/front/differential.test.ts sends one corpus through both and compares the CheckRequests,
 * what the gateway receives and the client-visible bytes):
 *
 * - HTTP/1.1 only (HTTP/1.0 gets 426); request targets are normalized (src/front/builtin/path.ts)
 *   and escaped slashes refused before any route or Check.
 * - Routes, per-route ext_authz settings, timeouts and local replies come from the bootstrap
 *   (src/front/builtin/config.ts); anything there the front does not implement fails at start-up.
 * - ext_authz over gRPC with the same CheckRequest Envoy builds (src/front/builtin/check-request.ts),
 *   the same body buffering (`x-envoy-auth-partial-body`), the same reading of the CheckResponse
 *   (src/front/builtin/authz-response.ts), and the same local replies (src/front/builtin/responses.ts).
 *   When authz runs in this process (`--role all`), the Check can be a function call instead
 *   (src/front/builtin/in-process-check.ts), with the same request, timeout and outcomes.
 * - Allowed requests are proxied to the gateway on keep-alive connections; responses stream
 *   (SSE included) and a client that goes away aborts the upstream request.
 *
 * Deliberate differences: `server` says "mcpgw"; statuses node:http cannot write (below 200, above
 * 999, a 204/304 with a body; authz alone can ask for them) are written raw and close the
 * connection; `size` in a CheckRequest for a body over the connection buffer (max_request_bytes +
 * 64 KiB) depends on how the socket delivered it, as it does in Envoy.
 */
import { randomFillSync, randomUUID } from 'node:crypto';
import {
  Agent,
  createServer,
  request as httpRequest,
  type ClientRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { networkInterfaces } from 'node:os';
import { credentials, Metadata } from '@grpc/grpc-js';
import {
  AuthorizationClient,
  type CheckRequest,
  type CheckResponse,
} from '../gen/envoy/service/auth/v3/external_auth.js';
import { envoyBootstrap, type Endpoint, type EnvoyConfigOptions } from './envoy-config.js';
import {
  applyRequestMutation,
  applyResponseOps,
  readCheckResponse,
  type ResponseHeaderOps,
} from './builtin/authz-response.js';
import { buildCheckRequest } from './builtin/check-request.js';
import { compileFrontConfig, type FrontConfig, type RouteSpec } from './builtin/config.js';
import { addEdgeHeaders, appendValue, headerRemove, readClientHeaders, type HeaderList } from './builtin/headers.js';
import {
  callInProcess,
  type CheckCallback,
  type InProcessCheck,
  type PendingCheck,
} from './builtin/in-process-check.js';
import { normalizeRequestPath } from './builtin/path.js';
import {
  buildLocalReply,
  dropHopByHop,
  finishHead,
  nodeCanWrite,
  rawResponse,
  reasonPhrase,
} from './builtin/responses.js';

/** The options of `renderEnvoyConfig`, minus Envoy's admin listener. */
export type BuiltinFrontOptions = Omit<EnvoyConfigOptions, 'adminPort'>;

export type { InProcessCheck } from './builtin/in-process-check.js';

/** What the bootstrap cannot say: how to reach an authz that runs in this process. */
export interface BuiltinFrontLocal {
  /**
   * Called for every Check instead of the gRPC service at the bootstrap's ext_authz address (which
   * then goes unused). Absent: gRPC, as Envoy does.
   */
  check?: InProcessCheck;
  /**
   * Opens a connection to a gateway that runs in this process (an in-memory socket its HTTP
   * server accepts; see src/util/memory-socket.ts), instead of the bootstrap's gateway address.
   * The requests on it are the same HTTP/1.1 bytes.
   */
  connectGateway?: () => Duplex;
}

export interface BuiltinFront {
  /** The bound port (the kernel's choice when `listen.port` is 0). */
  readonly port: number;
  /** Stops accepting, drops open connections, closes the gRPC channel (if any). */
  close(): Promise<void>;
}

export async function startBuiltinFront(
  opts: BuiltinFrontOptions = {},
  local: BuiltinFrontLocal = {},
): Promise<BuiltinFront> {
  const { adminPort: _ignored, ...rest } = opts as EnvoyConfigOptions;
  return startBuiltinFrontFromConfig(compileFrontConfig(envoyBootstrap(rest)), local);
}

/** Starts the front from settings already read from a bootstrap (tests shorten timeouts this way). */
export async function startBuiltinFrontFromConfig(
  cfg: FrontConfig,
  local: BuiltinFrontLocal = {},
): Promise<BuiltinFront> {
  const front = new Front(cfg, local.check ?? null, local.connectGateway ?? null);
  const port = await front.listen();
  return { port, close: () => front.close() };
}

/** Methods Envoy's HTTP/1 parser accepts (node:http also takes QUERY and M-SEARCH; Envoy answers 400). */
const METHODS = new Set([
  'DELETE',
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'OPTIONS',
  'TRACE',
  'PATCH',
  'COPY',
  'LOCK',
  'MKCOL',
  'MOVE',
  'PROPFIND',
  'PROPPATCH',
  'SEARCH',
  'UNLOCK',
  'BIND',
  'REBIND',
  'UNBIND',
  'ACL',
  'REPORT',
  'MKACTIVITY',
  'CHECKOUT',
  'MERGE',
  'NOTIFY',
  'SUBSCRIBE',
  'UNSUBSCRIBE',
  'PURGE',
  'MKCALENDAR',
  'LINK',
  'UNLINK',
  'SOURCE',
]);

/** Whether Envoy would answer `100 Continue`: the Expect lines, merged as Envoy merges them, say so. */
function expectsContinue(raw: readonly string[]): boolean {
  let merged = '';
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() === 'expect') merged = appendValue(merged, raw[i + 1] as string);
  }
  return merged.toLowerCase() === '100-continue';
}

/** Characters Envoy accepts in `:authority` (RFC 3986 reg-name, IP literals, port, userinfo). */
const AUTHORITY = /^[A-Za-z0-9\-._~!$&'()*+,;=:@[\]%]*$/;

/** Methods Envoy forwards without a body framing header; any other gets `content-length: 0`. */
const BODILESS = new Set(['GET', 'HEAD', 'DELETE', 'TRACE']);

/**
 * Envoy's node address, which it writes into x-forwarded-for instead of a loopback peer: the first
 * non-loopback IPv4 address of the machine, else 127.0.0.1.
 */
function localInfoAddress(): string {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

function grpcTarget(ep: Endpoint): string {
  if ('path' in ep) return `unix:${ep.path}`;
  return ep.host.includes(':') ? `[${ep.host}]:${ep.port}` : `${ep.host}:${ep.port}`;
}

/** An IPv4 peer on a dual-stack socket is reported as `::ffff:a.b.c.d`; Envoy reports `a.b.c.d`. */
function plainAddress(a: string | undefined): string {
  if (a === undefined) return '';
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

type Target =
  | { kind: 'origin' }
  | { kind: 'asterisk' }
  | { kind: 'absolute'; authority: string; path: string }
  | { kind: 'reject'; status: number };

/**
 * The request target: origin-form; absolute-form `http://` (its authority wins over Host); or, for
 * OPTIONS only, asterisk-form, which Envoy neither normalizes nor routes anywhere.
 */
function parseTarget(url: string, method: string): Target {
  if (url.includes('#')) return { kind: 'reject', status: 400 };
  if (url.charCodeAt(0) === 0x2f) return { kind: 'origin' };
  if (url.charCodeAt(0) === 0x2a) return method === 'OPTIONS' ? { kind: 'asterisk' } : { kind: 'reject', status: 400 };
  const lower = url.slice(0, 8).toLowerCase();
  if (lower.startsWith('http://')) {
    const rest = url.slice(7);
    const end = rest.search(/[/?]/);
    const hostPart = end === -1 ? rest : rest.slice(0, end);
    // Envoy drops userinfo: `http://user@host/` is a request for `host`.
    const authority = hostPart.slice(hostPart.lastIndexOf('@') + 1);
    if (authority === '') return { kind: 'reject', status: 400 };
    const tail = end === -1 ? '' : rest.slice(end);
    return { kind: 'absolute', authority, path: tail === '' ? '/' : tail.startsWith('?') ? `/${tail}` : tail };
  }
  // Envoy refuses an https:// target on a plaintext listener.
  if (lower.startsWith('https://')) return { kind: 'reject', status: 403 };
  return { kind: 'reject', status: 400 };
}

class Front {
  readonly cfg: FrontConfig;
  readonly server: Server;
  /** Sends a Check to authz: a call in this process when it runs here, else gRPC as Envoy does. */
  readonly check: (req: CheckRequest, done: CheckCallback) => PendingCheck;
  private readonly closeAuthz: () => void;
  readonly agent: Agent;
  readonly localInfo = localInfoAddress();
  readonly upstream: { host?: string; port?: number; socketPath?: string };
  private readonly idPool = Buffer.alloc(8 * 512);
  private idOffset = this.idPool.length;

  constructor(cfg: FrontConfig, localCheck: InProcessCheck | null, connectGateway: (() => Duplex) | null) {
    this.cfg = cfg;
    const timeoutMs = cfg.authz.timeoutMs;
    if (localCheck) {
      this.check = (req, done) => callInProcess(localCheck, req, timeoutMs, done);
      this.closeAuthz = () => undefined;
    } else {
      const client = new AuthorizationClient(grpcTarget(cfg.authz.endpoint), credentials.createInsecure(), {
        'grpc.max_send_message_length': cfg.authz.maxRequestBytes + 1024 * 1024,
        'grpc.max_receive_message_length': 4 * 1024 * 1024,
        'grpc.keepalive_time_ms': 60_000,
        'grpc.keepalive_permit_without_calls': 1,
        // Envoy's ext_authz does not retry, and a loopback authz must not go through an HTTP proxy.
        'grpc.enable_retries': 0,
        'grpc.enable_http_proxy': 0,
        // channelz bookkeeping (per-call counters, traces) ran on every Check; nothing reads it.
        'grpc.enable_channelz': 0,
      });
      const metadata = new Metadata();
      this.check = (req, done) => client.check(req, metadata, { deadline: Date.now() + timeoutMs }, done);
      this.closeAuthz = () => client.close();
    }
    this.agent = new Agent({
      keepAlive: true,
      keepAliveMsecs: 60_000,
      // The most recently used connection first, so a lull lets the others idle instead of
      // spreading requests over every connection ever opened.
      scheduling: 'lifo',
      noDelay: true,
      // Envoy's default circuit breaker for a cluster (1024 connections); requests past it wait.
      // At most one request per client connection is in flight, so this is one socket per
      // concurrent request, and each returns to the pool (up to maxFreeSockets) for the next.
      maxSockets: 1024,
      maxFreeSockets: 256,
    });
    // The agent's keep-alive pooling, queueing and limits still apply; only the transport differs.
    if (connectGateway) this.agent.createConnection = () => connectGateway() as Socket;
    const gw = cfg.gateway.endpoint;
    this.upstream = 'path' in gw ? { socketPath: gw.path } : { host: gw.host, port: gw.port };
    this.server = createServer({
      requireHostHeader: false,
      maxHeaderSize: cfg.maxRequestHeadersBytes,
      headersTimeout: cfg.requestHeadersTimeoutMs,
      // Envoy's request_timeout is enforced per exchange (it excludes the response).
      requestTimeout: 0,
      connectionsCheckingInterval: 1000,
      joinDuplicateHeaders: false,
      noDelay: true,
    });
    this.server.keepAliveTimeout = cfg.idleTimeoutMs;
    if (cfg.maxConnections > 0) this.server.maxConnections = cfg.maxConnections;
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => new Exchange(this, req, res).start();
    this.server.on('request', onRequest);
    // node:http would answer an unknown `Expect` with 417 itself; Envoy passes it on to the gateway.
    this.server.on('checkExpectation', onRequest);
    // node:http takes any Expect mentioning 100-continue; Envoy answers 100 Continue only when the
    // (merged) header is exactly that, and otherwise forwards it.
    this.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
      if (expectsContinue(req.rawHeaders)) res.writeContinue();
      onRequest(req, res);
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => this.onClientError(err, socket));
    // A CONNECT matches no route (node:http hands it over as a bare socket).
    this.server.on('connect', (_req: IncomingMessage, socket: Socket) => this.writeRawLocalReply(socket, 404, false));
  }

  listen(): Promise<number> {
    const { host, port } = this.cfg.listen;
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    this.agent.destroy();
    this.closeAuthz();
  }

  /** Envoy's stream id: a random unsigned 64-bit number, in decimal. */
  nextStreamId(): string {
    if (this.idOffset >= this.idPool.length) {
      randomFillSync(this.idPool);
      this.idOffset = 0;
    }
    const id = this.idPool.readBigUInt64LE(this.idOffset);
    this.idOffset += 8;
    return id.toString();
  }

  /** A parse error, an oversized head or a head that never completed: Envoy's codec answer. */
  private onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    // node:http is still writing the previous response on this connection: there is no room for ours.
    if ((socket as Socket & { _httpMessage?: unknown })._httpMessage) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    this.writeRawLocalReply(socket, status, false);
  }

  writeRawLocalReply(socket: Socket, status: number, head: boolean): void {
    const reply = buildLocalReply(this.cfg.mappers, 'codec_error', status, [], '', true);
    socket.end(rawResponse(reply, head));
  }
}

/** One request and its response. */
class Exchange {
  private readonly front: Front;
  private readonly cfg: FrontConfig;
  private readonly req: IncomingMessage;
  private readonly res: ServerResponse;
  private readonly time = new Date();
  method: string;
  authority = '';
  path = '';
  headers: HeaderList = [];
  private route: RouteSpec | null = null;
  private hasBody = false;
  private clientClose = false;
  private requestEnded = false;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private bodyCap = 0;
  private checkStarted = false;
  private checkCall: PendingCheck | null = null;
  private responseOps: ResponseHeaderOps | null = null;
  private upstream: ClientRequest | null = null;
  private headSent = false;
  private finished = false;
  private idleTimer: NodeJS.Timeout | null = null;
  private requestTimer: NodeJS.Timeout | null = null;
  private routeTimer: NodeJS.Timeout | null = null;

  constructor(front: Front, req: IncomingMessage, res: ServerResponse) {
    this.front = front;
    this.cfg = front.cfg;
    this.req = req;
    this.res = res;
    this.method = req.method ?? '';
    res.sendDate = false;
  }

  start(): void {
    const { req, res } = this;
    res.on('close', () => {
      if (!this.finished || !res.writableFinished) this.abort();
    });
    req.on('error', () => this.abort());
    if (req.httpVersion !== '1.1') return this.reject(426);
    if (!METHODS.has(this.method)) return this.reject(400);
    const client = readClientHeaders(req.rawHeaders, this.cfg.underscores, this.cfg.maxRequestHeaders);
    if (client.reject !== 0) return this.reject(client.reject);
    this.headers = client.headers;
    // An upgrade request never completes as HTTP: Envoy closes after whatever it answers.
    this.clientClose = client.close || client.upgrade;
    this.hasBody = client.chunked || client.contentLength > 0;
    const url = req.url ?? '';
    const target = parseTarget(url, this.method);
    if (target.kind === 'reject') return this.reject(target.status);
    let path = url;
    if (target.kind === 'absolute') {
      this.authority = target.authority;
      path = target.path;
    } else if (client.authority !== null) {
      this.authority = client.authority;
    } else {
      return this.reject(400);
    }
    if (!AUTHORITY.test(this.authority)) return this.reject(400);
    const normalized = target.kind === 'asterisk' ? path : this.normalize(path);
    if (normalized === null) return this.reject(400);
    this.path = normalized;

    const route = this.matchRoute();
    if (route === null) return this.localReply(404, 'route_not_found', [], '');
    // Envoy refuses an upgrade it has no filter chain for once a route matched, before any
    // direct response.
    if (client.upgrade) return this.reject(403);
    this.route = route;
    if (route.directStatus !== null) {
      const headers: HeaderList = [];
      for (const [k, v] of route.directHeaders) headers.push(k, v);
      return this.localReply(route.directStatus, 'direct_response', headers, '');
    }

    addEdgeHeaders(this.headers, {
      remoteAddress: plainAddress(req.socket.remoteAddress),
      localInfoAddress: this.front.localInfo,
      requestId: randomUUID(),
    });

    const idleMs = route.idleTimeoutMs ?? this.cfg.streamIdleTimeoutMs;
    if (idleMs > 0) this.idleTimer = setTimeout(() => this.onTimeout(408, 'stream_idle_timeout'), idleMs);
    if (this.hasBody && this.cfg.requestTimeoutMs > 0) {
      this.requestTimer = setTimeout(() => this.onTimeout(408, 'request_overall_timeout'), this.cfg.requestTimeoutMs);
    }
    if (!this.hasBody) this.requestEnded = true;

    if (route.authz === 'off') {
      if (!this.hasBody) req.resume();
      return this.forward();
    }
    req.on('end', () => this.onRequestEnd());
    if (this.hasBody) {
      this.bodyCap = Math.max(this.cfg.connectionBufferBytes - this.headBytes(), this.cfg.authz.maxRequestBytes);
      req.on('data', (chunk: Buffer) => this.onBodyChunk(chunk));
    } else {
      req.resume();
    }
    if (route.authz === 'headers' || !this.hasBody) this.startCheck();
  }

  private normalize(path: string): string | null {
    // compileFrontConfig accepts the three path settings only all on or all off.
    return this.cfg.normalizePath ? normalizeRequestPath(path) : path;
  }

  private matchRoute(): RouteSpec | null {
    const q = this.path.indexOf('?');
    const path = q === -1 ? this.path : this.path.slice(0, q);
    for (const r of this.cfg.routes) {
      if (r.path !== undefined ? path !== r.path : !path.startsWith(r.prefix ?? '')) continue;
      if (r.methods && !r.methods.test(this.method)) continue;
      return r;
    }
    return null;
  }

  /** Bytes of the request head as the client sent it (Envoy's connection buffer holds them too). */
  private headBytes(): number {
    const raw = this.req.rawHeaders;
    let n = this.method.length + (this.req.url ?? '').length + 12;
    for (let i = 0; i < raw.length; i += 2) n += (raw[i] as string).length + (raw[i + 1] as string).length + 4;
    return n;
  }

  private onBodyChunk(chunk: Buffer): void {
    this.idleTimer?.refresh();
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const route = this.route as RouteSpec;
    const max = this.cfg.authz.maxRequestBytes;
    if (route.authz === 'body' && !this.checkStarted && this.buffered >= max) {
      if (!this.cfg.authz.allowPartialMessage) {
        this.localReply(413, 'request_payload_too_large', [], '');
        return;
      }
      // Envoy checks with everything its read loop already holds; data node:http has already read
      // arrives before the next turn of the event loop.
      this.checkStarted = true;
      setImmediate(() => this.sendCheck());
    }
    if (this.buffered >= this.bodyCap) this.req.pause();
  }

  private onRequestEnd(): void {
    this.requestEnded = true;
    if (this.requestTimer) clearTimeout(this.requestTimer);
    if (this.route?.authz === 'body' && !this.checkStarted) this.startCheck();
  }

  private startCheck(): void {
    if (this.checkStarted) return;
    this.checkStarted = true;
    this.sendCheck();
  }

  private sendCheck(): void {
    if (this.finished) return;
    let body = null;
    if (this.route?.authz === 'body' && this.hasBody) {
      const all = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks, this.buffered);
      this.chunks = [all];
      const max = this.cfg.authz.maxRequestBytes;
      body = {
        bytes: all.length > max ? all.subarray(0, max) : all,
        size: Math.min(all.length, this.bodyCap),
        partial: all.length > max,
      };
    }
    const socket = this.req.socket;
    const check = buildCheckRequest({
      id: this.front.nextStreamId(),
      time: this.time,
      method: this.method,
      path: this.path,
      authority: this.authority,
      headers: this.headers,
      body,
      source: { address: plainAddress(socket.remoteAddress), port: socket.remotePort ?? 0 },
      destination: { address: plainAddress(socket.localAddress), port: socket.localPort ?? 0 },
    });
    this.checkCall = this.front.check(check, (err, res) => this.onCheck(err, res));
  }

  /** One reading of a Check's outcome, whichever way it was called. */
  private onCheck(err: Error | null, response: CheckResponse | undefined): void {
    this.checkCall = null;
    if (this.finished) return;
    let decision: ReturnType<typeof readCheckResponse> | null = null;
    if (!err && response) {
      try {
        decision = readCheckResponse(response, this.cfg.authz.validateMutations);
      } catch {
        // A message missing parts a decoded one always has (only an in-process handler can send
        // one): as unusable as an RPC that failed.
      }
    }
    if (decision === null) return this.localReply(this.cfg.authz.statusOnError, 'ext_authz_error', [], '');
    if (decision.kind === 'invalid') return this.localReply(500, 'ext_authz_invalid_response', [], '');
    if (decision.kind === 'deny') {
      return this.localReply(decision.status, 'ext_authz_denied', decision.headers, decision.body);
    }
    const mutation = decision.mutation;
    if (mutation) {
      applyRequestMutation(this, mutation);
      // Envoy re-checks its request header limits after authz added headers (pseudo-headers count),
      // before it takes authz's response headers.
      if ((mutation.set.length > 0 || mutation.append.length > 0) && this.overHeaderLimits()) {
        return this.localReply(500, 'ext_authz_invalid_response', [], '');
      }
      this.responseOps = mutation.response;
    }
    this.forward();
  }

  private overHeaderLimits(): boolean {
    const list = this.headers;
    if (list.length / 2 + 4 > this.cfg.maxRequestHeaders) return true;
    let bytes = this.authority.length + this.path.length + this.method.length + 'http'.length + 28;
    for (const s of list) bytes += s.length;
    return bytes > this.cfg.maxRequestHeadersBytes;
  }

  private upstreamHeaders(): OutgoingHttpHeaders {
    const out: OutgoingHttpHeaders = { host: this.authority };
    const list = this.headers;
    for (let i = 0; i < list.length; i += 2) {
      const name = list[i] as string;
      const value = list[i + 1] as string;
      const prev = out[name];
      if (prev === undefined) out[name] = value;
      else if (Array.isArray(prev)) prev.push(value);
      else out[name] = [String(prev), value];
    }
    if (this.hasBody) {
      // Chunked when the client was, or when authz removed content-length.
      if (out['content-length'] === undefined) out['transfer-encoding'] = 'chunked';
    } else if (!BODILESS.has(this.method) && out['content-length'] === undefined) {
      out['content-length'] = '0';
    }
    return out;
  }

  private forward(): void {
    if (this.finished) return;
    const route = this.route as RouteSpec;
    for (const h of route.removeRequestHeaders) headerRemove(this.headers, h);
    const headers = this.upstreamHeaders();
    // node:http writes the head at once when the options carry `Expect`; it is set afterwards so
    // that the head can still lose the `Connection` header node:http would add.
    const expect = headers['expect'];
    delete headers['expect'];
    let up: ClientRequest;
    try {
      up = httpRequest(
        {
          ...this.front.upstream,
          agent: this.front.agent,
          method: this.method,
          path: this.path,
          headers,
          setHost: false,
        },
        (upRes) => this.onUpstreamResponse(upRes),
      );
      // Envoy sends no `Connection` header upstream; HTTP/1.1 keeps the connection alive anyway.
      up.removeHeader('connection');
      if (expect !== undefined) up.setHeader('expect', expect);
    } catch {
      // Only reachable with validate_mutations off: authz asked for a header node:http cannot send.
      return this.localReply(500, 'ext_authz_invalid_response', [], '');
    }
    this.upstream = up;
    up.on('error', () => this.onUpstreamError());
    up.on('socket', (s: Socket) => {
      if (!s.connecting) return;
      const timer = setTimeout(() => up.destroy(), this.front.cfg.gateway.connectTimeoutMs);
      s.once('connect', () => clearTimeout(timer));
      s.once('close', () => clearTimeout(timer));
    });
    for (const c of this.chunks) up.write(c);
    this.chunks = [];
    if (this.requestEnded) {
      up.end();
      this.startRouteTimer();
      return;
    }
    const req = this.req;
    req.removeAllListeners('data');
    req.on('data', () => this.idleTimer?.refresh());
    req.once('end', () => {
      this.requestEnded = true;
      if (this.requestTimer) clearTimeout(this.requestTimer);
      this.startRouteTimer();
    });
    req.pipe(up);
  }

  private startRouteTimer(): void {
    const ms = this.route?.timeoutMs ?? 0;
    if (ms > 0 && !this.finished)
      this.routeTimer = setTimeout(() => this.onTimeout(504, 'upstream_response_timeout'), ms);
  }

  private onUpstreamResponse(upRes: IncomingMessage): void {
    if (this.finished) {
      upRes.destroy();
      return;
    }
    const list: HeaderList = [];
    let hadLength = false;
    const raw = upRes.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = (raw[i] as string).toLowerCase();
      if (name === 'content-length') hadLength = true;
      list.push(name, raw[i + 1] as string);
    }
    dropHopByHop(list);
    if (this.responseOps) applyResponseOps(list, this.responseOps);
    const close = this.closeAfterReply();
    finishHead(list, close);
    const status = upRes.statusCode ?? 502;
    const bodiless = status < 200 || status === 204 || status === 304;
    // Also on a response to HEAD, which node:http sends without framing headers.
    if (!hadLength && !bodiless) list.push('transfer-encoding', 'chunked');
    this.headSent = true;
    const res = this.res;
    if (!close) res.removeHeader('connection');
    res.writeHead(status, reasonPhrase(status), list);
    // What the gateway sends in one turn of the event loop leaves in one write: a short answer's
    // body and its end arrive in different ticks of the same turn, and would otherwise reach the
    // client as two segments (two syscalls, two wake-ups). end() uncorks fully by itself; the
    // timer only flushes a body that goes on (SSE), and leaves alone a response already ended,
    // whose connection may carry the next response by then.
    let corked = false;
    const uncork = (): void => {
      corked = false;
      if (!res.writableEnded && !res.destroyed) res.uncork();
    };
    upRes.on('data', (chunk: Buffer) => {
      this.idleTimer?.refresh();
      if (!corked) {
        corked = true;
        res.cork();
        setImmediate(uncork);
      }
      if (!res.write(chunk)) {
        upRes.pause();
        res.once('drain', () => upRes.resume());
      }
    });
    upRes.on('end', () => {
      this.finished = true;
      this.clearTimers();
      res.end();
    });
    upRes.on('close', () => {
      // The gateway went away mid-body: Envoy resets the stream, which on HTTP/1 closes the
      // connection without the terminating chunk.
      if (!upRes.complete) this.abort();
    });
  }

  private onUpstreamError(): void {
    if (this.finished) return;
    if (this.headSent) return this.abort();
    this.localReply(503, 'upstream_reset_before_response_started', [], '');
  }

  private onTimeout(status: number, details: string): void {
    if (this.finished) return;
    if (this.headSent) return this.abort();
    this.localReply(status, details, [], '');
  }

  /** Envoy closes an HTTP/1 connection when it answers before the request is in, or when asked to. */
  private closeAfterReply(): boolean {
    return this.clientClose || !this.requestEnded;
  }

  /** A codec-level refusal: Envoy always closes the connection after it. */
  private reject(status: number): void {
    this.replyWith(buildLocalReply(this.cfg.mappers, 'codec_error', status, [], '', true), true);
  }

  private localReply(status: number, details: string, headers: HeaderList, body: string): void {
    // A reply before the body was read: Envoy cannot know where the next request starts.
    const close = this.clientClose || (this.hasBody && !this.requestEnded);
    this.replyWith(buildLocalReply(this.cfg.mappers, details, status, headers, body, close, this.responseOps), close);
  }

  private replyWith(reply: ReturnType<typeof buildLocalReply>, close: boolean): void {
    if (this.finished || this.headSent) {
      this.abort();
      return;
    }
    this.finished = true;
    this.headSent = true;
    this.clearTimers();
    this.cancelWork();
    const res = this.res;
    if (nodeCanWrite(reply.status, reply.body.length)) {
      if (!close) res.removeHeader('connection');
      res.writeHead(reply.status, reasonPhrase(reply.status), reply.headers);
      res.end(reply.body);
      return;
    }
    this.req.socket.end(rawResponse(reply, this.method === 'HEAD'));
  }

  private cancelWork(): void {
    if (this.checkCall) {
      this.checkCall.cancel();
      this.checkCall = null;
    }
    if (this.upstream) {
      this.req.unpipe(this.upstream);
      this.upstream.destroy();
      this.upstream = null;
    }
  }

  private clearTimers(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.requestTimer) clearTimeout(this.requestTimer);
    if (this.routeTimer) clearTimeout(this.routeTimer);
    this.idleTimer = this.requestTimer = this.routeTimer = null;
  }

  /** The client went away, or the exchange cannot finish cleanly: drop everything. */
  private abort(): void {
    const wasFinished = this.finished;
    this.finished = true;
    this.clearTimers();
    this.cancelWork();
    if (!wasFinished || !this.res.writableFinished) this.res.destroy();
  }
}
