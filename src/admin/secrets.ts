/**
 * `/admin/v1/secrets`: store, list, delete and test the credentials injected into backends.
 *
 * A value arrives in exactly one place, the body of `PUT /secrets/:service/:name`, and leaves the
 * gateway only towards the backend (environment at spawn, or header templates). No response,
 * error, audit row or log line written here carries one: responses name services and variables,
 * errors are the store's (which name, never quote), and the test route reports names only.
 */
import {
  BackendConfigError,
  ChildProcessTransport,
  childEnv,
  resolveCommand,
  substituteHeaders,
} from '../aggregator/index.js';
import type { ServiceConfig } from '../policy/schema.js';
import { SecretStoreError, validateValue, type SecretStore } from '../vault/index.js';
import {
  pageQuerySchema,
  secretVariableSchema,
  serviceNameSchema,
  setSecretRequestSchema,
  type RouteName,
  type SecretEntryBody,
  type SecretPage,
  type SecretTestResponse,
  type SetSecretResponse,
} from './contract.js';
import { AdminError } from './errors.js';
import { auditChange, isoOrNull, ok, param, parse, type Handler, type HandlerEnv } from './handler.js';
import { pageInMemory } from './pagination.js';

export interface SecretsAdminDeps {
  store: SecretStore;
  /**
   * What the gateway injects into `service` (the aggregator's `envFor`); the test route uses it so
   * it checks the very path a backend gets its variables by. Default: `store.valuesFor(service)`.
   */
  envFor?: (service: string) => Promise<Record<string, string>>;
  /** A value was stored or deleted: rebuild redaction (awaited before the answer). */
  onChanged?: (service: string, variable: string) => void | Promise<void>;
  /**
   * Restarts the running backends of `service` so they start with the new values (DESIGN §8);
   * resolves to how many were stopped. Called after `onChanged`, so redaction already knows them.
   */
  restartService?: (service: string) => Promise<number>;
  /** How long the test route waits for a stdio backend to answer `initialize`. Default 10 s. */
  testTimeoutMs?: number;
  /** Working directory of test starts (the aggregator's). Default `process.cwd()`. */
  cwd?: string;
}

export type SecretRoute = 'listSecrets' | 'setSecret' | 'deleteSecret' | 'testSecrets';

/** The store's errors carry names only; they are passed on, with a status that fits. */
function fromStore(err: unknown): unknown {
  if (!(err instanceof SecretStoreError)) return err;
  switch (err.code) {
    case 'invalid_name':
    case 'invalid_value':
      return new AdminError('bad_request', err.message, { reason: err.code });
    case 'not_supported':
      return new AdminError('conflict', err.message, { reason: err.code });
    case 'conflict':
      return new AdminError('conflict', err.message, { reason: err.code });
    default:
      // Vault down, sealed, its token refused, a key file problem: the gateway's side, not the caller's.
      return new AdminError('unavailable', `the secret store failed: ${err.message}`, { reason: err.code });
  }
}

async function guarded<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    throw fromStore(err);
  }
}

const REFERENCE = /\$\{([A-Z_][A-Z0-9_]{0,127})\}/g;

function headerReferences(headers: Record<string, string> | undefined): string[] {
  const out = new Set<string>();
  for (const value of Object.values(headers ?? {})) for (const m of value.matchAll(REFERENCE)) out.add(m[1] as string);
  return [...out];
}

function describeFailure(err: unknown): string {
  if (err instanceof BackendConfigError) return err.message;
  if (err instanceof SecretStoreError) return `the secret store failed: ${err.message}`;
  // Spawn errors (ENOENT, EACCES) name the file at most; nothing else is passed on.
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? `the backend could not be started (${code})` : 'the backend could not be started';
}

/** Starts the command with `env` exactly as the aggregator does and waits for its `initialize` answer. */
async function startOnce(
  service: string,
  config: Extract<ServiceConfig, { transport: 'stdio' }>,
  env: Record<string, string>,
  cwd: string,
  timeoutMs: number,
): Promise<{ started: boolean; error: string | null }> {
  let transport: ChildProcessTransport | null = null;
  try {
    const cmd = await resolveCommand(config.command, config.args ?? [], env, cwd);
    const t = new ChildProcessTransport({ file: cmd.file, args: cmd.args, env, cwd, killAfterMs: 2000 });
    transport = t;
    const answered = new Promise<{ started: boolean; error: string | null }>((resolve) => {
      const timer = setTimeout(
        () => resolve({ started: false, error: `${service} did not answer initialize within ${timeoutMs} ms` }),
        timeoutMs,
      );
      timer.unref();
      t.onmessage = (msg) => {
        if ('id' in msg && msg.id === 1) {
          clearTimeout(timer);
          resolve(
            'result' in msg
              ? { started: true, error: null }
              : { started: false, error: `${service} answered initialize with an error` },
          );
        }
      };
      t.onclose = () => {
        clearTimeout(timer);
        const exit = t.exit;
        resolve({
          started: false,
          error: `${service} exited before answering initialize${exit ? ` (code ${String(exit.code)}${exit.signal ? `, ${exit.signal}` : ''})` : ''}`,
        });
      };
    });
    await t.start();
    await t.send({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: {
        protocolVersion: '2025-06-18',
        capabilities: {},
        clientInfo: { name: 'mcpgw-secret-test', version: '1' },
      },
    });
    return await answered;
  } catch (err) {
    return { started: false, error: describeFailure(err) };
  } finally {
    if (transport) {
      const t = transport;
      t.onclose = undefined;
      await t.close().catch(() => undefined);
    }
  }
}

export function secretHandlers(env: HandlerEnv, deps: SecretsAdminDeps | undefined): Record<SecretRoute, Handler> {
  const store = (): SecretStore => {
    if (!deps) throw new AdminError('unavailable', 'no secret store is configured in this process');
    return deps.store;
  };
  const services = (): Readonly<Record<string, ServiceConfig>> => env.policy.active.policy.services ?? {};
  const serviceConfig = (service: string): ServiceConfig | undefined =>
    Object.hasOwn(services(), service) ? services()[service] : undefined;
  /** service → its `secrets:` list, for the services that have one. */
  const declared = (): Record<string, string[]> => {
    const out: Record<string, string[]> = {};
    for (const [name, cfg] of Object.entries(services())) if (cfg.secrets !== undefined) out[name] = [...cfg.secrets];
    return out;
  };
  const envFor = (service: string): Promise<Record<string, string>> =>
    deps?.envFor ? deps.envFor(service) : store().valuesFor(service);

  async function changed(service: string, variable: string): Promise<void> {
    try {
      await deps?.onChanged?.(service, variable);
    } catch (err) {
      // Stored; redaction also catches up through the store's own change notification.
      env.onError(err, 'secrets.onChanged');
    }
  }

  /** Does a backend of `service` run now (it keeps the environment or headers it started with)? */
  async function running(service: string): Promise<boolean> {
    try {
      const reports = await env.backends();
      return reports.some((b) => b.service === service && b.state !== 'closed' && b.state !== 'idle');
    } catch (err) {
      env.onError(err, 'backends()');
      return false;
    }
  }

  return {
    async listSecrets(call) {
      const q = parse(pageQuerySchema, call.query, 'query');
      const s = store();
      const decl = declared();
      const listing = await guarded(() => s.list(decl));
      const items: SecretEntryBody[] = listing.map((l) => ({
        service: l.service,
        variable: l.variable,
        stored: l.stored,
        declared: Object.hasOwn(decl, l.service) && (decl[l.service] ?? []).includes(l.variable),
        updatedAt: isoOrNull(l.updatedAt),
      }));
      const page = pageInMemory(items, (i) => [i.service, i.variable], 2, q);
      const body: SecretPage = { ...page, backend: s.kind };
      return ok(body);
    },

    async setSecret(call) {
      const service = param(call, 'service', serviceNameSchema);
      const variable = param(call, 'name', secretVariableSchema);
      const req = parse(setSecretRequestSchema, call.body, 'request body');
      try {
        validateValue(req.value);
      } catch (err) {
        throw fromStore(err);
      }
      const s = store();
      const existed = (await guarded(() => s.list())).some((l) => l.service === service && l.variable === variable);
      const wasRunning = serviceConfig(service) !== undefined && (await running(service));
      await guarded(() => s.set(service, variable, req.value));
      await changed(service, variable);
      const restarted = wasRunning && deps?.restartService ? (await deps.restartService(service)) > 0 : false;
      await auditChange(
        env,
        call.caller,
        'admin/secrets.set',
        { variable, backend: s.kind, replaced: existed },
        service,
      );
      const cfg = serviceConfig(service);
      const warnings: string[] = [];
      if (!cfg) warnings.push(`service ${service} is not in the policy in force: nothing is injected until it is`);
      else if (cfg.secrets !== undefined && !cfg.secrets.includes(variable)) {
        warnings.push(
          `${variable} is not in services.${service}.secrets, which is authoritative: it is stored but not injected`,
        );
      }
      const needed = wasRunning && !restarted;
      const body: SetSecretResponse = {
        service,
        variable,
        stored: true,
        created: !existed,
        backend: s.kind,
        warnings,
        restart: {
          needed: wasRunning,
          done: restarted,
          message: restarted
            ? `the running ${service} backend was restarted with the new value`
            : needed
              ? `the running ${service} backend keeps the value it was started with until it restarts (the gateway has no restart hook yet: disable and enable the service, or restart the gateway)`
              : null,
        },
      };
      return ok(body);
    },

    async deleteSecret(call) {
      const service = param(call, 'service', serviceNameSchema);
      const variable = param(call, 'name', secretVariableSchema);
      const s = store();
      if (!(await guarded(() => s.delete(service, variable)))) {
        throw new AdminError('not_found', `no secret ${variable} is stored for ${service}`);
      }
      await changed(service, variable);
      await auditChange(env, call.caller, 'admin/secrets.delete', { variable, backend: s.kind }, service);
      return ok({ service, variable, deleted: true });
    },

    async testSecrets(call) {
      const service = param(call, 'service', serviceNameSchema);
      const cfg = serviceConfig(service);
      if (!cfg) throw new AdminError('not_found', `service ${service} is not in the policy in force`);
      const s = store();
      const storedNames = (await guarded(() => s.list()))
        .filter((l) => l.service === service && l.stored)
        .map((l) => l.variable);
      const list = cfg.secrets;
      let injected: Record<string, string>;
      try {
        injected = await envFor(service);
      } catch (err) {
        throw fromStore(err);
      }
      const result = (
        names: string[],
        delivered: (name: string) => boolean,
        started: boolean | null,
        error: string | null,
      ): SecretTestResponse => {
        const variables = names.sort().map((name) => ({
          name,
          stored: storedNames.includes(name),
          declared: list?.includes(name) ?? false,
          delivered: delivered(name),
        }));
        const missing = variables.filter((v) => !v.delivered && (v.declared || list === undefined)).map((v) => v.name);
        const ignored = list === undefined ? [] : storedNames.filter((n) => !list.includes(n)).sort();
        return {
          service,
          transport: cfg.transport,
          backend: s.kind,
          variables,
          missing,
          ignored,
          started,
          error,
          ok: missing.length === 0 && error === null && started !== false,
        };
      };

      if (cfg.transport === 'stdio') {
        const names = [...new Set([...(list ?? []), ...storedNames])];
        let childVars: Record<string, string>;
        try {
          childVars = childEnv(service, cfg, injected);
        } catch (err) {
          return ok(result(names, () => false, false, describeFailure(err)));
        }
        const delivered = (n: string): boolean => Object.hasOwn(childVars, n) && childVars[n] !== '';
        const run = await startOnce(service, cfg, childVars, deps?.cwd ?? process.cwd(), deps?.testTimeoutMs ?? 10_000);
        return ok(result(names, delivered, run.started, run.error));
      }

      // http/sse: the values reach the backend only through `${VAR}` in headers.
      const refs = headerReferences(cfg.headers);
      const names = [...new Set([...(list ?? []), ...storedNames, ...refs])];
      let error: string | null = null;
      try {
        substituteHeaders(service, cfg.headers, injected);
      } catch (err) {
        error = describeFailure(err);
      }
      const allowed = (n: string): boolean => list === undefined || list.includes(n);
      const delivered = (n: string): boolean =>
        refs.includes(n) && allowed(n) && Object.hasOwn(injected, n) && injected[n] !== '';
      const body = result(names, delivered, null, error);
      // A stored secret no header names is never sent: not missing, just unused.
      body.missing = body.missing.filter((n) => refs.includes(n));
      body.ok = body.missing.length === 0 && error === null;
      return ok(body);
    },
  } satisfies Pick<Record<RouteName, Handler>, SecretRoute>;
}
