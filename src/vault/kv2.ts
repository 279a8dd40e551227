/**
 * The vault backend: HashiCorp Vault or OpenBao, KV version 2, one secret per service at
 * `<mount>/data/services/<service>` whose fields are the variables (`secret/data/services/github`
 * → `{GITHUB_TOKEN: …}`), token auth.
 *
 * Writes are read-modify-write of the service's map with check-and-set, so two writers to the same
 * service cannot lose each other's variables. Deleting a variable also destroys the older versions
 * that still hold it (KV v2 keeps them otherwise): someone deleting a leaked token expects it gone.
 *
 * The token travels only in the `X-Vault-Token` header; no error message, log line or exception
 * cause carries it or a value. Plain http is accepted for loopback only unless allowed explicitly,
 * since the token would cross the network in clear.
 */
import { ENV_NAME_PATTERN, SERVICE_NAME_PATTERN, TOOL_SEPARATOR } from '../policy/schema.js';
import {
  SecretStoreError,
  mergeDeclared,
  pick,
  validateEntry,
  validateService,
  validateValue,
  type SecretListing,
  type SecretStore,
} from './types.js';

export interface VaultOptions {
  /** e.g. `http://127.0.0.1:8200` or `https://vault.example.com`. */
  address: string;
  /** A token, or a function returning the current one (renewed or rotated elsewhere). */
  token: string | (() => string | Promise<string>);
  /** KV v2 mount. Default `secret`. */
  mount?: string;
  /** Sent as `X-Vault-Namespace` (Vault Enterprise, OpenBao namespaces). */
  namespace?: string;
  /** Per request. Default 5000 ms. */
  timeoutMs?: number;
  /** Poll interval of `watch()`; Vault has no change notifications. Default 30 s. */
  pollMs?: number;
  /** Allow `http://` to a non-loopback host. */
  allowInsecureHttp?: boolean;
  /** For tests. */
  fetch?: typeof fetch;
}

const MOUNT = /^[A-Za-z0-9][A-Za-z0-9_.-]*(\/[A-Za-z0-9][A-Za-z0-9_.-]*)*$/;
const NAMESPACE = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*\/?$/;
const MAX_CAS_ATTEMPTS = 10;

/** Randomised and growing, so writers that collided do not collide again in lockstep. */
function backoff(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * (attempt + 1)));
}
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_CLOSED',
]);

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

interface KvRead {
  /** Current fields, empty when the path holds nothing (never written, deleted or destroyed). */
  data: Record<string, string>;
  /** The version check-and-set must name: 0 when the path has no metadata. */
  version: number;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

function causeCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 4; depth++) {
    if (typeof e === 'object' && e !== null && 'code' in e && typeof (e as { code: unknown }).code === 'string') {
      return (e as { code: string }).code;
    }
    e = typeof e === 'object' && e !== null && 'cause' in e ? (e as { cause: unknown }).cause : undefined;
  }
  return undefined;
}

/** Vault's own error strings (`{"errors": [...]}`), shortened; they describe requests, not values. */
function vaultErrors(body: unknown): string {
  if (!isObject(body) || !Array.isArray(body['errors'])) return '';
  const msgs = body['errors'].filter((e): e is string => typeof e === 'string' && e !== '');
  const text = msgs.join('; ').replace(/\s+/g, ' ');
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

export class VaultSecretStore implements SecretStore {
  readonly kind = 'vault' as const;
  readonly address: string;
  readonly mount: string;
  /** `<address>/v1/`: every API path is relative to it. */
  readonly #base: string;
  readonly #token: () => string | Promise<string>;
  readonly #namespace: string | undefined;
  readonly #timeoutMs: number;
  readonly #pollMs: number;
  readonly #fetch: typeof fetch;

  constructor(opts: VaultOptions) {
    let url: URL;
    try {
      url = new URL(opts.address);
    } catch {
      throw new SecretStoreError('backend', 'the Vault address is not a URL');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new SecretStoreError('backend', `the Vault address must be http:// or https://, not ${url.protocol}`);
    }
    if (url.username || url.password) {
      throw new SecretStoreError(
        'backend',
        'the Vault address must not contain credentials; give the token separately',
      );
    }
    if (url.protocol === 'http:' && !isLoopback(url.hostname) && !opts.allowInsecureHttp) {
      throw new SecretStoreError(
        'backend',
        `refusing plain http to ${url.host}: the Vault token would cross the network in clear; use https, or set allowInsecureHttp`,
      );
    }
    const mount = (opts.mount ?? 'secret').replace(/^\/+|\/+$/g, '');
    if (!MOUNT.test(mount)) throw new SecretStoreError('backend', `invalid KV mount ${JSON.stringify(mount)}`);
    if (opts.namespace !== undefined && opts.namespace !== '' && !NAMESPACE.test(opts.namespace)) {
      throw new SecretStoreError('backend', `invalid Vault namespace ${JSON.stringify(opts.namespace)}`);
    }
    this.address = url.origin + url.pathname.replace(/\/+$/, '');
    this.mount = mount;
    this.#base = `${this.address}/v1/`;
    const token = opts.token;
    this.#token = typeof token === 'function' ? token : () => token;
    this.#namespace = opts.namespace === '' ? undefined : opts.namespace;
    this.#timeoutMs = opts.timeoutMs ?? 5000;
    this.#pollMs = opts.pollMs ?? 30_000;
    this.#fetch = opts.fetch ?? fetch;
  }

  /** `secret/data/services/github`: how the CLI names where a value went. */
  pathFor(service: string): string {
    validateService(service);
    return `${this.mount}/data/services/${service}`;
  }

  async #request(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    what: string,
    body?: Json,
  ): Promise<{ status: number; body: unknown }> {
    let token: string;
    try {
      token = await this.#token();
    } catch (err) {
      // e.g. a token file with the wrong mode: keys.ts words the fix and never quotes content.
      throw new SecretStoreError(
        'forbidden',
        `cannot read the Vault token: ${err instanceof Error ? err.message : 'unknown error'}`,
      );
    }
    if (typeof token !== 'string' || token === '' || /[\r\n]/.test(token)) {
      throw new SecretStoreError('forbidden', 'no usable Vault token is configured');
    }
    const headers: Record<string, string> = { 'X-Vault-Token': token, 'X-Vault-Request': 'true' };
    if (this.#namespace !== undefined) headers['X-Vault-Namespace'] = this.#namespace;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res: Response;
    try {
      res = await this.#fetch(`${this.#base}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.#timeoutMs),
        // A redirect would resend the token to wherever it points.
        redirect: 'manual',
      });
    } catch (err) {
      // The cause chain of a fetch error can hold the request; keep only its kind.
      const code = causeCode(err);
      const name = err instanceof Error ? err.name : '';
      if (name === 'TimeoutError' || name === 'AbortError' || code === 'UND_ERR_CONNECT_TIMEOUT') {
        throw new SecretStoreError(
          'timeout',
          `Vault at ${this.address} did not answer within ${this.#timeoutMs} ms (${what})`,
        );
      }
      const why = code === 'ECONNREFUSED' ? 'connection refused; is it running?' : code ? code : 'network error';
      throw new SecretStoreError(
        'unavailable',
        `cannot reach Vault at ${this.address} (${what}): ${why}`,
        code && NETWORK_CODES.has(code) ? { cause: new Error(code) } : undefined,
      );
    }
    let parsed: unknown = null;
    const text = await res.text().catch(() => '');
    if (text !== '') {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = null;
      }
    }
    if (res.status === 403) {
      throw new SecretStoreError(
        'forbidden',
        `Vault at ${this.address} refused the token (403 permission denied) for ${what}; check the token and that its policy allows ${this.mount}/data/services/* and ${this.mount}/metadata/services/*`,
      );
    }
    if (res.status === 503 && isObject(parsed) && /sealed/i.test(vaultErrors(parsed))) {
      throw new SecretStoreError('sealed', `Vault at ${this.address} is sealed; unseal it (${what})`);
    }
    if (res.status >= 300 && res.status < 400) {
      throw new SecretStoreError(
        'backend',
        `Vault at ${this.address} redirected ${what} (HTTP ${res.status}); point the address at the active node or its load balancer`,
      );
    }
    return { status: res.status, body: parsed };
  }

  #fail(what: string, r: { status: number; body: unknown }): SecretStoreError {
    const detail = vaultErrors(r.body);
    return new SecretStoreError(
      'backend',
      `Vault at ${this.address} answered HTTP ${r.status} to ${what}${detail ? `: ${detail}` : ''}`,
    );
  }

  /** Every field, including ones this store would not inject, so a rewrite keeps them. */
  async #readRaw(service: string): Promise<{ fields: Record<string, Json>; version: number }> {
    const what = `reading ${this.pathFor(service)}`;
    const r = await this.#request('GET', `${this.mount}/data/services/${service}`, what);
    const inner = isObject(r.body) && isObject(r.body['data']) ? r.body['data'] : null;
    const meta = inner && isObject(inner['metadata']) ? inner['metadata'] : null;
    // A soft-deleted latest version answers 404 with its metadata: check-and-set must name it.
    const version = meta && typeof meta['version'] === 'number' ? meta['version'] : 0;
    if (r.status === 404) return { fields: {}, version };
    if (r.status !== 200 || !inner) throw this.#fail(what, r);
    const fields = isObject(inner['data']) ? (inner['data'] as Record<string, Json>) : {};
    return { fields, version };
  }

  async #read(service: string): Promise<KvRead> {
    const cur = await this.#readRaw(service);
    const data: Record<string, string> = {};
    for (const [k, v] of Object.entries(cur.fields)) {
      // Fields written by other tools may not be variables; they are not ours to inject.
      if (typeof v === 'string' && ENV_NAME_PATTERN.test(k)) data[k] = v;
    }
    return { data, version: cur.version };
  }

  /** Writes with check-and-set; false when someone else wrote first. Returns the new version. */
  async #write(service: string, fields: Record<string, Json>, cas: number): Promise<number | false> {
    const what = `writing ${this.pathFor(service)}`;
    const r = await this.#request('POST', `${this.mount}/data/services/${service}`, what, {
      options: { cas },
      data: fields,
    });
    if (r.status === 400 && /check-and-set/i.test(vaultErrors(r.body))) return false;
    if (r.status !== 200 && r.status !== 204) throw this.#fail(what, r);
    const inner = isObject(r.body) && isObject(r.body['data']) ? r.body['data'] : null;
    return inner && typeof inner['version'] === 'number' ? inner['version'] : cas + 1;
  }

  async #destroyMetadata(service: string): Promise<void> {
    const what = `deleting ${this.mount}/metadata/services/${service}`;
    const r = await this.#request('DELETE', `${this.mount}/metadata/services/${service}`, what);
    if (r.status !== 204 && r.status !== 200 && r.status !== 404) throw this.#fail(what, r);
  }

  async #destroyVersions(service: string, versions: number[]): Promise<void> {
    if (versions.length === 0) return;
    const what = `destroying old versions of ${this.pathFor(service)}`;
    const r = await this.#request('PUT', `${this.mount}/destroy/services/${service}`, what, { versions });
    if (r.status !== 204 && r.status !== 200) throw this.#fail(what, r);
  }

  async set(service: string, name: string, value: string): Promise<void> {
    validateEntry(service, name);
    validateValue(value);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const cur = await this.#readRaw(service);
      if (cur.fields[name] === value) return;
      const written = await this.#write(service, { ...cur.fields, [name]: value }, cur.version);
      if (written !== false) return;
      await backoff(attempt);
    }
    throw new SecretStoreError('conflict', `${this.pathFor(service)} kept changing while writing ${name}; try again`);
  }

  async get(service: string, name: string): Promise<string | null> {
    validateEntry(service, name);
    const cur = await this.#read(service);
    return Object.prototype.hasOwnProperty.call(cur.data, name) ? (cur.data[name] ?? null) : null;
  }

  async #services(): Promise<string[]> {
    const what = `listing ${this.mount}/metadata/services`;
    const r = await this.#request('GET', `${this.mount}/metadata/services?list=true`, what);
    if (r.status === 404) return [];
    const inner = isObject(r.body) && isObject(r.body['data']) ? r.body['data'] : null;
    if (r.status !== 200 || !inner || !Array.isArray(inner['keys'])) throw this.#fail(what, r);
    return inner['keys'].filter(
      (k): k is string => typeof k === 'string' && SERVICE_NAME_PATTERN.test(k) && !k.includes(TOOL_SEPARATOR),
    );
  }

  async list(declared?: Readonly<Record<string, readonly string[]>>): Promise<SecretListing[]> {
    const out: SecretListing[] = [];
    for (const service of await this.#services()) {
      const cur = await this.#read(service);
      for (const variable of Object.keys(cur.data)) out.push({ service, variable, stored: true, updatedAt: null });
    }
    return mergeDeclared(out, declared);
  }

  async delete(service: string, name: string): Promise<boolean> {
    validateEntry(service, name);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const cur = await this.#readRaw(service);
      if (!Object.prototype.hasOwnProperty.call(cur.fields, name)) return false;
      const rest = { ...cur.fields };
      delete rest[name];
      if (Object.keys(rest).length === 0) {
        // Nothing left at the path: remove it with all its versions.
        await this.#destroyMetadata(service);
        return true;
      }
      const written = await this.#write(service, rest, cur.version);
      if (written === false) {
        await backoff(attempt);
        continue;
      }
      const old: number[] = [];
      for (let v = 1; v < written; v++) old.push(v);
      try {
        await this.#destroyVersions(service, old);
      } catch (err) {
        const why = err instanceof SecretStoreError ? err.message : 'unknown error';
        throw new SecretStoreError(
          err instanceof SecretStoreError ? err.code : 'backend',
          `${name} was removed from the current version of ${this.pathFor(service)}, but older versions still hold it and could not be destroyed: ${why}`,
        );
      }
      return true;
    }
    throw new SecretStoreError('conflict', `${this.pathFor(service)} kept changing while deleting ${name}; try again`);
  }

  async valuesFor(service: string, only?: readonly string[]): Promise<Record<string, string>> {
    validateService(service);
    const cur = await this.#read(service);
    return pick(cur.data, only);
  }

  /** Tells a wrong token (lookup-self needs no policy) apart from a missing mount or permission. */
  async check(): Promise<void> {
    const self = await this.#request('GET', 'auth/token/lookup-self', 'looking up the token');
    if (self.status !== 200) throw this.#fail('looking up the token', self);
    await this.#services();
  }

  async watch(onChange: () => void): Promise<() => Promise<void>> {
    let last = await this.#fingerprint().catch(() => null);
    let stopped = false;
    let running = false;
    const timer = setInterval(() => {
      if (running || stopped) return;
      running = true;
      this.#fingerprint()
        .then((fp) => {
          if (!stopped && fp !== last) {
            last = fp;
            onChange();
          }
        })
        // Unreachable for now: keep the old redaction and look again next time.
        .catch(() => undefined)
        .finally(() => {
          running = false;
        });
    }, this.#pollMs);
    timer.unref();
    return async () => {
      stopped = true;
      clearInterval(timer);
    };
  }

  /** Changes iff some service's current version changes: reads metadata only, never values. */
  async #fingerprint(): Promise<string> {
    const parts: string[] = [];
    for (const service of await this.#services()) {
      const what = `reading ${this.mount}/metadata/services/${service}`;
      const r = await this.#request('GET', `${this.mount}/metadata/services/${service}`, what);
      const inner = isObject(r.body) && isObject(r.body['data']) ? r.body['data'] : null;
      const version = inner && typeof inner['current_version'] === 'number' ? inner['current_version'] : 0;
      const updated = inner && typeof inner['updated_time'] === 'string' ? inner['updated_time'] : '';
      parts.push(`${service}@${version}@${updated}`);
    }
    return parts.join(',');
  }

  async close(): Promise<void> {
    // Stateless over HTTP; nothing to release.
  }
}
