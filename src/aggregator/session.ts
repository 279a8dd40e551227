/**
 * One agent session (`mcp-session-id`): which backends it uses, what it has in flight, where the
 * gateway's messages to it go, and the requests the gateway relays to it on a backend's behalf.
 *
 * Delivery: a message related to a request in flight goes on that request's POST stream when the
 * agent accepted SSE there; anything else on the session's GET stream; with neither open it waits
 * in a short queue for the GET stream.
 */
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import type { Role } from '../policy/layer1-types.js';
import type { Backend } from './backend.js';
import {
  JSONRPC_INTERNAL_ERROR,
  JSONRPC_INVALID_PARAMS,
  isPlainObject,
  notificationMessage,
  type JsonObject,
  type JsonRpcId,
  type JsonValue,
  type OutgoingMessage,
} from './protocol.js';

/** Where messages to the agent can be written; `send` is false when this sink cannot take one. */
export interface MessageSink {
  send(message: OutgoingMessage): boolean;
}

export interface InFlight {
  id: JsonRpcId;
  abort: AbortController;
  /** The backend service the request went to, once known. */
  service: string | null;
  sink: MessageSink | null;
  startedAt: number;
}

interface PendingClientRequest {
  resolve(result: JsonObject): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export type ListKind = 'tools' | 'prompts' | 'resources';

export interface SessionOptions {
  id: string;
  userId: string;
  role: Role;
  protocolVersion: string;
  clientCapabilities: JsonObject;
  mintRequestId: () => string;
  /** How long an agent has to answer a relayed sampling / elicitation / roots request. */
  clientRequestTimeoutMs: number;
  queueLimit?: number;
}

/** Key of a JSON-RPC id: `1` and `"1"` are different requests. */
export function idKey(id: JsonRpcId): string {
  return typeof id === 'number' ? `n:${id}` : `s:${id}`;
}

export class AgentSession {
  readonly id: string;
  readonly userId: string;
  readonly role: Role;
  readonly protocolVersion: string;
  readonly clientCapabilities: JsonObject;
  readonly createdAt = Date.now();
  lastActive = Date.now();
  /** service → the backend this session uses for it. */
  readonly backends = new Map<string, Backend>();
  readonly inflight = new Map<string, InFlight>();
  /** `service\nbackend uri` of each resource this session subscribed to. */
  readonly subscriptions = new Set<string>();
  #stream: MessageSink | null = null;
  #queue: OutgoingMessage[] = [];
  #dropped = 0;
  readonly #pending = new Map<string, PendingClientRequest>();
  readonly #listChanged = new Set<ListKind>();
  #listTimer: NodeJS.Timeout | null = null;
  #closed = false;
  readonly #o: SessionOptions;

  constructor(o: SessionOptions) {
    this.#o = o;
    this.id = o.id;
    this.userId = o.userId;
    this.role = o.role;
    this.protocolVersion = o.protocolVersion;
    this.clientCapabilities = o.clientCapabilities;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get hasStream(): boolean {
    return this.#stream !== null;
  }

  /** Messages dropped because the queue for an absent GET stream overflowed. */
  get droppedMessages(): number {
    return this.#dropped;
  }

  touch(): void {
    this.lastActive = Date.now();
  }

  /** Attaches the GET stream; false when one is already open (the spec allows one per session here). */
  openStream(sink: MessageSink): boolean {
    if (this.#stream !== null || this.#closed) return false;
    this.#stream = sink;
    const queued = this.#queue;
    this.#queue = [];
    for (const m of queued) this.deliver(m);
    return true;
  }

  closeStream(sink: MessageSink): void {
    if (this.#stream === sink) this.#stream = null;
  }

  deliver(message: OutgoingMessage, related?: MessageSink | null): void {
    if (this.#closed) return;
    if (related && related.send(message)) return;
    if (this.#stream && this.#stream.send(message)) return;
    this.#queue.push(message);
    const limit = this.#o.queueLimit ?? 256;
    while (this.#queue.length > limit) {
      this.#queue.shift();
      this.#dropped++;
    }
  }

  /** Coalesces bursts of list_changed from several backends into one notification per kind. */
  listChanged(kind: ListKind): void {
    if (this.#closed) return;
    this.#listChanged.add(kind);
    if (this.#listTimer) return;
    this.#listTimer = setTimeout(() => {
      this.#listTimer = null;
      const kinds = [...this.#listChanged];
      this.#listChanged.clear();
      for (const k of kinds) this.deliver(notificationMessage(`notifications/${k}/list_changed`));
    }, 20);
    this.#listTimer.unref();
  }

  /** The stream of the newest request in flight to `service`, for messages that relate to it. */
  relatedSink(service: string): MessageSink | null {
    let best: InFlight | null = null;
    for (const f of this.inflight.values()) {
      if (f.service === service && f.sink && (!best || f.startedAt >= best.startedAt)) best = f;
    }
    return best?.sink ?? null;
  }

  hasInflightTo(service: string): boolean {
    for (const f of this.inflight.values()) if (f.service === service) return true;
    return false;
  }

  /** What the agent declared it can do, for relaying server→client requests. */
  supportsClientMethod(method: string): boolean {
    const caps = this.clientCapabilities;
    switch (method) {
      case 'sampling/createMessage':
        return isPlainObject(caps['sampling']);
      case 'elicitation/create':
        return isPlainObject(caps['elicitation']);
      case 'roots/list':
        return isPlainObject(caps['roots']);
      default:
        return false;
    }
  }

  /**
   * Sends a request to the agent under an id minted for this session (authz lets the answer
   * through only for such ids) and waits for the answer.
   */
  requestClient(
    method: string,
    params: JsonObject | undefined,
    signal: AbortSignal,
    related: MessageSink | null,
  ): Promise<JsonObject> {
    if (this.#closed) return Promise.reject(new McpError(JSONRPC_INTERNAL_ERROR, 'The agent session has ended'));
    const id = this.#o.mintRequestId();
    return new Promise<JsonObject>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(entry.timer);
        this.#pending.delete(id);
        signal.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        done();
        this.deliver(
          notificationMessage('notifications/cancelled', { requestId: id, reason: 'cancelled by the server' }),
        );
        reject(new McpError(JSONRPC_INTERNAL_ERROR, 'Cancelled'));
      };
      const entry: PendingClientRequest = {
        resolve: (r) => {
          done();
          resolve(r);
        },
        reject: (e) => {
          done();
          reject(e);
        },
        timer: setTimeout(() => {
          entry.reject(new McpError(JSONRPC_INTERNAL_ERROR, `The agent did not answer ${method} in time`));
          this.deliver(notificationMessage('notifications/cancelled', { requestId: id, reason: 'timeout' }));
        }, this.#o.clientRequestTimeoutMs),
      };
      entry.timer.unref();
      this.#pending.set(id, entry);
      signal.addEventListener('abort', onAbort, { once: true });
      const message: OutgoingMessage =
        params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params };
      this.deliver(message, related);
    });
  }

  /** The agent's answer to a relayed request; false when no such request is waiting. */
  answerClientRequest(
    id: JsonRpcId,
    answer: { result: JsonValue } | { error: { code: number; message: string; data?: JsonValue } },
  ): boolean {
    if (typeof id !== 'string') return false;
    const entry = this.#pending.get(id);
    if (!entry) return false;
    if ('result' in answer) {
      if (isPlainObject(answer.result)) entry.resolve(answer.result as JsonObject);
      else entry.reject(new McpError(JSONRPC_INVALID_PARAMS, 'The agent answered with a result that is not an object'));
    } else {
      entry.reject(new McpError(answer.error.code, answer.error.message, answer.error.data));
    }
    return true;
  }

  /** Ends the session: requests in flight are cancelled, relayed requests fail. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#listTimer) clearTimeout(this.#listTimer);
    for (const f of this.inflight.values()) f.abort.abort(new Error('session closed'));
    this.inflight.clear();
    for (const p of [...this.#pending.values()])
      p.reject(new McpError(JSONRPC_INTERNAL_ERROR, 'The agent session has ended'));
    this.#queue = [];
    this.#stream = null;
  }
}
