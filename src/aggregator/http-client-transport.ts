/**
 * The client side of MCP's Streamable HTTP transport, on node:http / node:https with one
 * keep-alive Agent per transport. The SDK's StreamableHTTPClientTransport runs on fetch, web
 * streams and a stream-based SSE parser, which cost the gateway a sixth of its CPU per call; this
 * one reads the socket's chunks directly.
 *
 * Beyond the SDK's behaviour, for a gateway: redirects are never followed; an answer larger than
 * `maxMessageBytes` fails its request; a request whose answer turns out to be broken (invalid
 * JSON, too large, a stream that ends before the response) fails at once with a JSON-RPC error
 * instead of waiting for the caller's timeout; a request the caller cancels (the SDK sends
 * notifications/cancelled on timeout or abort) has its HTTP exchange torn down, so an unanswered
 * request never holds a socket; a 404 for our session, or a server-push stream that cannot be
 * reopened, closes the transport so its owner reconnects. Resuming a request from a token given
 * by the caller is not supported (the gateway never does); streams the server cuts short after an
 * event id are resumed with Last-Event-ID.
 */
import http, { type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { Transport, TransportSendOptions } from '@modelcontextprotocol/sdk/shared/transport.js';
import { ErrorCode, type JSONRPCMessage, type RequestId } from '@modelcontextprotocol/sdk/types.js';
import { SseParser, SseTooLargeError, type SseEvent } from './sse-parser.js';

export interface ReconnectOptions {
  initialMs: number;
  maxMs: number;
  factor: number;
  /** Failed attempts in a row after which a stream is given up. */
  maxRetries: number;
}

export const DEFAULT_RECONNECT: ReconnectOptions = { initialMs: 1000, maxMs: 30_000, factor: 1.5, maxRetries: 3 };

export interface HttpClientTransportOptions {
  /** Sent with every request (credentials among them: never logged, never put in an error). */
  headers?: Record<string, string>;
  /** The largest JSON body or SSE event accepted; a larger answer fails its request. */
  maxMessageBytes?: number;
  /**
   * Concurrent connections to the server. Unbounded by default, as with fetch: every call in
   * flight holds one until answered, and a bound would queue fast calls behind slow ones, or the
   * answer to a server's request (sampling) behind the very calls that wait for it.
   */
  maxSockets?: number;
  /** Idle connections kept open for reuse. */
  maxFreeSockets?: number;
  /**
   * An idle connection is closed after this long, before a server's own keep-alive timeout (5 s
   * for Node and uvicorn) can close it under a request we are writing. Servers that announce a
   * shorter one (Keep-Alive: timeout=N) are honoured by Node's Agent.
   */
  idleSocketMs?: number;
  /** Reopening the server-push stream and resuming cut streams. */
  reconnect?: Partial<ReconnectOptions>;
  /** How long a POST of a notification or a response, or a DELETE, waits for the server's status. */
  ackTimeoutMs?: number;
  /** How long a streamed answer may stay open once the response has come, before it is cut. */
  lingerMs?: number;
  /** Extra trusted certificate authorities for https (tests, private CAs). */
  ca?: string | Buffer | Array<string | Buffer>;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** A non-2xx HTTP status from the server. */
export class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpStatusError';
  }
}

/** One request waiting for its response, and the HTTP exchange currently carrying it. */
interface Exchange {
  readonly id: RequestId;
  /** Answered, failed or abandoned: nothing more is expected. */
  settled: boolean;
  req: ClientRequest | null;
  /** The answer is being streamed and the stream has not ended. */
  streaming: boolean;
  lastEventId: string | undefined;
  readonly onToken: ((token: string) => void) | undefined;
  attempts: number;
  timer: NodeJS.Timeout | undefined;
}

/** Our own headers: a configured header of the same name is dropped. */
const RESERVED = new Set([
  'accept',
  'connection',
  'content-length',
  'content-type',
  'keep-alive',
  'last-event-id',
  'mcp-protocol-version',
  'mcp-session-id',
  'transfer-encoding',
]);

const MAX_ERROR_BODY = 4096;

export class HttpClientTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: <T extends JSONRPCMessage>(message: T) => void;

  readonly #request: typeof http.request;
  readonly #agent: http.Agent;
  readonly #target: { host: string; port: number; path: string };
  readonly #base: OutgoingHttpHeaders;
  readonly #max: number;
  readonly #reconnect: ReconnectOptions;
  readonly #ackTimeoutMs: number;
  readonly #lingerMs: number;
  #postHeaders: OutgoingHttpHeaders = {};
  #sessionId: string | undefined;
  #protocolVersion: string | undefined;
  #started = false;
  #closed = false;
  readonly #requests = new Set<ClientRequest>();
  readonly #inflight = new Map<RequestId, Exchange>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #queue: JSONRPCMessage[] = [];
  #draining = false;
  /** The server's `retry`, which overrides our backoff. */
  #retryMs: number | undefined;
  /** The standalone GET stream of server-initiated messages. */
  #streamReq: ClientRequest | null = null;
  #streamLastId: string | undefined;
  /** Failed opens in a row; past maxRetries the server is taken for gone. */
  #streamAttempts = 0;
  /** Streams in a row that ended without a single event: reopened ever more slowly. */
  #streamEmpty = 0;
  #streamOpened = false;
  #streamStopped = false;

  constructor(url: URL, opts: HttpClientTransportOptions = {}) {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new Error(`unsupported URL scheme ${url.protocol} (http: or https: expected)`);
    }
    // As fetch does: credentials belong in the configured headers, where they are treated as secrets.
    if (url.username !== '' || url.password !== '') throw new Error('the URL must not contain credentials');
    const secure = url.protocol === 'https:';
    this.#request = secure ? https.request : http.request;
    const agentOptions: https.AgentOptions = {
      keepAlive: true,
      noDelay: true,
      maxSockets: opts.maxSockets ?? Infinity,
      maxFreeSockets: opts.maxFreeSockets ?? 16,
      timeout: opts.idleSocketMs ?? 4000,
      scheduling: 'lifo',
    };
    if (secure && opts.ca !== undefined) agentOptions.ca = opts.ca;
    this.#agent = secure ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
    this.#target = {
      host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: url.port === '' ? (secure ? 443 : 80) : Number(url.port),
      path: `${url.pathname}${url.search}`,
    };
    this.#base = configuredHeaders(opts.headers ?? {});
    this.#max = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.#reconnect = { ...DEFAULT_RECONNECT, ...opts.reconnect };
    this.#ackTimeoutMs = opts.ackTimeoutMs ?? 30_000;
    this.#lingerMs = opts.lingerMs ?? 2000;
    this.#rebuildHeaders();
  }

  get sessionId(): string | undefined {
    return this.#sessionId;
  }

  get protocolVersion(): string | undefined {
    return this.#protocolVersion;
  }

  /** HTTP requests under way (diagnostics and tests: an abandoned request must not stay here). */
  get activeRequests(): number {
    return this.#requests.size;
  }

  setProtocolVersion(version: string): void {
    this.#protocolVersion = version;
    this.#rebuildHeaders();
  }

  async start(): Promise<void> {
    if (this.#started) throw new Error('HttpClientTransport already started');
    if (this.#closed) throw new Error('HttpClientTransport is closed');
    this.#started = true;
  }

  send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.#closed || !this.#started) {
        reject(new Error(this.#closed ? 'the transport is closed' : 'the transport is not started'));
        return;
      }
      if (options?.resumptionToken !== undefined) {
        reject(new Error('resuming a request from a token is not supported by this transport'));
        return;
      }
      let ex: Exchange | null = null;
      if ('method' in message) {
        if ('id' in message) {
          ex = {
            id: message.id,
            settled: false,
            req: null,
            streaming: false,
            lastEventId: undefined,
            onToken: options?.onresumptiontoken,
            attempts: 0,
            timer: undefined,
          };
          this.#inflight.set(message.id, ex);
        } else if (message.method === 'notifications/cancelled') {
          // The caller gave up on that request (timeout or abort): its exchange is of no more use.
          this.#abandon((message.params as { requestId?: unknown } | undefined)?.requestId);
        }
      }
      this.#post(message, ex, resolve, reject);
    });
  }

  #post(message: JSONRPCMessage, ex: Exchange | null, resolve: () => void, reject: (e: Error) => void): void {
    const body = JSON.stringify(message);
    let req: ClientRequest;
    try {
      req = this.#open('POST', { ...this.#postHeaders, 'content-length': Buffer.byteLength(body) });
    } catch (err) {
      if (ex) this.#settle(ex);
      reject(toError(err));
      return;
    }
    if (ex) ex.req = req;
    let responded = false;
    const failed = (err: Error): void => {
      if (responded) return;
      responded = true;
      const quiet = this.#closed || ex?.settled === true;
      if (ex) this.#settle(ex);
      if (!quiet) this.onerror?.(err);
      reject(this.#closed ? closedError() : err);
    };
    req.on('error', (err) => failed(new Error(`POST to the server failed: ${err.message}`)));
    req.on('close', () => failed(new Error('POST to the server failed: the connection closed before an answer')));
    // A request is timed by its caller, which cancels it; nothing times a notification or a response but us.
    const ack = ex === null ? this.#ackTimer(req) : undefined;
    req.on('response', (res) => {
      clearTimeout(ack);
      if (responded) {
        res.destroy();
        return;
      }
      responded = true;
      this.#onPostResponse(message, ex, req, res, resolve, reject);
    });
    req.end(body);
  }

  #onPostResponse(
    message: JSONRPCMessage,
    ex: Exchange | null,
    req: ClientRequest,
    res: IncomingMessage,
    resolve: () => void,
    reject: (e: Error) => void,
  ): void {
    const hadSession = this.#sessionId !== undefined;
    this.#noteSession(res);
    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) {
      readDetail(res, (detail) => {
        const err = statusError(status, 'POST', detail, hadSession);
        if (ex) this.#settle(ex);
        reject(err);
        if (this.#closed) return;
        this.onerror?.(err);
        if (status === 404 && hadSession) this.#expire();
      });
      return;
    }
    if (ex === null || status === 202 || status === 204) {
      // A request accepted without an answer may still be answered on the server-push stream.
      res.resume();
      resolve();
      if ('method' in message && message.method === 'notifications/initialized' && !('id' in message)) {
        this.#openStream();
      }
      return;
    }
    const type = mediaType(res.headers['content-type']);
    if (type === 'text/event-stream') {
      resolve();
      this.#readSse(req, res, ex);
    } else if (type === 'application/json') {
      resolve();
      this.#readJson(req, res, ex);
    } else {
      res.destroy();
      const err = new Error(`the server answered with an unexpected content-type: ${type || '(none)'}`);
      this.#settle(ex);
      reject(err);
      this.onerror?.(err);
    }
  }

  #readJson(req: ClientRequest, res: IncomingMessage, ex: Exchange): void {
    const declared = Number(res.headers['content-length']);
    if (declared > this.#max) {
      this.#failExchange(ex, ErrorCode.InternalError, tooLarge(this.#max));
      req.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    res.on('data', (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > this.#max) {
        done = true;
        this.#failExchange(ex, ErrorCode.InternalError, tooLarge(this.#max));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    res.on('end', () => {
      if (done) return;
      done = true;
      if (this.#closed || ex.settled) return;
      const text = (chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size)).toString('utf8');
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        this.#failExchange(ex, ErrorCode.InternalError, `the server's answer is not valid JSON (${size} bytes)`);
        return;
      }
      if (!this.#accept(value)) {
        this.#failExchange(ex, ErrorCode.InternalError, "the server's answer is not a JSON-RPC message");
      } else if (!ex.settled) {
        this.#failExchange(ex, ErrorCode.InternalError, "the server's answer does not contain the response");
      }
    });
    res.on('error', () => undefined);
    res.on('close', () => {
      if (done) return;
      done = true;
      this.#failExchange(ex, ErrorCode.ConnectionClosed, 'the connection to the server was lost before it answered');
    });
  }

  /** Reads an SSE answer: of request `ex`, or the standalone server-push stream when `ex` is null. */
  #readSse(req: ClientRequest, res: IncomingMessage, ex: Exchange | null): void {
    const parser = new SseParser(this.#max);
    let done = false;
    let sawEvent = false;
    if (ex) ex.streaming = true;
    else this.#streamReq = req;
    const onEvent = (e: SseEvent): void => {
      if (done) return;
      if (ex) {
        if (e.id !== undefined) {
          ex.lastEventId = e.id;
          ex.onToken?.(e.id);
        }
      } else {
        sawEvent = true;
        this.#streamEmpty = 0;
        if (e.id !== undefined) this.#streamLastId = e.id;
      }
      if (e.type !== 'message' || e.data === '') return;
      let value: unknown;
      try {
        value = JSON.parse(e.data);
      } catch {
        value = undefined;
      }
      if (value !== undefined && this.#accept(value)) return;
      const why = `the server sent an event that is not a JSON-RPC message (${Buffer.byteLength(e.data)} bytes)`;
      if (ex) {
        // The broken event may have been the response: the request fails now rather than at its timeout.
        done = true;
        this.#failExchange(ex, ErrorCode.InternalError, why);
        req.destroy();
      } else {
        this.onerror?.(new Error(why));
      }
    };
    res.on('data', (chunk: Buffer) => {
      if (done) return;
      try {
        parser.push(chunk, onEvent);
      } catch (err) {
        done = true;
        const why =
          err instanceof SseTooLargeError ? tooLarge(this.#max) : `the server's stream broke: ${toError(err).message}`;
        if (ex) this.#failExchange(ex, ErrorCode.InternalError, why);
        else this.onerror?.(new Error(why));
        // For the push stream, 'close' follows and reopens it.
        req.destroy();
      }
    });
    res.on('error', () => undefined);
    res.on('close', () => {
      if (parser.retryMs !== undefined) this.#retryMs = parser.retryMs;
      if (ex) {
        ex.streaming = false;
        if (ex.settled) {
          this.#clearTimer(ex);
          return;
        }
        if (done || this.#closed) return;
        done = true;
        if (ex.lastEventId !== undefined) {
          this.#resumeLater(ex);
          return;
        }
        this.#failExchange(
          ex,
          ErrorCode.ConnectionClosed,
          res.complete
            ? 'the server ended the stream without answering'
            : 'the connection to the server was lost before it answered',
        );
        return;
      }
      done = true;
      this.#streamEnded(req, !sawEvent);
    });
  }

  /**
   * Takes a parsed body or event: a message or a batch of them. Messages are handed on one
   * microtask apart (see ChildProcessTransport#dispatch: a progress notification read together
   * with its response would otherwise be lost). False when the value is not JSON-RPC.
   */
  #accept(value: unknown): boolean {
    if (Array.isArray(value)) {
      if (value.length === 0 || !value.every(isMessage)) return false;
      for (const m of value) this.#enqueue(m);
      return true;
    }
    if (!isMessage(value)) return false;
    this.#enqueue(value);
    return true;
  }

  #enqueue(message: JSONRPCMessage): void {
    if ('id' in message && !('method' in message) && message.id !== undefined) {
      const ex = this.#inflight.get(message.id);
      if (ex) {
        this.#settle(ex);
        // The server should end the stream after the response; one that does not gives the socket back late.
        if (ex.streaming) {
          const req = ex.req;
          ex.timer = this.#later(this.#lingerMs, () => req?.destroy());
        }
      }
    }
    this.#queue.push(message);
    if (!this.#draining) {
      this.#draining = true;
      queueMicrotask(this.#drain);
    }
  }

  readonly #drain = (): void => {
    const message = this.#queue.shift();
    if (message !== undefined && !this.#closed) {
      try {
        this.onmessage?.(message);
      } catch (err) {
        this.onerror?.(toError(err));
      }
    }
    if (this.#queue.length > 0) queueMicrotask(this.#drain);
    else this.#draining = false;
  };

  /** Fails request `ex` with a JSON-RPC error of ours, so its caller learns now why. */
  #failExchange(ex: Exchange, code: number, message: string): void {
    if (ex.settled || this.#closed) return;
    this.#settle(ex);
    this.#clearTimer(ex);
    this.onerror?.(new Error(message));
    this.#queue.push({ jsonrpc: '2.0', id: ex.id, error: { code, message } });
    if (!this.#draining) {
      this.#draining = true;
      queueMicrotask(this.#drain);
    }
  }

  /** Nothing more is expected for `ex`. */
  #settle(ex: Exchange): void {
    ex.settled = true;
    if (this.#inflight.get(ex.id) === ex) this.#inflight.delete(ex.id);
  }

  #abandon(id: unknown): void {
    if (typeof id !== 'string' && typeof id !== 'number') return;
    const ex = this.#inflight.get(id);
    if (!ex) return;
    this.#settle(ex);
    this.#clearTimer(ex);
    ex.req?.destroy();
  }

  // -- GET streams: the standalone server-push stream, and resumption of cut answers -------------

  #openStream(): void {
    if (this.#closed || this.#streamStopped || this.#streamReq !== null) return;
    this.#get(null);
  }

  /**
   * The push stream ended (the server may close it at will): reopen it. A server that ends it at
   * once, again and again, is asked ever less often rather than once a second forever.
   */
  #streamEnded(req: ClientRequest, empty: boolean): void {
    if (this.#streamReq !== req) return;
    this.#streamReq = null;
    if (this.#closed || this.#streamStopped) return;
    const delay = this.#delay(this.#streamEmpty);
    if (empty) this.#streamEmpty++;
    this.#later(delay, () => this.#openStream());
  }

  #resumeLater(ex: Exchange): void {
    ex.timer = this.#later(this.#delay(ex.attempts), () => {
      ex.timer = undefined;
      if (!ex.settled && !this.#closed) this.#get(ex);
    });
  }

  #delay(attempt: number): number {
    const o = this.#reconnect;
    if (this.#retryMs !== undefined) return Math.min(o.maxMs, Math.max(100, this.#retryMs));
    return Math.min(o.maxMs, Math.round(o.initialMs * o.factor ** Math.min(attempt, 30)));
  }

  #get(ex: Exchange | null): void {
    const lastId = ex ? ex.lastEventId : this.#streamLastId;
    const headers = this.#sideHeaders();
    headers['accept'] = 'text/event-stream';
    if (lastId !== undefined) headers['last-event-id'] = lastId;
    let req: ClientRequest;
    try {
      req = this.#open('GET', headers);
    } catch (err) {
      this.#getFailed(ex, toError(err), false);
      return;
    }
    if (ex) ex.req = req;
    else this.#streamReq = req;
    let responded = false;
    const failed = (err: Error): void => {
      if (responded) return;
      responded = true;
      if (!ex && this.#streamReq === req) this.#streamReq = null;
      this.#getFailed(ex, err, false);
    };
    req.on('error', (err) => failed(new Error(`GET of the event stream failed: ${err.message}`)));
    req.on('close', () => failed(new Error('GET of the event stream failed: the connection closed before an answer')));
    req.on('response', (res) => {
      if (responded || this.#closed || ex?.settled) {
        responded = true;
        res.destroy();
        return;
      }
      responded = true;
      const hadSession = this.#sessionId !== undefined;
      this.#noteSession(res);
      const status = res.statusCode ?? 0;
      if (!ex && status === 405) {
        // The server offers no server-push stream: fine.
        res.resume();
        this.#streamReq = null;
        return;
      }
      if (status < 200 || status > 299) {
        readDetail(res, (detail) => {
          if (!ex && this.#streamReq === req) this.#streamReq = null;
          this.#getFailed(ex, statusError(status, 'GET', detail, hadSession), status === 404 && hadSession);
        });
        return;
      }
      const type = mediaType(res.headers['content-type']);
      if (type !== 'text/event-stream') {
        res.destroy();
        if (!ex && this.#streamReq === req) this.#streamReq = null;
        this.#getFailed(ex, new Error(`the event stream has content-type ${type || '(none)'}`), false);
        return;
      }
      if (ex) {
        ex.attempts = 0;
      } else {
        this.#streamAttempts = 0;
        this.#streamOpened = true;
      }
      this.#readSse(req, res, ex);
    });
    req.end();
  }

  #getFailed(ex: Exchange | null, err: Error, expired: boolean): void {
    if (this.#closed) return;
    const max = this.#reconnect.maxRetries;
    if (ex) {
      if (ex.settled) return;
      ex.attempts++;
      if (expired || ex.attempts > max) {
        this.#failExchange(ex, ErrorCode.ConnectionClosed, `the answer's stream could not be resumed: ${err.message}`);
        if (expired) this.#expire();
        return;
      }
      this.#resumeLater(ex);
      return;
    }
    if (this.#streamStopped) return;
    if (!this.#streamOpened) {
      // Like the SDK: a server that cannot open the stream at all simply has none.
      this.onerror?.(new Error(`the server's event stream could not be opened: ${err.message}`));
      return;
    }
    this.#streamAttempts++;
    if (expired || this.#streamAttempts > max) {
      // The server is gone or has forgotten us: closing lets the owner reconnect from scratch.
      this.onerror?.(new Error(`the server's event stream was lost and could not be reopened: ${err.message}`));
      this.#expire();
      return;
    }
    this.#later(this.#delay(this.#streamAttempts - 1), () => this.#openStream());
  }

  /** After the failure's own reports have landed, so the owner learns why before it learns of the close. */
  #expire(): void {
    const t = setImmediate(() => void this.close());
    t.unref();
  }

  // -- plumbing ---------------------------------------------------------------------------------

  #open(method: string, headers: OutgoingHttpHeaders): ClientRequest {
    const req = this.#request({ ...this.#target, method, headers, agent: this.#agent });
    this.#requests.add(req);
    req.once('close', () => this.#requests.delete(req));
    return req;
  }

  #ackTimer(req: ClientRequest): NodeJS.Timeout {
    const ms = this.#ackTimeoutMs;
    const t = setTimeout(() => req.destroy(new Error(`no answer within ${ms} ms`)), ms);
    t.unref();
    req.once('close', () => clearTimeout(t));
    return t;
  }

  #later(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      fn();
    }, ms);
    t.unref();
    this.#timers.add(t);
    return t;
  }

  #clearTimer(ex: Exchange): void {
    if (ex.timer === undefined) return;
    clearTimeout(ex.timer);
    this.#timers.delete(ex.timer);
    ex.timer = undefined;
  }

  #noteSession(res: IncomingMessage): void {
    const sid = res.headers['mcp-session-id'];
    if (typeof sid === 'string' && sid !== '' && sid !== this.#sessionId) {
      this.#sessionId = sid;
      this.#rebuildHeaders();
    }
  }

  #rebuildHeaders(): void {
    const h: OutgoingHttpHeaders = {
      ...this.#base,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    };
    if (this.#sessionId !== undefined) h['mcp-session-id'] = this.#sessionId;
    if (this.#protocolVersion !== undefined) h['mcp-protocol-version'] = this.#protocolVersion;
    this.#postHeaders = h;
  }

  #sideHeaders(): OutgoingHttpHeaders {
    const h: OutgoingHttpHeaders = { ...this.#base };
    if (this.#sessionId !== undefined) h['mcp-session-id'] = this.#sessionId;
    if (this.#protocolVersion !== undefined) h['mcp-protocol-version'] = this.#protocolVersion;
    return h;
  }

  /** Ends the session on the server (DELETE); a server that does not allow it answers 405, which is fine. */
  async terminateSession(): Promise<void> {
    if (this.#sessionId === undefined || this.#closed) return;
    // The server closes the push stream of a session it ends: that is no loss to recover from.
    this.#streamStopped = true;
    this.#streamReq?.destroy();
    await new Promise<void>((resolve, reject) => {
      const req = this.#open('DELETE', this.#sideHeaders());
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        reject(err);
      };
      const ack = this.#ackTimer(req);
      req.on('error', (err) => fail(new Error(`DELETE of the session failed: ${err.message}`)));
      req.on('close', () => fail(new Error('DELETE of the session failed: the connection closed before an answer')));
      req.on('response', (res) => {
        clearTimeout(ack);
        settled = true;
        const status = res.statusCode ?? 0;
        if ((status >= 200 && status <= 299) || status === 405) {
          res.resume();
          this.#sessionId = undefined;
          this.#rebuildHeaders();
          resolve();
          return;
        }
        readDetail(res, (detail) => reject(statusError(status, 'DELETE', detail, true)));
      });
      req.end();
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    this.#inflight.clear();
    this.#queue.length = 0;
    for (const req of this.#requests) req.destroy();
    this.#requests.clear();
    this.#agent.destroy();
    this.onclose?.();
  }
}

function configuredHeaders(headers: Record<string, string>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    const key = name.toLowerCase();
    if (RESERVED.has(key)) continue;
    try {
      http.validateHeaderName(key);
      http.validateHeaderValue(key, value);
    } catch {
      // The value may be a secret: only the name is told.
      throw new Error(`invalid HTTP header ${JSON.stringify(name)}`);
    }
    out[key] = value;
  }
  return out;
}

function isMessage(v: unknown): v is JSONRPCMessage {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && (v as { jsonrpc?: unknown }).jsonrpc === '2.0';
}

function mediaType(header: string | undefined): string {
  if (header === undefined) return '';
  const semi = header.indexOf(';');
  return (semi === -1 ? header : header.slice(0, semi)).trim().toLowerCase();
}

function tooLarge(max: number): string {
  return `the server's answer exceeds the limit of ${max} bytes`;
}

function closedError(): Error {
  return new Error('the transport is closed');
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function statusError(status: number, method: string, detail: string, hadSession: boolean): HttpStatusError {
  let why = '';
  if (status >= 300 && status < 400) why = ' (redirects are not followed)';
  else if (status === 404 && hadSession) why = ' (the session has expired)';
  return new HttpStatusError(status, `HTTP ${status} from the server on ${method}${why}${detail ? `: ${detail}` : ''}`);
}

/** The JSON-RPC error message of an error body, if it has one; bounded and printable. */
function readDetail(res: IncomingMessage, done: (detail: string) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  const finish = (): void => {
    if (finished) return;
    finished = true;
    let detail = '';
    try {
      const v: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      const m = (v as { error?: { message?: unknown } } | null)?.error?.message;
      if (typeof m === 'string') detail = m.replace(/[^\x20-\x7e]/g, ' ').slice(0, 200);
    } catch {
      detail = '';
    }
    done(detail);
  };
  res.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= MAX_ERROR_BODY) res.destroy();
  });
  res.on('end', finish);
  res.on('close', finish);
  res.on('error', () => undefined);
}
