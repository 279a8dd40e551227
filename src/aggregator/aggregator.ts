/**
 * The MCP aggregator: one agent-facing MCP server in front of every backend of the policy's
 * `services:`. It takes messages already authenticated and strictly parsed by the HTTP shell
 * (src/gateway/) and answers them; no socket in here.
 *
 * Backends are attached to sessions in one of three ways (the `scope` in logs):
 *  - `shared`: one stdio child for all users (the default). Server→client requests are refused
 *    (nobody to send them to), and notifications that are not list changes are dropped, because
 *    they could carry one user's data to another;
 *  - `user`: stdio with `isolation: per-user`, one child per user, shared by that user's sessions.
 *    It is told the client capabilities of the session that started it, and its requests go to
 *    the session waiting on it (else the most recently active one);
 *  - `session`: HTTP and SSE backends, one backend session per agent session, so requests,
 *    notifications and subscriptions map one to one.
 */
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { ClientCapabilitiesSchema, McpError, type ClientCapabilities } from '@modelcontextprotocol/sdk/types.js';
import type { JsonRpcNotification, JsonRpcRequest, JsonRpcResponse } from '../authz/jsonrpc.js';
import type { Principal } from '../identity/store.js';
import { mintServerRequestId, mintSessionId } from '../identity/session.js';
import type { Logger } from '../log.js';
import { canonicalJson } from '../policy/compile.js';
import type { Role } from '../policy/layer1-types.js';
import type { ServiceConfig } from '../policy/schema.js';
import {
  Backend,
  DEFAULT_BACKOFF,
  DEFAULT_TIMEOUTS,
  describe,
  type BackendEvents,
  type BackoffOptions,
  type BackendTimeouts,
  type ProgressUpdate,
} from './backend.js';
import { ChildProcessTransport } from './child-transport.js';
import { childEnv, defaultHeadersFor, noSecrets, resolveCommand, type EnvFor, type HeadersFor } from './env.js';
import { HttpClientTransport } from './http-client-transport.js';
import {
  mergeCapabilities,
  mergeInstructions,
  mergePrompts,
  mergeResources,
  mergeTemplates,
  mergeTools,
  type MergeContext,
  type ServiceList,
} from './lists.js';
import {
  DEFAULT_NAMING,
  namingProblems,
  publishedUri,
  publishedUriTemplate,
  resolveUri,
  rewritePromptResult,
  rewriteReadResult,
  rewriteToolResult,
  splitWireName,
  wireName,
  type NamingOptions,
  type RefusedName,
} from './naming.js';
import {
  errorMessage,
  GatewayError,
  isPlainObject,
  JSONRPC_INTERNAL_ERROR,
  JSONRPC_INVALID_PARAMS,
  JSONRPC_INVALID_REQUEST,
  JSONRPC_METHOD_NOT_FOUND,
  JSONRPC_POLICY_ERROR,
  negotiateProtocolVersion,
  notificationMessage,
  resultMessage,
  type JsonObject,
  type JsonRpcId,
  type JsonValue,
  type OutgoingResponse,
} from './protocol.js';
import { AgentSession, idKey, type ListKind, type MessageSink } from './session.js';
import { hasAnyGrant, promptVisible, templateVisible, type ArgumentReaders, type Layer1View } from './visibility.js';

/** The part of the current policy the gateway runs on; read once per request. */
export interface GatewayPolicy {
  /** Changes whenever anything below may have changed. */
  revision: string;
  services: Readonly<Record<string, ServiceConfig>>;
  engine: Layer1View;
  data: ArgumentReaders;
}

export interface UserLookup {
  findUser(id: string): Promise<Principal | null>;
}

export interface AggregatorOptions {
  policy: () => GatewayPolicy;
  identities: UserLookup;
  /** The key of `mcp-session-id` values and server→client request ids (shared with authz). */
  sessionKey: Uint8Array;
  logger: Logger;
  naming?: Partial<NamingOptions>;
  envFor?: EnvFor;
  headersFor?: HeadersFor;
  timeouts?: Partial<BackendTimeouts>;
  backoff?: Partial<BackoffOptions>;
  /** How long an agent has to answer a relayed sampling / elicitation / roots request. Default 5 min. */
  clientRequestTimeoutMs?: number;
  /** A session with nothing in flight and no GET stream is ended after this long. Default 1 h. */
  sessionIdleMs?: number;
  /** Beyond this, a user's least recently used session is ended. Default 32. */
  maxSessionsPerUser?: number;
  serverInfo?: { name: string; version: string };
  /** Everything a backend sends passes through this before it goes on (DESIGN §8). */
  redact?: (v: JsonValue) => JsonValue;
  /** Working directory of stdio children. Default: the gateway's. */
  cwd?: string;
  /**
   * How long initialize waits for backends that are still starting; those not up by then are left
   * out of the merged capabilities and join the session when they are. Default 5 s.
   */
  initializeWaitMs?: number;
}

type AttachmentKind = 'shared' | 'user' | 'session';

interface Attachment {
  key: string;
  kind: AttachmentKind;
  service: string;
  configJson: string;
  backend: Backend;
  sessions: Set<AgentSession>;
  /** Backend URI → sessions subscribed to it (shared and per-user children). */
  subscriptions: Map<string, number>;
  cache: Map<string, { generation: number; version: number; items: JsonObject[] }>;
  fetching: Map<string, Promise<JsonObject[]>>;
  listVersion: number;
}

const LIST_FIELDS = {
  'tools/list': { field: 'tools', capability: 'tools' },
  'prompts/list': { field: 'prompts', capability: 'prompts' },
  'resources/list': { field: 'resources', capability: 'resources' },
  'resources/templates/list': { field: 'resourceTemplates', capability: 'resources' },
} as const;
type ListMethod = keyof typeof LIST_FIELDS;
const MAX_LIST_PAGES = 100;

const CHANGED: Record<string, { kind: ListKind; methods: ListMethod[] }> = {
  'notifications/tools/list_changed': { kind: 'tools', methods: ['tools/list'] },
  'notifications/prompts/list_changed': { kind: 'prompts', methods: ['prompts/list'] },
  'notifications/resources/list_changed': {
    kind: 'resources',
    methods: ['resources/list', 'resources/templates/list'],
  },
};

export class Aggregator {
  readonly #o: AggregatorOptions;
  readonly #naming: NamingOptions;
  readonly #timeouts: BackendTimeouts;
  readonly #backoff: BackoffOptions;
  readonly #envFor: EnvFor;
  readonly #headersFor: HeadersFor;
  readonly #log: Logger;
  readonly #sessions = new Map<string, AgentSession>();
  readonly #attachments = new Map<string, Attachment>();
  /** Refusals already logged, so a list request does not log the same one every time. */
  readonly #loggedRefusals = new Set<string>();
  #revision: string | null = null;
  #sweeper: NodeJS.Timeout;
  #closed = false;

  constructor(o: AggregatorOptions) {
    this.#o = o;
    this.#log = o.logger;
    this.#naming = { ...DEFAULT_NAMING, ...o.naming };
    this.#timeouts = { ...DEFAULT_TIMEOUTS, ...o.timeouts };
    this.#backoff = { ...DEFAULT_BACKOFF, ...o.backoff };
    this.#envFor = o.envFor ?? noSecrets;
    this.#headersFor = o.headersFor ?? defaultHeadersFor(this.#envFor);
    const policy = o.policy();
    const problems = namingProblems(Object.keys(policy.services), this.#naming);
    if (problems.length > 0) throw new Error(`gateway naming: ${problems.join('; ')}`);
    this.#revision = policy.revision;
    this.#sweeper = setInterval(() => this.#sweep(), 30_000);
    this.#sweeper.unref();
  }

  get naming(): NamingOptions {
    return { ...this.#naming };
  }

  /** The live session with this id, if any (its owner is checked by the caller). */
  session(id: string): AgentSession | undefined {
    const s = this.#sessions.get(id);
    return s && !s.closed ? s : undefined;
  }

  /** For /admin/v1/status: sessions, and every backend with its state and last failure. */
  stats(): {
    sessions: number;
    backends: { service: string; scope: string; state: string; lastError?: string }[];
  } {
    return {
      sessions: this.#sessions.size,
      backends: [...this.#attachments.values()].map((a) => ({
        service: a.service,
        scope: a.backend.scope,
        state: a.backend.state,
        ...(a.backend.lastError !== '' ? { lastError: a.backend.lastError } : {}),
      })),
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Policy
  // ---------------------------------------------------------------------------------------------

  /** The current policy; a new revision drops backends whose configuration changed and tells every session. */
  checkPolicy(): GatewayPolicy {
    const p = this.#o.policy();
    if (p.revision !== this.#revision) {
      this.#revision = p.revision;
      this.#policyChanged(p);
    }
    return p;
  }

  #policyChanged(p: GatewayPolicy): void {
    const problems = namingProblems(Object.keys(p.services), this.#naming);
    if (problems.length > 0) this.#log.error({ problems }, 'policy services do not fit the gateway naming');
    for (const att of [...this.#attachments.values()]) {
      const cfg = Object.hasOwn(p.services, att.service) ? p.services[att.service] : undefined;
      if (!cfg || !cfg.enabled || canonicalJson(cfg) !== att.configJson) void this.#drop(att);
    }
    this.#loggedRefusals.clear();
    this.#log.info({ revision: p.revision }, 'policy changed: list_changed sent to every session');
    for (const s of this.#sessions.values())
      for (const k of ['tools', 'prompts', 'resources'] as const) s.listChanged(k);
  }

  /** Grants changed (admin API): the user's sessions (or everyone's) refetch their lists. */
  notifyGrantsChanged(userId?: string): void {
    for (const s of this.#sessions.values()) {
      if (userId !== undefined && s.userId !== userId) continue;
      for (const k of ['tools', 'prompts', 'resources'] as const) s.listChanged(k);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Sessions
  // ---------------------------------------------------------------------------------------------

  /**
   * Starts a session for `user`: mints its id, connects the backends the user has grants on and
   * answers with their merged capabilities.
   */
  async initialize(
    user: { id: string; role: Role },
    id: JsonRpcId,
    params: JsonObject | undefined,
  ): Promise<{ session: AgentSession | null; response: OutgoingResponse }> {
    const policy = this.checkPolicy();
    const requested = params?.['protocolVersion'];
    if (typeof requested !== 'string') {
      return {
        session: null,
        response: errorMessage(id, JSONRPC_INVALID_PARAMS, 'initialize: protocolVersion is required'),
      };
    }
    const capabilities = params?.['capabilities'];
    const principal = await this.#o.identities.findUser(user.id);
    if (!principal) {
      return {
        session: null,
        response: errorMessage(id, JSONRPC_POLICY_ERROR, 'This user has no access to the gateway'),
      };
    }
    const sessionId = this.#mintSessionId(user.id);
    const session = new AgentSession({
      id: sessionId,
      userId: user.id,
      role: principal.role,
      protocolVersion: negotiateProtocolVersion(requested),
      clientCapabilities: isPlainObject(capabilities) ? (capabilities as JsonObject) : {},
      mintRequestId: () => mintServerRequestId(this.#o.sessionKey, sessionId),
      clientRequestTimeoutMs: this.#o.clientRequestTimeoutMs ?? 5 * 60_000,
    });
    this.#sessions.set(sessionId, session);
    this.#limitSessions(user.id);

    const services = this.#servicesFor(policy, principal);
    const backends = services.map((service) => ({ service, backend: this.#attach(session, service, policy) }));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(backends.map((b) => b.backend?.ready().catch(() => undefined))),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.#o.initializeWaitMs ?? 5000);
      }),
    ]);
    clearTimeout(timer);
    const ready = backends.filter((b) => b.backend?.state === 'ready');
    const caps = ready.map((b) => toPlain(b.backend?.serverCapabilities));
    const instructions = mergeInstructions(ready.map((b) => ({ service: b.service, text: b.backend?.instructions })));
    const result: JsonObject = {
      protocolVersion: session.protocolVersion,
      capabilities: mergeCapabilities(caps),
      serverInfo: { ...(this.#o.serverInfo ?? { name: 'mcpgw', version: '0.0.0' }) },
    };
    if (instructions !== undefined) result['instructions'] = instructions;
    this.#log.info(
      {
        session: sessionId.slice(0, 8),
        user: user.id,
        services,
        unavailable: backends.filter((b) => b.backend?.state !== 'ready').map((b) => b.service),
      },
      'session started',
    );
    return { session, response: resultMessage(id, result) };
  }

  #mintSessionId(userId: string): string {
    return mintSessionId(this.#o.sessionKey, userId);
  }

  #limitSessions(userId: string): void {
    const max = this.#o.maxSessionsPerUser ?? 32;
    const mine = [...this.#sessions.values()].filter((s) => s.userId === userId && !s.closed);
    if (mine.length <= max) return;
    mine.sort((a, b) => a.lastActive - b.lastActive);
    for (const s of mine.slice(0, mine.length - max)) {
      this.#log.info({ session: s.id.slice(0, 8), user: userId }, 'session evicted: too many sessions for this user');
      void this.closeSession(s);
    }
  }

  #sweep(): void {
    const idle = this.#o.sessionIdleMs ?? 60 * 60_000;
    const now = Date.now();
    for (const s of this.#sessions.values()) {
      if (!s.hasStream && s.inflight.size === 0 && now - s.lastActive > idle) {
        this.#log.info({ session: s.id.slice(0, 8), user: s.userId }, 'session expired');
        void this.closeSession(s);
      }
    }
  }

  /** DELETE, eviction or expiry: the session's backends go with it unless other sessions share them. */
  async closeSession(session: AgentSession): Promise<void> {
    if (session.closed) return;
    session.close();
    this.#sessions.delete(session.id);
    const closing: Promise<void>[] = [];
    for (const att of [...this.#attachments.values()]) {
      if (!att.sessions.delete(session)) continue;
      for (const entry of session.subscriptions) {
        const [service, uri = ''] = splitOnce(entry);
        if (service === att.service) this.#unsubscribeShared(att, uri);
      }
      if (att.kind !== 'shared' && att.sessions.size === 0) closing.push(this.#drop(att));
    }
    session.subscriptions.clear();
    session.backends.clear();
    await Promise.all(closing);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweeper);
    for (const s of this.#sessions.values()) s.close();
    this.#sessions.clear();
    await Promise.all([...this.#attachments.values()].map((a) => this.#drop(a)));
  }

  // ---------------------------------------------------------------------------------------------
  // Backends
  // ---------------------------------------------------------------------------------------------

  /** Services a user's session connects to: enabled ones the user holds some grant on. */
  #servicesFor(policy: GatewayPolicy, principal: Principal): string[] {
    return Object.keys(policy.services)
      .filter((s) => policy.services[s]?.enabled === true && hasAnyGrant(principal, s))
      .sort();
  }

  #attach(session: AgentSession, service: string, policy: GatewayPolicy): Backend | null {
    const existing = session.backends.get(service);
    if (existing && existing.state !== 'closed') return existing;
    const config = Object.hasOwn(policy.services, service) ? policy.services[service] : undefined;
    if (!config || !config.enabled) return null;
    const kind: AttachmentKind =
      config.transport === 'stdio' ? (config.isolation === 'per-user' ? 'user' : 'shared') : 'session';
    const key =
      kind === 'shared'
        ? `shared\n${service}`
        : kind === 'user'
          ? `user\n${service}\n${session.userId}`
          : `session\n${service}\n${session.id}`;
    let att = this.#attachments.get(key);
    if (!att || att.backend.state === 'closed') {
      att = this.#newAttachment(key, kind, service, config, session);
      this.#attachments.set(key, att);
    }
    att.sessions.add(session);
    session.backends.set(service, att.backend);
    att.backend.start();
    return att.backend;
  }

  #newAttachment(
    key: string,
    kind: AttachmentKind,
    service: string,
    config: ServiceConfig,
    first: AgentSession,
  ): Attachment {
    const ctx = { userId: kind === 'shared' ? null : first.userId };
    const scope =
      kind === 'shared' ? 'shared' : kind === 'user' ? `user:${first.userId}` : `session:${first.id.slice(0, 8)}`;
    // The backend's events need the attachment, which needs the backend.
    const self: { att?: Attachment } = {};
    const backend = new Backend({
      service,
      scope,
      connect: () => this.#transport(service, config, ctx),
      capabilities: kind === 'shared' ? {} : relayedCapabilities(first.clientCapabilities),
      allowServerRequests: kind !== 'shared',
      clientInfo: { name: 'mcpgw', version: this.#o.serverInfo?.version ?? '0.0.0' },
      timeouts: this.#timeouts,
      backoff: this.#backoff,
      logger: this.#log,
      events: this.#events(() => self.att),
      ...(this.#o.redact ? { redact: this.#o.redact } : {}),
    });
    const att: Attachment = {
      key,
      kind,
      service,
      configJson: canonicalJson(config),
      backend,
      sessions: new Set(),
      subscriptions: new Map(),
      cache: new Map(),
      fetching: new Map(),
      listVersion: 0,
    };
    self.att = att;
    return att;
  }

  async #transport(service: string, config: ServiceConfig, ctx: { userId: string | null }): Promise<Transport> {
    if (config.transport === 'stdio') {
      const env = childEnv(service, config, await this.#envFor(service, ctx));
      const cwd = this.#o.cwd ?? process.cwd();
      const cmd = await resolveCommand(config.command, config.args ?? [], env, cwd);
      return new ChildProcessTransport({
        file: cmd.file,
        args: cmd.args,
        env,
        cwd,
        onStderr: (line) => {
          const text = this.#o.redact ? this.#o.redact(line) : line;
          this.#log.debug({ service, stderr: typeof text === 'string' ? text : '' }, 'backend stderr');
        },
      });
    }
    const headers = await this.#headersFor(service, config, ctx);
    const url = new URL(config.url);
    return config.transport === 'http'
      ? new HttpClientTransport(url, { headers })
      : new SSEClientTransport(url, { requestInit: { headers } });
  }

  #events(attachment: () => Attachment | undefined): BackendEvents {
    return {
      notification: (method, params) => {
        const att = attachment();
        if (att) this.#onBackendNotification(att, method, params);
      },
      request: (method, params, signal) => {
        const att = attachment();
        if (!att) return Promise.reject(new McpError(JSONRPC_INTERNAL_ERROR, 'Not ready'));
        return this.#onBackendRequest(att, method, params, signal);
      },
      ready: (restarted) => {
        const att = attachment();
        if (!restarted || !att) return;
        att.cache.clear();
        att.listVersion++;
        for (const s of att.sessions) for (const k of ['tools', 'prompts', 'resources'] as const) s.listChanged(k);
        // A restarted backend forgot its subscriptions.
        const uris = new Set<string>(att.subscriptions.keys());
        if (att.kind === 'session') {
          for (const s of att.sessions) {
            for (const e of s.subscriptions) {
              const [svc, uri = ''] = splitOnce(e);
              if (svc === att.service) uris.add(uri);
            }
          }
        }
        for (const uri of uris) {
          att.backend.request('resources/subscribe', { uri }).catch((err: unknown) => {
            this.#log.warn({ service: att.service, err: describe(err) }, 'resubscribe after restart failed');
          });
        }
      },
      down: () => undefined,
    };
  }

  #onBackendNotification(att: Attachment, method: string, params: JsonObject | undefined): void {
    const changed = CHANGED[method];
    if (changed) {
      att.listVersion++;
      for (const m of changed.methods) att.cache.delete(m);
      for (const s of att.sessions) s.listChanged(changed.kind);
      return;
    }
    if (method === 'notifications/resources/updated') {
      const uri = params?.['uri'];
      if (typeof uri !== 'string') return;
      const published = publishedUri(att.service, uri, this.#naming);
      if (published === null) return;
      for (const s of att.sessions) {
        if (s.subscriptions.has(`${att.service}\n${uri}`)) {
          s.deliver(notificationMessage(method, { ...params, uri: published }));
        }
      }
      return;
    }
    if (att.kind === 'shared') {
      this.#log.debug({ service: att.service, method }, 'notification from a shared backend dropped');
      return;
    }
    for (const s of att.sessions) s.deliver(notificationMessage(method, params));
  }

  async #onBackendRequest(
    att: Attachment,
    method: string,
    params: JsonObject | undefined,
    signal: AbortSignal,
  ): Promise<JsonObject> {
    const candidates = [...att.sessions].filter((s) => !s.closed);
    // The session that is waiting on this backend is the one the request is most likely about.
    candidates.sort(
      (a, b) =>
        Number(b.hasInflightTo(att.service)) - Number(a.hasInflightTo(att.service)) || b.lastActive - a.lastActive,
    );
    const session = candidates[0];
    if (!session) throw new McpError(JSONRPC_INTERNAL_ERROR, 'No agent session is connected to answer this request');
    if (!session.supportsClientMethod(method)) {
      throw new McpError(JSONRPC_METHOD_NOT_FOUND, `The agent does not support ${method}`);
    }
    return session.requestClient(method, params, signal, session.relatedSink(att.service));
  }

  /**
   * Stops every running backend of `service` (its secrets changed); sessions attach a fresh one,
   * started with the new environment, on their next use. Resolves to how many were stopped.
   */
  async restartService(service: string): Promise<number> {
    const stopping = [...this.#attachments.values()].filter((a) => a.service === service);
    await Promise.all(stopping.map((a) => this.#drop(a)));
    if (stopping.length > 0)
      this.#log.info({ service, backends: stopping.length }, 'backend restarted for new secrets');
    return stopping.length;
  }

  /** Stops a backend and forgets it; sessions attach a fresh one on their next use. */
  async #drop(att: Attachment): Promise<void> {
    if (this.#attachments.get(att.key) === att) this.#attachments.delete(att.key);
    for (const s of att.sessions) {
      if (s.backends.get(att.service) === att.backend) s.backends.delete(att.service);
    }
    await att.backend.close();
  }

  /** Lists a backend's items (every page), from the cache when the backend announces its changes. */
  async #list(att: Attachment, method: ListMethod): Promise<JsonObject[]> {
    await att.backend.ready();
    const { field, capability } = LIST_FIELDS[method];
    const caps = toPlain(att.backend.serverCapabilities);
    const cap = caps?.[capability];
    if (!isPlainObject(cap)) return [];
    const cacheable = cap['listChanged'] === true;
    const generation = att.backend.generation;
    const cached = att.cache.get(method);
    if (cacheable && cached && cached.generation === generation && cached.version === att.listVersion)
      return cached.items;
    const running = att.fetching.get(method);
    if (running) return running;
    const version = att.listVersion;
    const fetch = (async () => {
      const items: JsonObject[] = [];
      let cursor: string | undefined;
      for (let page = 0; page < MAX_LIST_PAGES; page++) {
        const r = await att.backend.request(method, cursor === undefined ? undefined : { cursor }, {
          timeoutMs: this.#timeouts.listMs,
        });
        const list = r[field];
        if (Array.isArray(list)) for (const it of list) if (isPlainObject(it)) items.push(it as JsonObject);
        const next = r['nextCursor'];
        if (typeof next !== 'string' || next === '') break;
        cursor = next;
      }
      if (cacheable && att.listVersion === version && att.backend.generation === generation) {
        att.cache.set(method, { generation, version, items });
      }
      return items;
    })();
    att.fetching.set(method, fetch);
    try {
      return await fetch;
    } finally {
      att.fetching.delete(method);
    }
  }

  #attachmentOf(session: AgentSession, service: string): Attachment | undefined {
    const backend = session.backends.get(service);
    if (!backend) return undefined;
    for (const att of this.#attachments.values()) if (att.backend === backend) return att;
    return undefined;
  }

  // ---------------------------------------------------------------------------------------------
  // Messages from the agent
  // ---------------------------------------------------------------------------------------------

  /**
   * Answers one request. Null when the agent cancelled it: the spec says not to answer then.
   * `sink` is the request's own stream, for progress and related requests.
   */
  async handleRequest(
    session: AgentSession,
    msg: JsonRpcRequest,
    sink: MessageSink | null,
  ): Promise<OutgoingResponse | null> {
    session.touch();
    const key = idKey(msg.id);
    if (session.inflight.has(key)) {
      return errorMessage(msg.id, JSONRPC_INVALID_REQUEST, 'A request with this id is already in progress');
    }
    const abort = new AbortController();
    const flight = { id: msg.id, abort, service: null as string | null, sink, startedAt: Date.now() };
    session.inflight.set(key, flight);
    try {
      const result = await this.#dispatch(session, msg, flight);
      return abort.signal.aborted ? null : resultMessage(msg.id, result);
    } catch (err) {
      if (abort.signal.aborted) return null;
      if (err instanceof GatewayError) return errorMessage(msg.id, err.code, err.message, err.data);
      this.#log.error({ method: msg.method, err: describe(err) }, 'request failed');
      return errorMessage(msg.id, JSONRPC_INTERNAL_ERROR, 'Internal gateway error');
    } finally {
      if (session.inflight.get(key) === flight) session.inflight.delete(key);
      session.touch();
    }
  }

  async #dispatch(
    session: AgentSession,
    msg: JsonRpcRequest,
    flight: { abort: AbortController; service: string | null; sink: MessageSink | null },
  ): Promise<JsonObject> {
    const policy = this.checkPolicy();
    const params = msg.params;
    switch (msg.method) {
      case 'ping':
        return {};
      case 'initialize':
        throw new GatewayError(JSONRPC_INVALID_REQUEST, 'This session is already initialized');
      case 'tools/list':
      case 'prompts/list':
      case 'resources/list':
      case 'resources/templates/list':
        if (params !== undefined && params['cursor'] !== undefined) {
          throw new GatewayError(JSONRPC_INVALID_PARAMS, 'Invalid cursor: the gateway returns complete lists');
        }
        return this.#listFor(session, policy, msg.method);
      case 'tools/call': {
        const { service, name } = this.#target(session, policy, params, 'name', 'tool');
        const allow = policy.services[service]?.tools;
        if (allow !== undefined && !allow.includes(name)) throw unknown('tool', params);
        flight.service = service;
        const result = await this.#forward(
          session,
          service,
          'tools/call',
          forwardParams(params, { name }),
          msg,
          flight,
        );
        return rewriteToolResult(service, result, this.#naming);
      }
      case 'prompts/get': {
        const { service, name } = this.#target(session, policy, params, 'name', 'prompt');
        flight.service = service;
        const result = await this.#forward(
          session,
          service,
          'prompts/get',
          forwardParams(params, { name }),
          msg,
          flight,
        );
        return rewritePromptResult(service, result, this.#naming);
      }
      case 'resources/read':
      case 'resources/subscribe':
      case 'resources/unsubscribe': {
        const { service, uri } = this.#resourceTarget(session, policy, params);
        flight.service = service;
        if (msg.method === 'resources/read') {
          const result = await this.#forward(session, service, msg.method, forwardParams(params, { uri }), msg, flight);
          return rewriteReadResult(service, result, this.#naming);
        }
        return this.#subscription(session, service, uri, msg.method === 'resources/subscribe', params, msg, flight);
      }
      case 'completion/complete':
        return this.#complete(session, policy, params, msg, flight);
      case 'logging/setLevel':
        await this.#setLogLevel(session, params);
        return {};
      default:
        throw new GatewayError(JSONRPC_METHOD_NOT_FOUND, `Method not found: ${truncate(msg.method, 80)}`);
    }
  }

  async #listFor(session: AgentSession, policy: GatewayPolicy, method: ListMethod): Promise<JsonObject> {
    const principal = await this.#o.identities.findUser(session.userId);
    if (!principal) throw new GatewayError(JSONRPC_POLICY_ERROR, 'This user has no access to the gateway');
    const services = this.#servicesFor(policy, principal);
    const lists: ServiceList[] = [];
    await Promise.all(
      services.map(async (service) => {
        this.#attach(session, service, policy);
        const att = this.#attachmentOf(session, service);
        if (!att) return;
        try {
          lists.push({ service, items: await this.#list(att, method) });
        } catch (err) {
          // One backend down must not empty the agent's whole view; its items come back with it.
          this.#log.warn({ service, method, err: describe(err) }, 'backend left out of a list');
        }
      }),
    );
    const ctx: MergeContext = {
      naming: this.#naming,
      engine: policy.engine,
      data: policy.data,
      viewer: { id: principal.id, role: principal.role, grants: principal.grants },
      allowedTools: (s) => policy.services[s]?.tools,
    };
    const merged =
      method === 'tools/list'
        ? mergeTools(lists, ctx)
        : method === 'prompts/list'
          ? mergePrompts(lists, ctx)
          : method === 'resources/list'
            ? mergeResources(lists, ctx)
            : mergeTemplates(lists, ctx);
    this.#logRefusals(merged.refused);
    return { [LIST_FIELDS[method].field]: merged.items };
  }

  #logRefusals(refused: readonly RefusedName[]): void {
    for (const r of refused) {
      const key = `${r.service}\n${r.reason}\n${r.name}`;
      if (this.#loggedRefusals.has(key)) continue;
      if (this.#loggedRefusals.size > 10_000) this.#loggedRefusals.clear();
      this.#loggedRefusals.add(key);
      this.#log.error({ service: r.service, reason: r.reason }, `name refused: ${r.message}`);
    }
  }

  #soleService(policy: GatewayPolicy): string | undefined {
    const names = Object.keys(policy.services);
    return names.length === 1 ? names[0] : undefined;
  }

  /** Service and backend name of a tools/call or prompts/get, with the session's backend attached. */
  #target(
    session: AgentSession,
    policy: GatewayPolicy,
    params: JsonObject | undefined,
    field: 'name',
    kind: 'tool' | 'prompt',
  ): { service: string; name: string } {
    const wire = params?.[field];
    if (typeof wire !== 'string') throw new GatewayError(JSONRPC_INVALID_PARAMS, `params.${field} must be a string`);
    const split = splitWireName(wire, this.#naming, this.#soleService(policy));
    if (!split || !Object.hasOwn(policy.services, split.service)) throw unknown(kind, params);
    // What the lists refuse to publish cannot be called by its name either.
    if (!wireName(split.service, split.name, kind, this.#naming).ok) throw unknown(kind, params);
    if (!this.#attach(session, split.service, policy)) throw unknown(kind, params);
    return split;
  }

  #resourceTarget(
    session: AgentSession,
    policy: GatewayPolicy,
    params: JsonObject | undefined,
  ): { service: string; uri: string } {
    const uri = params?.['uri'];
    if (typeof uri !== 'string') throw new GatewayError(JSONRPC_INVALID_PARAMS, 'params.uri must be a string');
    const target = resolveUri(uri, this.#naming, this.#soleService(policy));
    if (!target || !Object.hasOwn(policy.services, target.service) || !this.#attach(session, target.service, policy)) {
      throw new GatewayError(JSONRPC_INVALID_PARAMS, `Unknown resource: ${truncate(uri, 200)}`);
    }
    return target;
  }

  async #forward(
    session: AgentSession,
    service: string,
    method: string,
    params: JsonObject,
    msg: JsonRpcRequest,
    flight: { abort: AbortController; sink: MessageSink | null },
  ): Promise<JsonObject> {
    const backend = session.backends.get(service);
    if (!backend) throw new GatewayError(JSONRPC_INVALID_PARAMS, `Unknown service: ${service}`);
    const token = progressToken(msg.params);
    const onprogress =
      token === undefined
        ? undefined
        : (p: ProgressUpdate) => {
            const out: JsonObject = { progressToken: token, progress: p.progress };
            if (typeof p.total === 'number') out['total'] = p.total;
            if (typeof p.message === 'string') out['message'] = p.message;
            session.deliver(notificationMessage('notifications/progress', out), flight.sink);
          };
    return backend.request(method, params, { signal: flight.abort.signal, ...(onprogress ? { onprogress } : {}) });
  }

  async #subscription(
    session: AgentSession,
    service: string,
    uri: string,
    subscribe: boolean,
    params: JsonObject | undefined,
    msg: JsonRpcRequest,
    flight: { abort: AbortController; sink: MessageSink | null },
  ): Promise<JsonObject> {
    const att = this.#attachmentOf(session, service);
    if (!att) throw new GatewayError(JSONRPC_INVALID_PARAMS, `Unknown service: ${service}`);
    const entry = `${service}\n${uri}`;
    const method = subscribe ? 'resources/subscribe' : 'resources/unsubscribe';
    if (att.kind === 'session') {
      await this.#forward(session, service, method, forwardParams(params, { uri }), msg, flight);
    } else if (subscribe && !session.subscriptions.has(entry)) {
      // One backend subscription per URI for all the sessions sharing the child.
      const n = att.subscriptions.get(uri) ?? 0;
      if (n === 0) await this.#forward(session, service, method, forwardParams(params, { uri }), msg, flight);
      att.subscriptions.set(uri, n + 1);
    } else if (!subscribe && session.subscriptions.has(entry)) {
      this.#unsubscribeShared(att, uri);
    }
    if (subscribe) session.subscriptions.add(entry);
    else session.subscriptions.delete(entry);
    return {};
  }

  #unsubscribeShared(att: Attachment, uri: string): void {
    if (att.kind === 'session') return;
    const n = att.subscriptions.get(uri) ?? 0;
    if (n > 1) {
      att.subscriptions.set(uri, n - 1);
      return;
    }
    att.subscriptions.delete(uri);
    att.backend.request('resources/unsubscribe', { uri }).catch(() => undefined);
  }

  async #complete(
    session: AgentSession,
    policy: GatewayPolicy,
    params: JsonObject | undefined,
    msg: JsonRpcRequest,
    flight: { abort: AbortController; service: string | null; sink: MessageSink | null },
  ): Promise<JsonObject> {
    const ref = params?.['ref'];
    if (!isPlainObject(ref)) throw new GatewayError(JSONRPC_INVALID_PARAMS, 'params.ref must be an object');
    const r = ref as JsonObject;
    const principal = await this.#o.identities.findUser(session.userId);
    if (!principal) throw new GatewayError(JSONRPC_POLICY_ERROR, 'This user has no access to the gateway');
    const viewer = { id: principal.id, role: principal.role, grants: principal.grants };
    if (r['type'] === 'ref/prompt') {
      const { service, name } = this.#target(session, policy, r, 'name', 'prompt');
      if (!promptVisible(policy.engine, policy.data, viewer, service, name)) throw unknown('prompt', r);
      flight.service = service;
      return this.#forward(
        session,
        service,
        'completion/complete',
        forwardParams(params, { ref: { ...r, name } }),
        msg,
        flight,
      );
    }
    if (r['type'] === 'ref/resource' && typeof r['uri'] === 'string') {
      const given = r['uri'];
      const service = this.#naming.prefix
        ? /^mcpgw:\/\/([a-z][a-z0-9-]{0,30})\//.exec(given)?.[1]
        : this.#soleService(policy);
      if (!service || !Object.hasOwn(policy.services, service) || !this.#attach(session, service, policy)) {
        throw new GatewayError(JSONRPC_INVALID_PARAMS, 'Unknown resource template');
      }
      const att = this.#attachmentOf(session, service);
      const templates = att ? await this.#list(att, 'resources/templates/list') : [];
      const original = templates
        .map((t) => t['uriTemplate'])
        .find((t): t is string => typeof t === 'string' && publishedUriTemplate(service, t, this.#naming) === given);
      const concrete = original === undefined ? resolveUri(given, this.#naming, service)?.uri : undefined;
      const uri = original ?? concrete;
      if (uri === undefined || !templateVisible(policy.engine, viewer, service, uri)) {
        throw new GatewayError(JSONRPC_INVALID_PARAMS, 'Unknown resource template');
      }
      flight.service = service;
      return this.#forward(
        session,
        service,
        'completion/complete',
        forwardParams(params, { ref: { ...r, uri } }),
        msg,
        flight,
      );
    }
    throw new GatewayError(JSONRPC_INVALID_PARAMS, 'params.ref must be a ref/prompt or ref/resource');
  }

  async #setLogLevel(session: AgentSession, params: JsonObject | undefined): Promise<void> {
    const level = params?.['level'];
    if (typeof level !== 'string') throw new GatewayError(JSONRPC_INVALID_PARAMS, 'params.level must be a string');
    // A shared child's log level is every user's: only backends of this session or user are told.
    const targets = [...this.#attachments.values()].filter(
      (a) =>
        a.kind !== 'shared' &&
        a.sessions.has(session) &&
        isPlainObject(toPlain(a.backend.serverCapabilities)?.['logging']),
    );
    await Promise.all(targets.map((a) => a.backend.request('logging/setLevel', { level }).catch(() => undefined)));
  }

  handleNotification(session: AgentSession, msg: JsonRpcNotification): void {
    session.touch();
    switch (msg.method) {
      case 'notifications/cancelled': {
        const id = msg.params?.['requestId'];
        if (typeof id !== 'string' && typeof id !== 'number') return;
        session.inflight.get(idKey(id))?.abort.abort(new Error('cancelled by the agent'));
        return;
      }
      case 'notifications/roots/list_changed':
        for (const att of this.#attachments.values()) {
          if (att.kind !== 'shared' && att.sessions.has(session)) void att.backend.notify(msg.method);
        }
        return;
      default:
        // notifications/initialized and anything else the agent announces: nothing to relay.
        return;
    }
  }

  handleResponse(session: AgentSession, msg: JsonRpcResponse): void {
    session.touch();
    const answer = 'result' in msg ? { result: msg.result } : { error: msg.error };
    if (!session.answerClientRequest(msg.id, answer)) {
      this.#log.debug({ session: session.id.slice(0, 8) }, 'response to no pending request ignored');
    }
  }
}

function unknown(kind: 'tool' | 'prompt', params: JsonObject | undefined): GatewayError {
  const name = params?.['name'];
  return new GatewayError(
    JSONRPC_INVALID_PARAMS,
    `Unknown ${kind}: ${typeof name === 'string' ? truncate(name, 100) : '(none)'}`,
  );
}

/** The agent's progress token, which the backend never sees (it gets the SDK's own). */
function progressToken(params: JsonObject | undefined): string | number | undefined {
  const meta = params?.['_meta'];
  if (!isPlainObject(meta)) return undefined;
  const t = (meta as JsonObject)['progressToken'];
  return typeof t === 'string' || typeof t === 'number' ? t : undefined;
}

/** The agent's params with names and URIs swapped for the backend's, and its progress token removed. */
export function forwardParams(params: JsonObject | undefined, overrides: JsonObject): JsonObject {
  const out: JsonObject = { ...(params ?? {}), ...overrides };
  const meta = out['_meta'];
  if (isPlainObject(meta)) {
    const rest: JsonObject = { ...(meta as JsonObject) };
    delete rest['progressToken'];
    if (Object.keys(rest).length === 0) delete out['_meta'];
    else out['_meta'] = rest;
  }
  return out;
}

/** The client capabilities a dedicated backend is told about: what the agent itself can answer. */
function relayedCapabilities(agent: JsonObject): ClientCapabilities {
  const picked: JsonObject = {};
  for (const k of ['sampling', 'elicitation', 'roots'] as const) {
    const v = agent[k];
    if (isPlainObject(v)) picked[k] = v;
  }
  const parsed = ClientCapabilitiesSchema.safeParse(picked);
  return parsed.success ? parsed.data : {};
}

function toPlain(v: unknown): JsonObject | undefined {
  return isPlainObject(v) ? (v as JsonObject) : undefined;
}

function splitOnce(s: string): [string, string | undefined] {
  const i = s.indexOf('\n');
  return i < 0 ? [s, undefined] : [s.slice(0, i), s.slice(i + 1)];
}

function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}
