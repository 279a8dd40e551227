/**
 * The CLI side of `/admin/v1`: where the gateway is (`--url`, `MCPGW_URL`, else the running
 * installation's `MCPGW_HOME/run/ready.json`), who calls (`--admin-key`, else `MCPGW_ADMIN_KEY`,
 * else the admin credential `mcpgw init` stored encrypted under the approval passphrase), and
 * failures mapped to the CLI's exit codes: gateway down → 3, 401/403 or no usable credential → 4,
 * anything else → 1.
 *
 * The admin key is sent only in the Authorization header; request bodies (which may hold a secret
 * value) are never echoed into an error.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { z } from 'zod';
import { ADMIN_BASE_PATH, errorBodySchema } from '../admin/contract.js';
import { homePaths } from '../config/home.js';
import { readMarker } from './docker.js';
import {
  credentialPath,
  CredentialError,
  openAdminCredential,
  readAdminCredential,
  type StoredCredential,
} from './credential.js';
import { ADMIN_KEY_HELP, EXIT } from './exit.js';

export { ADMIN_KEY_HELP };
import { Terminal, TerminalError } from './tty.js';

export class AdminClientError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly status: number | null = null,
    readonly code: string | null = null,
    /** The error body's `details` (e.g. the diagnostics of an invalid policy); null when absent. */
    readonly details: unknown = null,
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
    let text: string | null = null;
    try {
      text = readFileSync(ready, 'utf8');
    } catch {
      // Not started natively; perhaps in a container (`mcpgw up` with Docker).
    }
    if (text !== null) {
      let json: unknown = null;
      try {
        json = JSON.parse(text);
      } catch {
        // reported below
      }
      const parsed = readySchema.safeParse(json);
      if (!parsed.success) throw new AdminClientError(`${ready} is not a ready file`, EXIT.notRunning);
      raw = parsed.data.url;
    } else {
      const marker = readMarker(o.home);
      if (marker === null) {
        throw new AdminClientError(
          `the gateway is not running (no ${ready}); start it with \`mcpgw up\`, or pass --url / MCPGW_URL`,
          EXIT.notRunning,
        );
      }
      raw = marker.url;
    }
  }
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new AdminClientError(`not a URL: ${raw}`, EXIT.usage);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new AdminClientError(`not an http(s) URL: ${raw}`, EXIT.usage);
  return u.origin;
}

/** `--admin-key`, else `MCPGW_ADMIN_KEY`; null when neither is set. */
function keyFromFlagOrEnv(o: AdminClientOptions): string | null {
  if (o.adminKey !== undefined && o.adminKey !== '') return o.adminKey;
  const env = (o.env ?? process.env)['MCPGW_ADMIN_KEY'];
  return env !== undefined && env !== '' ? env : null;
}

function adminKey(o: AdminClientOptions): string {
  const key = keyFromFlagOrEnv(o);
  if (key === null) {
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

/** A client with the key from `--admin-key` or `MCPGW_ADMIN_KEY` only (no passphrase prompt). */
export function adminClient(o: AdminClientOptions): AdminClient {
  return clientFor(baseUrl(o), adminKey(o), o.timeoutMs);
}

function clientFor(base: string, key: string, timeoutMs: number | undefined): AdminClient {
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
          signal: AbortSignal.timeout(timeoutMs ?? 60_000),
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
      throw new AdminClientError(message, exit, res.status, code, err.success ? err.data.error.details : null);
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
  /** How many passphrases to try before giving up (default 3). */
  attempts?: number;
}

/**
 * The admin key for one command. Resolution order: `--admin-key`, then `MCPGW_ADMIN_KEY`, then the
 * passphrase-encrypted credential written by `mcpgw init`, unlocked with a passphrase typed on the
 * controlling terminal. Every failure is an AdminClientError with exit code 4 that says what to do.
 */
export async function resolveAdminKey(o: ConnectAdminOptions): Promise<string> {
  const direct = keyFromFlagOrEnv(o);
  if (direct !== null) return direct;
  const path = credentialPath(o.home);
  let stored: StoredCredential | null;
  try {
    stored = await readAdminCredential(o.home);
  } catch (err) {
    if (err instanceof CredentialError) throw new AdminClientError(err.message, EXIT.notAuthorized);
    throw err;
  }
  if (stored === null) {
    throw new AdminClientError(
      `no admin credential: ${path} does not exist and MCPGW_ADMIN_KEY is not set. ` +
        'Run `mcpgw init` (it stores the owner key encrypted under a passphrase), or set MCPGW_ADMIN_KEY ' +
        '(whoever can read it can approve)',
      EXIT.notAuthorized,
    );
  }
  let term: Terminal;
  try {
    term = Terminal.open();
  } catch (err) {
    if (!(err instanceof TerminalError)) throw err;
    throw new AdminClientError(
      `the admin credential in ${path} is locked with your approval passphrase, and ${err.message}. ` +
        'Run this command in a terminal, or set MCPGW_ADMIN_KEY for automation (whoever can read it can approve)',
      EXIT.notAuthorized,
    );
  }
  try {
    const attempts = Math.max(1, o.attempts ?? 3);
    for (let i = 1; i <= attempts; i++) {
      const passphrase = await term.hidden(`Approval passphrase (to ${o.purpose}): `);
      try {
        return (await openAdminCredential(stored, passphrase)).key;
      } catch (err) {
        if (!(err instanceof CredentialError)) throw err;
        if (i < attempts) term.write('Wrong passphrase, try again.\n');
      }
    }
    throw new AdminClientError(
      `wrong passphrase (${attempts} attempts); nothing was done. Forgotten? \`mcpgw init --force\` starts over with new keys (it rewrites config.yaml and mcp-security.yaml)`,
      EXIT.notAuthorized,
    );
  } catch (err) {
    if (err instanceof TerminalError) throw new AdminClientError(err.message, err.exitCode);
    throw err;
  } finally {
    term.close();
  }
}

/**
 * The admin client every admin command uses: the gateway's address first (so nobody types a
 * passphrase for a gateway that is down), then the key (resolveAdminKey).
 */
export async function connectAdmin(o: ConnectAdminOptions): Promise<AdminClient> {
  const base = baseUrl(o);
  const key = await resolveAdminKey(o);
  return clientFor(base, key, o.timeoutMs);
}

/**
 * `--url` and `--admin-key` for an admin command. The program adds ADMIN_KEY_HELP to the help of
 * every command with `--admin-key` (src/cli/program.ts), so commands need not.
 */
export function addConnectionOptions(cmd: Command): Command {
  return cmd
    .option('--url <url>', 'gateway base URL (env MCPGW_URL; default: the running installation in MCPGW_HOME)')
    .option('--admin-key <key>', 'admin API key (prefer env MCPGW_ADMIN_KEY: argv is visible to other users)');
}
