/**
 * The CLI side of `/admin/v1`: where the gateway is (`--url`, `MCPGW_URL`, else the running
 * installation's `MCPGW_HOME/run/ready.json`), who calls (`--admin-key`, else `MCPGW_ADMIN_KEY`),
 * and failures mapped to the CLI's exit codes: gateway down → 3, 401/403 → 4, anything else → 1.
 *
 * The admin key is sent only in the Authorization header; request bodies (which may hold a secret
 * value) are never echoed into an error.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ADMIN_BASE_PATH, errorBodySchema } from '../admin/contract.js';
import { homePaths } from '../config/home.js';
import { EXIT } from './lifecycle.js';

export class AdminClientError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly status: number | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = 'AdminClientError';
  }
}

export interface AdminClientOptions {
  /** `--url`: the gateway's base URL (`http://127.0.0.1:8000`; a `/mcp` suffix is dropped). */
  url?: string | undefined;
  /** `--admin-key`. */
  adminKey?: string | undefined;
  home: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

const readySchema = z.object({ url: z.string() });

function baseUrl(o: AdminClientOptions): string {
  const env = o.env ?? process.env;
  let raw = o.url ?? env['MCPGW_URL'];
  if (raw === undefined || raw === '') {
    const ready = homePaths(o.home).ready;
    let text: string;
    try {
      text = readFileSync(ready, 'utf8');
    } catch {
      throw new AdminClientError(
        `the gateway is not running (no ${ready}); start it with \`mcpgw up\`, or pass --url / MCPGW_URL`,
        EXIT.notRunning,
      );
    }
    const parsed = readySchema.safeParse(JSON.parse(text));
    if (!parsed.success) throw new AdminClientError(`${ready} is not a ready file`, EXIT.notRunning);
    raw = parsed.data.url;
  }
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new AdminClientError(`not a URL: ${raw}`, EXIT.usage);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new AdminClientError(`not an http(s) URL: ${raw}`, 2);
  return u.origin;
}

function adminKey(o: AdminClientOptions): string {
  const key = o.adminKey ?? (o.env ?? process.env)['MCPGW_ADMIN_KEY'];
  if (key === undefined || key === '') {
    throw new AdminClientError(
      'no admin key: set MCPGW_ADMIN_KEY (whoever can read it can administer the gateway) or pass --admin-key',
      EXIT.notAuthorized,
    );
  }
  return key;
}

export interface AdminClient {
  readonly base: string;
  /** The parsed JSON body of a 2xx answer, checked with `schema`; otherwise an AdminClientError. */
  request<S extends z.ZodType>(method: string, path: string, schema: S, body?: unknown): Promise<z.output<S>>;
}

export function adminClient(o: AdminClientOptions): AdminClient {
  const base = baseUrl(o);
  const key = adminKey(o);
  return {
    base,
    async request(method, path, schema, body) {
      let res: Response;
      try {
        res = await fetch(`${base}${ADMIN_BASE_PATH}${path}`, {
          method,
          headers: {
            authorization: `Bearer ${key}`,
            accept: 'application/json',
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal: AbortSignal.timeout(o.timeoutMs ?? 60_000),
        });
      } catch (err) {
        const cause = (err as { cause?: { code?: unknown } }).cause?.code;
        throw new AdminClientError(
          `the gateway at ${base} does not answer${typeof cause === 'string' ? ` (${cause})` : ''}; is it running? (mcpgw status)`,
          EXIT.notRunning,
        );
      }
      const text = await res.text();
      let json: unknown = null;
      try {
        json = text === '' ? null : JSON.parse(text);
      } catch {
        // reported below by status
      }
      if (res.ok) {
        const parsed = schema.safeParse(json);
        if (!parsed.success) throw new AdminClientError(`unexpected answer from ${base} (${res.status})`, EXIT.failed);
        return parsed.data;
      }
      const err = errorBodySchema.safeParse(json);
      const message = err.success
        ? err.data.error.message
        : (z.object({ error: z.object({ message: z.string() }) }).safeParse(json).data?.error.message ??
          `HTTP ${res.status}`);
      const code = err.success ? err.data.error.code : null;
      const exit =
        res.status === 401 || res.status === 403
          ? EXIT.notAuthorized
          : res.status === 502 || res.status === 503 || res.status === 504
            ? code === null
              ? EXIT.notRunning
              : EXIT.failed
            : EXIT.failed;
      throw new AdminClientError(message, exit, res.status, code);
    },
  };
}

export interface ConnectAdminOptions extends AdminClientOptions {
  /**
   * What the key is for, e.g. "approve ap-3f2a": shown when the passphrase is asked for.
   * Sensitive operations (approve, deny, apply, grant changes) must never take the passphrase
   * from argv or stdin, only from the controlling terminal.
   */
  purpose: string;
}

/**
 * The admin client every admin command uses. Key resolution order: `--admin-key`, then
 * `MCPGW_ADMIN_KEY`, then the passphrase-encrypted credential written by `mcpgw init`
 * (passphrase asked on the controlling terminal).
 */
export async function connectAdmin(o: ConnectAdminOptions): Promise<AdminClient> {
  return Promise.resolve(adminClient(o));
}
