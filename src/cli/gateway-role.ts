/**
 * The gateway role's wiring (DESIGN §2): the /mcp aggregator with its backends' credentials and
 * redaction, and the admin API when there is a state store. `serve --role all` runs it next to
 * authz in one process (serve-all.ts); `serve --role gateway` runs it alone (serveGatewayRole),
 * behind an authz and a front that run elsewhere, as separate Kubernetes Deployments would.
 *
 * A gateway apart from authz trusts only what authz signs, so it needs authz's keys, read from
 * where authz reads them (createAuthzRuntime): the session and request-MAC keys from the shared
 * `MCPGW_HOME/keys/` (a mounted Secret in a cluster), and the internal-JWT public keys from the
 * shared database (DbKeyRing) or, without a state store, from authz's `keys/internal-jwt.json`.
 * authz serves no HTTP, so there is no JWKS URL of its own to fetch them from.
 */
import { join } from 'node:path';
import {
  adminHttpHandler,
  createAdminApi,
  internalJwtCallerVerifier,
  overlayServiceStates,
  recordPolicyRevision,
} from '../admin/index.js';
import { ServiceStateStore } from '../admin/services.js';
import type { UserLookup } from '../aggregator/index.js';
import { followPolicyRevisions } from '../authz/policy-follower.js';
import { PolicyHolder, PolicyLoadError, type ApplyResult } from '../authz/runtime.js';
import { keysDir, loadOrCreateKey } from '../config/keys.js';
import { gatewayPolicyFrom, keyRefresher, startGateway, type GatewayServer } from '../gateway/index.js';
import { DbKeyRing } from '../identity/db-key-ring.js';
import { FileKeyRing, type KeyRing } from '../identity/internal-jwt.js';
import type { IdentityStore } from '../identity/store.js';
import type { Logger } from '../log.js';
import { loadPolicyFile, readPolicyText } from '../policy/load.js';
import { openStore, type Layer2Store } from '../state/index.js';
import { LiveRedactor, openSecretStore, type SecretsConfig } from '../vault/index.js';

export type Closers = (() => Promise<void>)[];

/**
 * Shutdown steps, pushed in start order; `closeAll` runs them last-first, and a failed step is
 * logged rather than stopping the steps after it.
 */
export function shutdownSteps(log: Logger): { closers: Closers; closeAll: () => Promise<void> } {
  const closers: Closers = [];
  const closeAll = async (): Promise<void> => {
    for (const c of [...closers].reverse()) {
      try {
        await c();
      } catch (err) {
        log.warn({ err: err instanceof Error ? err.message : String(err) }, 'shutdown step failed');
      }
    }
  };
  return { closers, closeAll };
}

/** A key ring the gateway can re-read when a token names a key it does not know yet. */
type ReloadableRing = KeyRing & { reload(): Promise<void> };

export interface GatewayRoleOptions {
  host: string;
  port: number;
  /** The policy in force: authz's own holder in `--role all`, the gateway's in `--role gateway`. */
  policy: PolicyHolder;
  store: Layer2Store | null;
  identities: UserLookup;
  keys: { sessionKey: Uint8Array; requestMacKey: Uint8Array; keyRing: ReloadableRing };
  /** Where the builtin secrets backend keeps its key. */
  keyDir: string;
  logger: Logger;
  /** Single-backend mode: names and URIs travel unprefixed. */
  noPrefix: boolean;
  secrets?: SecretsConfig;
  /** Service switches of the admin API (the state store's); absent without a store. */
  services?: ServiceStateStore;
  /** Re-applies the service switches to every policy holder of this process. */
  refreshOverlay: () => Promise<void>;
  /** Shutdown steps are appended here, in start order. */
  closers: Closers;
}

/** Starts the gateway HTTP server, its secrets and redaction, and the admin API with a store. */
export async function startGatewayRole(o: GatewayRoleOptions): Promise<GatewayServer> {
  const log = o.logger;
  const wanted = o.secrets ?? { backend: 'builtin' };
  // The builtin backend stores secrets in the state store; without one there are none to inject.
  const secretsConfig: SecretsConfig = o.store === null && wanted.backend === 'builtin' ? { backend: 'none' } : wanted;
  const secrets = await openSecretStore(secretsConfig, { ...(o.store ? { db: o.store.db } : {}), keyDir: o.keyDir });
  o.closers.push(() => secrets.close());
  // Everything a backend sends is redacted for every stored secret before it travels on.
  const redactor = await LiveRedactor.start(secrets, {
    log: (msg, err) => log.warn({ err: err instanceof Error ? err.message : String(err) }, msg),
  });
  o.closers.push(() => redactor.close());
  const envFor = async (service: string): Promise<Record<string, string>> => {
    const values = await secrets.valuesFor(service);
    redactor.noteInjected(service, values);
    return values;
  };

  const gateway = await startGateway({
    host: o.host,
    port: o.port,
    policy: gatewayPolicyFrom(o.policy),
    identities: o.identities,
    keys: o.keys,
    logger: log,
    envFor,
    redact: (v) => redactor.current.redact(v),
    ...(o.noPrefix ? { naming: { prefix: false } } : {}),
  });
  o.closers.push(() => gateway.close());

  if (o.store && o.services) {
    const refreshKeys = keyRefresher(o.keys.keyRing);
    const admin = createAdminApi({
      store: o.store,
      // A policy applied here reaches an authz in another process through the stored revision.
      policy: o.policy,
      services: o.services,
      backends: () => gateway.aggregator.stats().backends,
      onGrantsChanged: (userId) => gateway.notifyGrantsChanged(userId),
      // Awaited: the admin API answers once the switch is in force here (other processes hear the NOTIFY).
      onServicesChanged: () => o.refreshOverlay(),
      // The same injection path as the gateway's; a changed value is redacted before the answer.
      secrets: {
        store: secrets,
        envFor,
        onChanged: () => redactor.refresh(),
        restartService: (service) => gateway.aggregator.restartService(service),
      },
    });
    gateway.setAdminHandler(adminHttpHandler(admin, internalJwtCallerVerifier(o.keys.keyRing, { refreshKeys })));
  }
  return gateway;
}

// ---------------------------------------------------------------------------------------------
// `serve --role gateway`
// ---------------------------------------------------------------------------------------------

export interface ServeGatewayOptions {
  home: string;
  policyFile: string;
  host: string;
  port: number;
  logger: Logger;
  /** false: no state store; identities from `identitiesFile`, internal-JWT keys from authz's key file. */
  state: boolean;
  /** Users, roles and grants from a file instead of the state store (as `serve --role authz --identities`). */
  identities?: IdentityStore;
  noPrefix?: boolean;
  secrets?: SecretsConfig;
}

export interface RunningGatewayRole {
  readonly url: string;
  readonly port: number;
  readonly store: Layer2Store | null;
  /** Re-reads the policy file; a broken file keeps the running policy. */
  reloadPolicy(): Promise<ApplyResult>;
  close(): Promise<void>;
}

export async function serveGatewayRole(o: ServeGatewayOptions): Promise<RunningGatewayRole> {
  const log = o.logger;
  const { closers, closeAll } = shutdownSteps(log);
  try {
    const dir = keysDir(o.home);
    // The files authz reads (createAuthzRuntime); created here only if this process comes up first.
    const [sessionKey, requestMacKey] = await Promise.all([
      loadOrCreateKey(dir, 'session.key'),
      loadOrCreateKey(dir, 'request-mac.key'),
    ]);
    let store: Layer2Store | null = null;
    if (o.state) {
      store = await openStore({ home: o.home, logger: log });
      const opened = store;
      closers.push(() => opened.close());
    }
    const keyRing: ReloadableRing = store
      ? await DbKeyRing.open({
          store,
          home: o.home,
          onError: (err) =>
            log.warn(
              { err: err instanceof Error ? err.message : String(err) },
              'internal-JWT key refresh failed; keeping the current keys',
            ),
        })
      : await FileKeyRing.open(join(dir, 'internal-jwt.json'));
    if (keyRing instanceof DbKeyRing) closers.push(async () => keyRing.close());
    const identities = o.identities ?? store?.identity;
    if (!identities) throw new Error('the gateway role needs an identity store: a state store or --identities');

    const noPrefixService = o.noPrefix ? await singleService(o.policyFile) : null;
    const services = store ? new ServiceStateStore(store.db) : undefined;
    const text = await readPolicyText(o.policyFile);
    if (!text.ok) throw new PolicyLoadError(text.errors);
    const created = await PolicyHolder.create(text.text, o.policyFile, {
      ...(services ? { overlay: async (data) => overlayServiceStates(data, await services.list()) } : {}),
    });
    if ('errors' in created) throw new PolicyLoadError(created.errors);
    const policy = created.holder;
    if (noPrefixService !== null && Object.keys(policy.active.policy.services ?? {}).join() !== noPrefixService) {
      throw new Error('no-prefix mode needs a policy with exactly one service');
    }
    if (store) {
      await recordPolicyRevision(store, {
        source: text.text,
        file: o.policyFile,
        compiled: policy.active.compiled,
        createdBy: null,
      });
    }

    const gateway = await startGatewayRole({
      host: o.host,
      port: o.port,
      policy,
      store,
      identities,
      keys: { sessionKey, requestMacKey, keyRing },
      keyDir: dir,
      logger: log,
      noPrefix: noPrefixService !== null,
      ...(o.secrets ? { secrets: o.secrets } : {}),
      ...(services ? { services } : {}),
      refreshOverlay: () => policy.refreshOverlay(),
      closers,
    });
    if (services) {
      // authz (or another gateway) switched a service: list what it now allows.
      const stopWatch = await services.watch(() => void policy.refreshOverlay());
      closers.push(stopWatch);
    }
    if (store) {
      // A policy applied through any replica's admin API: list and call what it now names.
      closers.push(await followPolicyRevisions({ store, holder: policy, logger: log }));
    }
    const url = `http://${o.host}:${gateway.port}/mcp`;
    log.info({ url, revision: policy.active.engine.revision, state: store !== null }, 'gateway role ready');
    return {
      url,
      port: gateway.port,
      store,
      reloadPolicy: async () => {
        const next = await readPolicyText(o.policyFile);
        return next.ok ? policy.exclusive(() => policy.apply(next.text, o.policyFile)) : next;
      },
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** The one service of a no-prefix policy. */
export async function singleService(policyFile: string): Promise<string> {
  const loaded = await loadPolicyFile(policyFile);
  const names = loaded.ok ? Object.keys(loaded.policy.services ?? {}) : [];
  const only = names[0];
  if (names.length !== 1 || only === undefined) {
    throw new Error(`no-prefix mode needs exactly one service in ${policyFile} (found ${names.length})`);
  }
  return only;
}
