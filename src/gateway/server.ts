/**
 * The gateway role's HTTP server (DESIGN §2): `/mcp`, `/healthz`, `/.well-known/jwks.json` and
 * the `/admin/v1` mount, on 127.0.0.1:3000 behind the front.
 *
 * A thin node:http shell over the aggregator rather than the SDK's StreamableHTTPServerTransport:
 * the transport would parse bodies with JSON.parse (we must parse the exact bytes authz parsed, with
 * the same strict parser), number the server→client requests itself (ours are HMAC-bound to the
 * session so authz can admit the answers statelessly), and own session ids and their lifecycle
 * (ours are minted with the session key and bound to the user). What is left of Streamable HTTP
 * (JSON or SSE answers, the GET stream, DELETE) is small and lives in sse.ts.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { memorySocketPair } from '../util/memory-socket.js';
import type { AddressInfo } from 'node:net';
import {
  Aggregator,
  errorMessage,
  JSONRPC_INTERNAL_ERROR,
  JSONRPC_INVALID_REQUEST,
  JSONRPC_POLICY_ERROR,
  type AggregatorOptions,
  type BackendTimeouts,
  type BackoffOptions,
  type EnvFor,
  type GatewayPolicy,
  type HeadersFor,
  type JsonRpcId,
  type JsonValue,
  type NamingOptions,
  type UserLookup,
} from '../aggregator/index.js';
import { routePath } from '../authz/http-view.js';
import { parseJsonRpc } from '../authz/jsonrpc.js';
import { createInternalJwtVerifier } from '../identity/internal-jwt.js';
import type { PublicKeySource } from '../identity/key-ring.js';
import { verifySessionId } from '../identity/session.js';
import type { Logger } from '../log.js';
import { accepts, checkProtocolVersionHeader, originAllowed } from './checks.js';
import { PostResponder, StreamSink, writeJson } from './sse.js';
import { keyRefresher, ReplayGuard, verifyCaller, type TrustedCaller } from './trust.js';

/**
 * Serves `/admin/v1` and everything under it, after the gateway checked the internal token. The
 * body is unread: authz never saw it (admin bodies carry secrets), so the request MAC there binds
 * only the decision id, and the handler parses the body itself.
 */
export type AdminHandler = (req: IncomingMessage, res: ServerResponse, caller: TrustedCaller) => void | Promise<void>;

export interface GatewayKeys {
  /** Key of `mcp-session-id` values (shared with authz). */
  sessionKey: Uint8Array;
  /** Key of `x-mcpgw-request-mac` (shared with authz). */
  requestMacKey: Uint8Array;
  /**
   * Public keys of the internal JWT; also published at /.well-known/jwks.json. A ring with
   * `reload()` (FileKeyRing) is re-read when a token names an unknown key (authz rotated it).
   */
  keyRing: PublicKeySource & { reload?: () => Promise<void> };
}

export interface GatewayOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 3000; 0 picks a free port. */
  port?: number;
  /** The policy in force (see `gatewayPolicyFrom` for the authz PolicyHolder). */
  policy: () => GatewayPolicy;
  identities: UserLookup;
  keys: GatewayKeys;
  logger: Logger;
  /** Secrets to inject into a service's child (the credentials layer); none by default. */
  envFor?: EnvFor;
  headersFor?: HeadersFor;
  naming?: Partial<NamingOptions>;
  timeouts?: Partial<BackendTimeouts>;
  backoff?: Partial<BackoffOptions>;
  /** Browser origins allowed besides loopback ones. */
  allowedOrigins?: string[];
  /** Default true: http(s)://localhost|127.0.0.1|[::1] on any port. */
  allowLoopbackOrigins?: boolean;
  /** Bodies above this are refused; authz never authorizes more (Envoy's max_request_bytes). Default 1 MiB. */
  maxBodyBytes?: number;
  admin?: AdminHandler;
  serverInfo?: { name: string; version: string };
  redact?: (v: JsonValue) => JsonValue;
  clientRequestTimeoutMs?: number;
  sessionIdleMs?: number;
  maxSessionsPerUser?: number;
  /** How often the policy is checked for a new revision (list_changed, backend restarts). Default 1 s. */
  policyPollMs?: number;
  /** Comment lines on idle SSE streams. Default 25 s. */
  keepaliveMs?: number;
  /** Working directory of stdio children. */
  cwd?: string;
}

export interface GatewayServer {
  readonly host: string;
  readonly port: number;
  readonly aggregator: Aggregator;
  setAdminHandler(handler: AdminHandler | null): void;
  /** After a grant change: the user's sessions (or all) get list_changed. */
  notifyGrantsChanged(userId?: string): void;
  /**
   * A connection to this gateway's HTTP server that never leaves the process (for the built-in
   * front under `--role all`); requests on it are checked exactly as those over TCP.
   */
  connectInProcess(): Duplex;
  /**
   * POST requests being answered now (calls and notifications; not GET streams). Background work
   * of this process (the audit write-behind) waits for a moment with none rather than hold the
   * thread in the middle of a call.
   */
  readonly postsInFlight: number;
  /** Stops listening, ends sessions and stops every backend. */
  close(): Promise<void>;
}

const DEFAULT_MAX_BODY = 1024 * 1024;

/** `src/gateway/` and `dist/gateway/` are both two levels below the package root. */
function packageVersion(): string {
  try {
    const pkg: unknown = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    const v = typeof pkg === 'object' && pkg !== null ? (pkg as { version?: unknown }).version : undefined;
    return typeof v === 'string' ? v : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

export async function startGateway(opts: GatewayOptions): Promise<GatewayServer> {
  const log = opts.logger;
  const aggOpts: AggregatorOptions = {
    policy: opts.policy,
    identities: opts.identities,
    sessionKey: opts.keys.sessionKey,
    logger: log,
    ...(opts.naming ? { naming: opts.naming } : {}),
    ...(opts.envFor ? { envFor: opts.envFor } : {}),
    ...(opts.headersFor ? { headersFor: opts.headersFor } : {}),
    ...(opts.timeouts ? { timeouts: opts.timeouts } : {}),
    ...(opts.backoff ? { backoff: opts.backoff } : {}),
    serverInfo: opts.serverInfo ?? { name: 'mcpgw', version: packageVersion() },
    ...(opts.redact ? { redact: opts.redact } : {}),
    ...(opts.clientRequestTimeoutMs !== undefined ? { clientRequestTimeoutMs: opts.clientRequestTimeoutMs } : {}),
    ...(opts.sessionIdleMs !== undefined ? { sessionIdleMs: opts.sessionIdleMs } : {}),
    ...(opts.maxSessionsPerUser !== undefined ? { maxSessionsPerUser: opts.maxSessionsPerUser } : {}),
    ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
  };
  const aggregator = new Aggregator(aggOpts);
  const replay = new ReplayGuard();
  const ring = opts.keys.keyRing;
  const reload = ring.reload?.bind(ring);
  const trust = {
    keys: ring,
    verifier: createInternalJwtVerifier(ring),
    requestMacKey: opts.keys.requestMacKey,
    replay,
    ...(reload ? { refreshKeys: keyRefresher({ reload }) } : {}),
  };
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const keepaliveMs = opts.keepaliveMs ?? 25_000;
  let admin: AdminHandler | null = opts.admin ?? null;

  const fail = (
    res: ServerResponse,
    status: number,
    code: number,
    message: string,
    id: JsonRpcId | null = null,
    headers: Record<string, string> = {},
  ) => writeJson(res, status, errorMessage(id, code, message), headers);

  /** The caller authz vouched for, or a 401 already sent. */
  const authenticate = async (
    req: IncomingMessage,
    res: ServerResponse,
    body: Uint8Array,
  ): Promise<TrustedCaller | null> => {
    const t = await verifyCaller(req.headers, body, trust);
    if (t.ok) return t.caller;
    log.warn(
      { code: t.code, path: routePath(req.url ?? '/'), method: req.method },
      'request refused: not vouched for by authz',
    );
    fail(res, 401, JSONRPC_POLICY_ERROR, 'Unauthorized: requests reach the gateway only through authz');
    return null;
  };

  const sessionOf = (req: IncomingMessage, res: ServerResponse, caller: TrustedCaller, id: JsonRpcId | null) => {
    const sid = header(req, 'mcp-session-id');
    if (sid === undefined) {
      fail(res, 400, JSONRPC_INVALID_REQUEST, 'Missing mcp-session-id: send initialize first', id);
      return null;
    }
    const session = verifySessionId(opts.keys.sessionKey, sid, caller.userId) ? aggregator.session(sid) : undefined;
    if (!session || session.userId !== caller.userId) {
      fail(res, 404, JSONRPC_INVALID_REQUEST, 'Session not found; send initialize again', id);
      return null;
    }
    return session;
  };

  const versionOk = (req: IncomingMessage, res: ServerResponse, id: JsonRpcId | null): boolean => {
    const v = checkProtocolVersionHeader(header(req, 'mcp-protocol-version'));
    if (!v.ok) fail(res, 400, JSONRPC_INVALID_REQUEST, v.message, id);
    return v.ok;
  };

  async function post(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, maxBody);
    if (body === null) return fail(res, 413, JSONRPC_INVALID_REQUEST, 'Request body too large');
    const caller = await authenticate(req, res, body);
    if (!caller) return;
    const contentType = (header(req, 'content-type') ?? '').split(';')[0]?.trim().toLowerCase();
    if (contentType !== 'application/json') {
      return fail(res, 415, JSONRPC_INVALID_REQUEST, 'Content-Type must be application/json');
    }
    const msg = parseJsonRpc(body);
    if (msg.kind === 'invalid') return fail(res, 400, msg.jsonRpcCode, msg.message, msg.id);

    if (msg.kind === 'request' && msg.method === 'initialize') {
      if (header(req, 'mcp-session-id') !== undefined) {
        return fail(
          res,
          400,
          JSONRPC_INVALID_REQUEST,
          'initialize starts a new session: send it without mcp-session-id',
          msg.id,
        );
      }
      const { session, response } = await aggregator.initialize(
        { id: caller.userId, role: caller.role },
        msg.id,
        msg.params,
      );
      return writeJson(res, 200, response, session ? { 'mcp-session-id': session.id } : {});
    }
    const id = msg.kind === 'notification' ? null : msg.id;
    if (!versionOk(req, res, id)) return;
    if (msg.kind === 'request' && msg.method === 'ping' && header(req, 'mcp-session-id') === undefined) {
      return writeJson(res, 200, { jsonrpc: '2.0', id: msg.id, result: {} });
    }
    const session = sessionOf(req, res, caller, id);
    if (!session) return;
    if (msg.kind === 'notification') {
      aggregator.handleNotification(session, msg);
      res.writeHead(202).end();
      return;
    }
    if (msg.kind === 'response') {
      aggregator.handleResponse(session, msg);
      res.writeHead(202).end();
      return;
    }
    const responder = new PostResponder(res, accepts(header(req, 'accept'), 'text/event-stream'));
    responder.finish(await aggregator.handleRequest(session, msg, responder));
  }

  async function get(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, 0);
    if (body === null) return fail(res, 400, JSONRPC_INVALID_REQUEST, 'GET /mcp takes no body');
    const caller = await authenticate(req, res, body);
    if (!caller) return;
    if (!accepts(header(req, 'accept'), 'text/event-stream')) {
      return fail(res, 406, JSONRPC_INVALID_REQUEST, 'GET /mcp is an SSE stream: Accept text/event-stream');
    }
    if (!versionOk(req, res, null)) return;
    const session = sessionOf(req, res, caller, null);
    if (!session) return;
    if (session.hasStream) return fail(res, 409, JSONRPC_INVALID_REQUEST, 'This session already has a stream open');
    const sink = new StreamSink(res, keepaliveMs);
    res.on('close', () => {
      session.closeStream(sink);
      sink.close();
    });
    session.openStream(sink);
  }

  async function del(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, 0);
    if (body === null) return fail(res, 400, JSONRPC_INVALID_REQUEST, 'DELETE /mcp takes no body');
    const caller = await authenticate(req, res, body);
    if (!caller) return;
    if (!versionOk(req, res, null)) return;
    const session = sessionOf(req, res, caller, null);
    if (!session) return;
    await aggregator.closeSession(session);
    res.writeHead(204).end();
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = routePath(req.url ?? '/');
    const method = req.method ?? 'GET';
    if (path === '/healthz') {
      if (method !== 'GET' && method !== 'HEAD')
        return fail(res, 405, JSONRPC_INVALID_REQUEST, 'Only GET is allowed here');
      return writeJson(res, 200, { status: 'ok' });
    }
    if (path === '/.well-known/jwks.json') {
      if (method !== 'GET' && method !== 'HEAD')
        return fail(res, 405, JSONRPC_INVALID_REQUEST, 'Only GET is allowed here');
      const keys = await opts.keys.keyRing.verificationKeys();
      return writeJson(res, 200, { keys: keys.map((k) => ({ ...k.jwk })) }, { 'cache-control': 'public, max-age=60' });
    }
    const isAdmin = path === '/admin/v1' || path.startsWith('/admin/v1/');
    if (!isAdmin && path !== '/mcp') return fail(res, 404, JSONRPC_INVALID_REQUEST, 'Not found');
    // Both take credentials a web page could ride on (DNS rebinding), so both check Origin.
    if (!originAllowed(header(req, 'origin'), opts.allowedOrigins ?? [], opts.allowLoopbackOrigins ?? true)) {
      return fail(res, 403, JSONRPC_POLICY_ERROR, 'Origin not allowed');
    }
    if (isAdmin) {
      const caller = await authenticate(req, res, new Uint8Array(0));
      if (!caller) return;
      if (!admin) return fail(res, 404, JSONRPC_INVALID_REQUEST, 'The admin API is not enabled on this gateway');
      return admin(req, res, caller);
    }
    if (method === 'POST') return post(req, res);
    if (method === 'GET') return get(req, res);
    if (method === 'DELETE') return del(req, res);
    return fail(res, 405, JSONRPC_INVALID_REQUEST, `${method} is not allowed on /mcp`, null, {
      allow: 'GET, POST, DELETE',
    });
  }

  let posts = 0;
  const server: Server = createServer((req, res) => {
    if (req.method === 'POST') {
      posts++;
      res.once('close', () => posts--);
    }
    handle(req, res).catch((err: unknown) => {
      log.error(
        { err: err instanceof Error ? err.message : String(err), path: routePath(req.url ?? '/') },
        'gateway request failed',
      );
      if (!res.headersSent) fail(res, 500, JSONRPC_INTERNAL_ERROR, 'Internal gateway error');
      else res.destroy();
    });
  });
  // Receiving a request is quick; answers (SSE) may stream for hours and are not limited by these.
  server.requestTimeout = 60_000;
  server.headersTimeout = 20_000;
  // Envoy keeps upstream connections up to its idle timeout (1 h by default); closing first would
  // race a request Envoy is already sending on the connection.
  server.keepAliveTimeout = 61 * 60_000;

  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 3000, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const poll = setInterval(() => {
    try {
      aggregator.checkPolicy();
    } catch (err) {
      log.error({ err: err instanceof Error ? err.message : String(err) }, 'policy check failed');
    }
  }, opts.policyPollMs ?? 1000);
  poll.unref();
  log.info({ host, port }, 'gateway listening');

  let closing: Promise<void> | null = null;
  return {
    host,
    port,
    aggregator,
    setAdminHandler: (h) => {
      admin = h;
    },
    notifyGrantsChanged: (userId) => aggregator.notifyGrantsChanged(userId),
    get postsInFlight() {
      return posts;
    },
    connectInProcess() {
      const [front, gatewaySide] = memorySocketPair();
      if (closing) front.destroy();
      else server.emit('connection', gatewaySide);
      return front;
    },
    close() {
      closing ??= (async () => {
        clearInterval(poll);
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await aggregator.close();
        await closed;
        log.info('gateway stopped');
      })();
      return closing;
    },
  };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The whole body, or null when it is longer than `max` (the rest is not read). */
function readBody(req: IncomingMessage, max: number): Promise<Uint8Array | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      if (over) return;
      size += c.length;
      if (size > max) {
        over = true;
        chunks.length = 0;
        resolve(null);
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!over) resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
  });
}
