/**
 * One supervised connection to a backend MCP server: an SDK `Client` over a transport made on
 * demand. It reconnects (a stdio child is respawned) with exponential backoff whenever the
 * connection is lost; while it is down, calls fail at once with a JSON-RPC error that says so and
 * when to retry, instead of hanging. Every call has a deadline, timed here rather than by the SDK
 * so that a gateway timeout can be told apart from a backend's own -32001.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  ErrorCode,
  McpError,
  ResultSchema,
  type ClientCapabilities,
  type Implementation,
  type Progress,
  type ServerCapabilities,
} from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from '../log.js';
import {
  GATEWAY_BACKEND_TIMEOUT,
  GATEWAY_BACKEND_UNAVAILABLE,
  GatewayError,
  JSONRPC_INTERNAL_ERROR,
  JSONRPC_METHOD_NOT_FOUND,
  toJsonObject,
  type JsonObject,
  type JsonValue,
} from './protocol.js';

export interface BackendTimeouts {
  /** Spawn or connect, plus the MCP initialize handshake. */
  connectMs: number;
  /** A call with no answer (and, when progress was asked for, no progress) for this long is cancelled. */
  callMs: number;
  /** Upper bound on a call however much progress it reports. */
  maxCallMs: number;
  /** Lists (tools, resources, prompts) fetched to build the agent's view. */
  listMs: number;
}

export const DEFAULT_TIMEOUTS: BackendTimeouts = {
  connectMs: 15_000,
  callMs: 60_000,
  maxCallMs: 15 * 60_000,
  listMs: 10_000,
};

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  factor: number;
  /** A connection that stayed up this long starts the next backoff from `initialMs` again. */
  stableMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 30_000, factor: 2, stableMs: 30_000 };

/** The delay before reconnect attempt `attempt` (0-based). */
export function backoffDelay(attempt: number, o: BackoffOptions): number {
  return Math.min(o.maxMs, Math.round(o.initialMs * o.factor ** Math.min(attempt, 30)));
}

export interface BackendEvents {
  /** A notification other than progress and cancellation, which the SDK routes itself. */
  notification(method: string, params: JsonObject | undefined): void;
  /** A server→client request (sampling, elicitation, roots). Called only when server requests are allowed. */
  request(method: string, params: JsonObject | undefined, signal: AbortSignal): Promise<JsonObject>;
  /** Connected; `restarted` after a loss. */
  ready(restarted: boolean): void;
  down(reason: string): void;
}

export interface BackendOptions {
  service: string;
  /** For logs: `shared`, `user:<id>` or `session:<id prefix>`. */
  scope: string;
  connect: () => Promise<Transport>;
  capabilities: ClientCapabilities;
  /** False on children shared by several users: their requests would have no one to go to. */
  allowServerRequests: boolean;
  clientInfo: Implementation;
  timeouts: BackendTimeouts;
  backoff: BackoffOptions;
  logger: Logger;
  events: BackendEvents;
  /** Applied to everything a backend sends before it travels on (DESIGN §8); identity by default. */
  redact?: (v: JsonValue) => JsonValue;
}

export type BackendState = 'idle' | 'connecting' | 'ready' | 'backoff' | 'closed';

/** A progress notification's payload, already redacted. */
export interface ProgressUpdate {
  progress: number;
  total?: number;
  message?: string;
}

export interface CallOptions {
  signal?: AbortSignal;
  onprogress?: (p: ProgressUpdate) => void;
  timeoutMs?: number;
}

/** setTimeout's ceiling: above it Node fires after 1 ms. */
const NO_SDK_TIMEOUT = 2_147_483_647;

export class Backend {
  readonly service: string;
  readonly scope: string;
  #state: BackendState = 'idle';
  #client: Client | null = null;
  #connecting: Promise<void> | null = null;
  #attempt = 0;
  #retryAt = 0;
  #retryTimer: NodeJS.Timeout | null = null;
  #readySince = 0;
  #lastError = '';
  #everReady = false;
  #generation = 0;
  readonly #o: BackendOptions;

  constructor(o: BackendOptions) {
    this.#o = o;
    this.service = o.service;
    this.scope = o.scope;
  }

  get state(): BackendState {
    return this.#state;
  }

  /** Bumped on every successful connect; caches of what the backend lists are keyed on it. */
  get generation(): number {
    return this.#generation;
  }

  get serverCapabilities(): ServerCapabilities | undefined {
    return this.#client?.getServerCapabilities();
  }

  get instructions(): string | undefined {
    const text = this.#client?.getInstructions();
    if (text === undefined || !this.#o.redact) return text;
    const clean = this.#o.redact(text);
    return typeof clean === 'string' ? clean : undefined;
  }

  get lastError(): string {
    return this.#lastError;
  }

  start(): void {
    if (this.#state === 'idle') this.#connect();
  }

  /** The connected client, waiting for a connection in progress; throws a GatewayError when down. */
  async ready(): Promise<Client> {
    if (this.#state === 'idle') this.#connect();
    if (this.#state === 'connecting' && this.#connecting) await this.#connecting;
    const client = this.#client;
    if (this.#state === 'ready' && client) return client;
    throw this.#unavailable();
  }

  #unavailable(): GatewayError {
    if (this.#state === 'closed') {
      return new GatewayError(GATEWAY_BACKEND_UNAVAILABLE, `Service '${this.service}' is not available`, {
        service: this.service,
      });
    }
    const retryAfterMs = Math.max(0, this.#retryAt - Date.now());
    const why = this.#everReady ? 'restarting after a failure' : 'could not be started';
    return new GatewayError(
      GATEWAY_BACKEND_UNAVAILABLE,
      `Service '${this.service}' is unavailable (${why}); retry in ${Math.max(1, Math.ceil(retryAfterMs / 1000))} s`,
      { service: this.service, retryAfterMs },
    );
  }

  #connect(): void {
    if (this.#state === 'closed') return;
    this.#state = 'connecting';
    const attempt = (async () => {
      let transport: Transport | null = null;
      let client: Client | null = null;
      let timer: NodeJS.Timeout | undefined;
      try {
        const connectMs = this.#o.timeouts.connectMs;
        const deadline = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer to initialize within ${connectMs} ms`)), connectMs);
        });
        transport = await Promise.race([this.#o.connect(), deadline]);
        client = this.#newClient();
        await Promise.race([client.connect(transport, { timeout: connectMs }), deadline]);
        if (this.#state === 'closed') {
          await client.close();
          return;
        }
        const restarted = this.#everReady;
        this.#client = client;
        this.#state = 'ready';
        this.#everReady = true;
        this.#readySince = Date.now();
        this.#generation++;
        this.#o.logger.info({ service: this.service, scope: this.scope, restarted }, 'backend ready');
        this.#o.events.ready(restarted);
      } catch (err) {
        const reason = describe(err);
        this.#lastError = reason;
        this.#o.logger.warn({ service: this.service, scope: this.scope, err: reason }, 'backend connect failed');
        if (client) await client.close().catch(() => undefined);
        else if (transport) await transport.close().catch(() => undefined);
        this.#scheduleRetry();
      } finally {
        clearTimeout(timer);
      }
    })();
    this.#connecting = attempt;
  }

  #newClient(): Client {
    const client = new Client(this.#o.clientInfo, { capabilities: this.#o.capabilities });
    client.fallbackNotificationHandler = async (n) => {
      const params = n.params === undefined ? undefined : (this.#clean(n.params) ?? undefined);
      this.#o.events.notification(n.method, params);
    };
    client.fallbackRequestHandler = async (req, extra) => {
      if (!this.#o.allowServerRequests) {
        throw new McpError(
          JSONRPC_METHOD_NOT_FOUND,
          `${req.method} is disabled: this server is shared by several users of the gateway`,
        );
      }
      const params = req.params === undefined ? undefined : (this.#clean(req.params) ?? undefined);
      return this.#o.events.request(req.method, params, extra.signal);
    };
    client.onerror = (err) => {
      this.#o.logger.debug({ service: this.service, scope: this.scope, err: err.message }, 'backend protocol error');
    };
    client.onclose = () => this.#lost(client, 'connection closed');
    return client;
  }

  #clean(v: unknown): JsonObject | null {
    const obj = toJsonObject(v);
    if (obj === null || !this.#o.redact) return obj;
    const r = this.#o.redact(obj);
    return toJsonObject(r);
  }

  #lost(client: Client, reason: string): void {
    if (client !== this.#client) return;
    this.#client = null;
    this.#lastError = reason;
    this.#o.logger.warn({ service: this.service, scope: this.scope, reason }, 'backend lost');
    void client.close().catch(() => undefined);
    this.#o.events.down(reason);
    this.#scheduleRetry();
  }

  #scheduleRetry(): void {
    if (this.#state === 'closed') return;
    if (this.#readySince > 0 && Date.now() - this.#readySince >= this.#o.backoff.stableMs) this.#attempt = 0;
    this.#readySince = 0;
    const delay = backoffDelay(this.#attempt, this.#o.backoff);
    this.#attempt++;
    this.#state = 'backoff';
    this.#retryAt = Date.now() + delay;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#connect();
    }, delay);
    this.#retryTimer.unref();
  }

  /**
   * One request to the backend. The result is the backend's, redacted; a JSON-RPC error from the
   * backend keeps its code, message and data; the gateway's own failures are GatewayErrors.
   */
  async request(method: string, params: JsonObject | undefined, opts: CallOptions = {}): Promise<JsonObject> {
    const client = await this.ready();
    const timeoutMs = opts.timeoutMs ?? this.#o.timeouts.callMs;
    const local = new AbortController();
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        timedOut = true;
        local.abort(new Error('timeout'));
      }, timeoutMs);
    };
    arm();
    const total = setTimeout(() => {
      timedOut = true;
      local.abort(new Error('timeout'));
    }, this.#o.timeouts.maxCallMs);
    const onAbort = (): void => local.abort(opts.signal?.reason);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts.signal?.aborted) local.abort(opts.signal.reason);
    const onprogress = opts.onprogress;
    try {
      const result = await client.request(params === undefined ? { method } : { method, params }, ResultSchema, {
        signal: local.signal,
        timeout: NO_SDK_TIMEOUT,
        ...(onprogress
          ? {
              onprogress: (p: Progress) => {
                arm();
                // Progress messages are backend output too: redacted like results and errors.
                const clean = this.#clean(p);
                if (clean) onprogress(clean as unknown as Progress);
              },
            }
          : {}),
      });
      const clean = this.#clean(result);
      if (clean === null)
        throw new GatewayError(JSONRPC_INTERNAL_ERROR, `Service '${this.service}' sent an invalid result`);
      return clean;
    } catch (err) {
      if (timedOut) {
        throw new GatewayError(
          GATEWAY_BACKEND_TIMEOUT,
          `Service '${this.service}' did not answer ${method} in time; the call was cancelled`,
          { service: this.service, timeoutMs },
        );
      }
      throw this.#translate(err, client, method);
    } finally {
      clearTimeout(timer);
      clearTimeout(total);
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  #translate(err: unknown, client: Client, method: string): Error {
    if (err instanceof GatewayError) return err;
    if (err instanceof McpError) {
      // The SDK turns a lost connection into ConnectionClosed; anything else is the backend's answer.
      if (err.code === ErrorCode.ConnectionClosed && client !== this.#client) {
        return new GatewayError(
          GATEWAY_BACKEND_UNAVAILABLE,
          `Service '${this.service}' went away during ${method}; it is being restarted`,
          { service: this.service },
        );
      }
      const data = err.data === undefined ? undefined : this.#cleanValue(err.data);
      // McpError prefixes "MCP error <code>: "; the agent gets the backend's own message.
      const message = err.message.replace(/^MCP error -?\d+: /, '');
      const redacted = this.#o.redact ? this.#o.redact(message) : message;
      return new GatewayError(err.code, typeof redacted === 'string' ? redacted : 'backend error', data);
    }
    if (isSchemaError(err)) {
      return new GatewayError(JSONRPC_INTERNAL_ERROR, `Service '${this.service}' sent an invalid result to ${method}`);
    }
    // Transport failures (a refused connection, a dead child, an expired HTTP session): reconnect.
    this.#lost(client, describe(err));
    return new GatewayError(
      GATEWAY_BACKEND_UNAVAILABLE,
      `Service '${this.service}' is unreachable; it is being reconnected`,
      {
        service: this.service,
      },
    );
  }

  #cleanValue(v: unknown): JsonObject | undefined {
    const wrapped = this.#clean({ v });
    const inner = wrapped?.['v'];
    return inner !== undefined && inner !== null && typeof inner === 'object' && !Array.isArray(inner)
      ? (inner as JsonObject)
      : inner === undefined
        ? undefined
        : { value: inner };
  }

  async notify(method: string, params?: JsonObject): Promise<void> {
    const client = this.#client;
    if (this.#state !== 'ready' || !client) return;
    await client.notification(params === undefined ? { method } : { method, params }).catch((err: unknown) => {
      this.#o.logger.debug({ service: this.service, err: describe(err) }, 'notification to backend failed');
    });
  }

  /** Stops supervising and closes the connection (kills a child); ends an HTTP backend session first. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    const client = this.#client;
    this.#client = null;
    if (!client) return;
    const transport = client.transport as (Transport & { terminateSession?: () => Promise<void> }) | undefined;
    if (transport?.terminateSession) {
      await Promise.race([transport.terminateSession().catch(() => undefined), sleep(1000)]);
    }
    await client.close().catch(() => undefined);
  }
}

function isSchemaError(err: unknown): boolean {
  return err instanceof Error && (err.name === 'ZodError' || err.name === '$ZodError');
}

export function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  return typeof err === 'string' ? err : 'unknown error';
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
