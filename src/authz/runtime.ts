/**
 * Assembles the authz role: keys, identity, the current policy (Layer 1 engine + Layer 2 rule set,
 * swapped together as one value), and the Check handler's dependencies.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { keysDir, loadOrCreateKey } from '../config/keys.js';
import { looksLikeApiKey } from '../identity/api-keys.js';
import { DbKeyRing } from '../identity/db-key-ring.js';
import { createInternalJwtIssuer, FileKeyRing, type KeyRing } from '../identity/internal-jwt.js';

/** The ring authz signs with; `reload` lets the gateway pick up a rotation made elsewhere. */
export type RuntimeKeyRing = KeyRing & { reload(): Promise<void> };
import { createJwtVerifier, type JwtVerifier, type JwtVerifierOptions } from '../identity/jwt.js';
import { requestMac } from '../identity/request-mac.js';
import { verifyServerRequestId, verifySessionId } from '../identity/session.js';
import { authenticateApiKey, type ApiKeyAuthError, type IdentityStore } from '../identity/store.js';
import type { Logger } from '../log.js';
import { approvalSettingsFor, compilePolicyText, type CompiledPolicy } from '../policy/compile.js';
import type { PolicyDiagnostic } from '../policy/load.js';
import type { PolicyFile } from '../policy/schema.js';
import type { Layer1Data } from '../policy/layer1-types.js';
import { createLayer1Engine, type Layer1Engine } from '../policy/layer1.js';
import { readPolicyText } from '../policy/load.js';
import { check, type AuthResult, type CheckDeps, type CheckResult, type DecisionFacts } from './check.js';
import type { HttpRequestView } from './http-view.js';
import type { Layer2Store } from '../state/index.js';

/** The policy in force: engine and Layer 2 rules always from the same revision. */
export interface ActivePolicy {
  readonly engine: Layer1Engine;
  readonly compiled: CompiledPolicy;
  /** The validated file as written (the gateway reads `services:` from it). */
  readonly policy: PolicyFile;
  readonly source: string;
  /** The file's text, as stored in `policy_revisions.source` (what other replicas compile). */
  readonly text: string;
}

export type ApplyResult =
  { ok: true; revision: string; warnings: PolicyDiagnostic[] } | { ok: false; errors: PolicyDiagnostic[] };

/** Envoy's `with_request_body.max_request_bytes` in our config (envoy/envoy.yaml). */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** Below the 1 s ext_authz timeout, leaving room for the decision itself. */
export const MAX_APPROVAL_WAIT_MS = 750;

/** The text used when no policy file is given: no rules, so every tool call is denied. */
export const EMPTY_POLICY = 'version: "1.0"\n';

/** Runtime state the file does not hold (services enabled/suspended by an admin) laid over its catalog. */
export type CatalogOverlay = (data: Layer1Data) => Promise<Layer1Data>;

export interface PolicyHolderOptions {
  /** Runs before a new policy becomes visible (e.g. to register its Layer 2 rules). */
  onSwap?: (active: ActivePolicy) => void;
  overlay?: CatalogOverlay;
}

export type AdoptResult = ApplyResult | { ok: true; unchanged: true; revision: string };

export class PolicyHolder {
  #active: ActivePolicy;
  readonly #onSwap: (active: ActivePolicy) => void;
  readonly #overlay: CatalogOverlay;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(active: ActivePolicy, opts: PolicyHolderOptions) {
    this.#active = active;
    this.#onSwap = opts.onSwap ?? (() => {});
    this.#overlay = opts.overlay ?? ((d) => Promise.resolve(d));
    this.#onSwap(active);
  }

  static async create(
    text: string,
    file: string,
    opts: PolicyHolderOptions = {},
  ): Promise<{ holder: PolicyHolder } | { errors: PolicyDiagnostic[] }> {
    const built = await build(text, file, opts.overlay);
    if (!built.ok) return { errors: built.errors };
    return { holder: new PolicyHolder(built.active, opts) };
  }

  get active(): ActivePolicy {
    return this.#active;
  }

  /** Validates and compiles `text` completely before swapping; on any error the old policy stays. */
  async apply(text: string, file: string): Promise<ApplyResult> {
    const built = await build(text, file, this.#overlay);
    if (!built.ok) return built;
    this.#onSwap(built.active);
    this.#active = built.active;
    return { ok: true, revision: built.active.engine.revision, warnings: built.warnings };
  }

  /**
   * Runs `fn` after every earlier `exclusive` call of this holder has finished. The admin API's
   * "store, then swap" runs here, so the NOTIFY of its own revision, adopted through here too,
   * finds that revision already active instead of racing it into a second swap.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Applies a stored revision unless the policy in force was compiled to the same `revision`
   * (the process that applied it hears its own NOTIFY too). On any error the old policy stays.
   */
  adopt(text: string, file: string, revision: string): Promise<AdoptResult> {
    return this.exclusive(async () => {
      if (this.#active.compiled.data.revision === revision) return { ok: true, unchanged: true, revision };
      return this.apply(text, file);
    });
  }

  /** Re-applies the runtime overlay (a service was enabled, disabled or suspended) to the same revision. */
  async refreshOverlay(): Promise<void> {
    const active = this.#active;
    await active.engine.swap(await this.#overlay(active.compiled.data));
  }
}

async function build(
  text: string,
  file: string,
  overlay: CatalogOverlay = (d) => Promise.resolve(d),
): Promise<
  { ok: true; active: ActivePolicy; warnings: PolicyDiagnostic[] } | { ok: false; errors: PolicyDiagnostic[] }
> {
  const result = compilePolicyText(text, file);
  if (!result.ok) return result;
  try {
    const engine = await createLayer1Engine(await overlay(result.compiled.data), {
      decisionCache: decisionCacheSize(),
    });
    return {
      ok: true,
      active: { engine, compiled: result.compiled, policy: result.policy, source: file, text },
      warnings: result.warnings,
    };
  } catch (err) {
    return {
      ok: false,
      errors: [
        { file, line: 1, column: 1, path: '', message: `policy engine rejected the compiled policy: ${String(err)}` },
      ],
    };
  }
}

/** `MCPGW_L1_DECISION_CACHE=0` turns the Layer 1 decision cache off (benchmarks of cold evaluation). */
function decisionCacheSize(): number | undefined {
  const v = process.env['MCPGW_L1_DECISION_CACHE'];
  const n = v === undefined || v === '' ? NaN : Number(v);
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}

export interface AuthzRuntimeOptions {
  home: string;
  /** Defaults to the state store's identities; required without a store. */
  identities?: IdentityStore;
  /** Layer 2 (approvals, limits, flows…) and the audit log; null = stateless Layer 1 only. */
  store?: Layer2Store | null;
  jwt?: JwtVerifierOptions;
  policyFile?: string;
  separator?: string;
  /** The no-prefix mode (exactly one backend): its service name. */
  noPrefixService?: string | null;
  /** Runtime service states (admin enable/disable/suspend) laid over the file's catalog. */
  overlay?: CatalogOverlay;
  /** Envoy's max_request_bytes (the built-in front uses the same). */
  maxBodyBytes?: number;
  logger: Logger;
  /** Extra `WWW-Authenticate` parameters (e.g. `resource_metadata` in OIDC mode). */
  wwwAuthenticate?: string;
}

export interface AuthzRuntime {
  readonly policy: PolicyHolder;
  readonly keyRing: RuntimeKeyRing;
  /** Stops background work (key refresh); call before closing the store. */
  close(): Promise<void>;
  readonly sessionKey: Buffer;
  readonly requestMacKey: Buffer;
  check(view: HttpRequestView): Promise<CheckResult>;
  /** Re-reads the policy file (SIGHUP). */
  reloadPolicy(): Promise<ApplyResult>;
}

export async function createAuthzRuntime(opts: AuthzRuntimeOptions): Promise<AuthzRuntime> {
  const dir = keysDir(opts.home);
  const [sessionKey, requestMacKey] = await Promise.all([
    loadOrCreateKey(dir, 'session.key'),
    loadOrCreateKey(dir, 'request-mac.key'),
  ]);
  // With a state store the signing keys live in the database (encrypted, shared by replicas);
  // stateless authz keeps them in a file.
  const keyRing: RuntimeKeyRing = opts.store
    ? await DbKeyRing.open({
        store: opts.store,
        home: opts.home,
        onError: (err) =>
          opts.logger.warn(
            { err: err instanceof Error ? err.message : String(err) },
            'internal-JWT key refresh failed; keeping the current keys',
          ),
      })
    : await FileKeyRing.open(join(dir, 'internal-jwt.json'));
  const issuer = createInternalJwtIssuer({ ring: keyRing });

  let jwtVerifier: JwtVerifier | null = null;
  if (opts.jwt) {
    jwtVerifier = await createJwtVerifier(opts.jwt);
    await jwtVerifier.refresh().catch((err: unknown) => {
      // Serving starts anyway: JWTs are refused (503) until the JWKS is reachable.
      opts.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'JWKS not available yet');
    });
  }

  const store = opts.store ?? null;
  const identities = opts.identities ?? store?.identity;
  if (!identities) throw new Error('authz needs an identity store: a state store or an identities file');

  const initial = await loadPolicySource(opts.policyFile);
  if (!initial.ok) throw new PolicyLoadError(initial.errors);
  const created = await PolicyHolder.create(initial.text, initial.file, {
    onSwap: (active) => store?.setRules(active.engine.revision, active.compiled.layer2),
    ...(opts.overlay ? { overlay: opts.overlay } : {}),
  });
  if ('errors' in created) throw new PolicyLoadError(created.errors);
  const policy = created.holder;

  const authenticate = async (header: string | undefined): Promise<AuthResult> => {
    if (header === undefined || header === '') {
      return {
        ok: false,
        status: 401,
        code: 'no_credentials',
        message: 'Missing credentials: send Authorization: Bearer <key or token>',
      };
    }
    const m = /^Bearer ([\x21-\x7e]+)$/i.exec(header);
    if (!m?.[1])
      return {
        ok: false,
        status: 401,
        code: 'bad_authorization',
        message: 'Authorization must be "Bearer <key or token>"',
      };
    const token = m[1];
    if (looksLikeApiKey(token)) {
      const r = await authenticateApiKey(identities, token);
      if (!r.ok) return { ok: false, status: 401, code: `api_key_${r.code}`, message: API_KEY_MESSAGES[r.code] };
      return { ok: true, principal: r.principal, via: 'api_key', keyKind: r.keyKind };
    }
    if (!jwtVerifier)
      return {
        ok: false,
        status: 401,
        code: 'unsupported_credential',
        message: 'Not an mcpgw API key, and JWT sign-in is not configured',
      };
    const v = await jwtVerifier.verify(token);
    if (!v.ok) {
      return v.code === 'jwks_unavailable'
        ? {
            ok: false,
            status: 503,
            code: 'jwt_jwks_unavailable',
            message: 'Cannot verify tokens right now (identity provider keys unavailable)',
          }
        : { ok: false, status: 401, code: `jwt_${v.code}`, message: v.message };
    }
    const principal = await identities.findUser(v.userId);
    if (!principal)
      return {
        ok: false,
        status: 403,
        code: 'unknown_user',
        message: 'Signed in, but this user has no access to the gateway',
      };
    return { ok: true, principal: v.email ? { ...principal, email: v.email } : principal, via: 'jwt' };
  };

  const deps: CheckDeps = {
    authenticate,
    layer1: () => policy.active.engine,
    layer2: store,
    ...(store
      ? {
          auditDenial: async (decisionId: string, f: DecisionFacts) => {
            await store.appendAudit({
              decisionId,
              userId: f.userId,
              method: f.rpcMethod ?? `${f.httpMethod} ${f.route}`,
              service: f.service,
              tool: f.name,
              outcome: 'deny',
              rule: f.rule,
              reasons: f.reasons,
              policyRevision: f.policyRevision,
              detail: { code: f.code },
            });
          },
        }
      : {}),
    ...(store
      ? {
          approvalWait: {
            // approval.wait must stay below Envoy's 1 s ext_authz timeout; longer waits are capped.
            get ms() {
              return Math.min(policy.active.compiled.approval.waitSeconds * 1000, MAX_APPROVAL_WAIT_MS);
            },
            until: async (id: string, ms: number) => (await store.waitForDecision(id, ms)).status === 'approved',
          },
        }
      : {}),
    approvalSettings: (decision) => {
      const compiled = policy.active.compiled;
      const rule = compiled.data.rules.find((r) => r.name === decision.rule);
      return approvalSettingsFor(
        {
          approvers: decision.approval?.approvers ?? rule?.approvers ?? [],
          timeout: decision.approval?.timeout ?? rule?.timeout ?? null,
        },
        compiled.approval,
      );
    },
    sessions: {
      verify: (sid, user) => verifySessionId(sessionKey, sid, user),
      verifyServerRequestId: (sid, id) => verifyServerRequestId(sessionKey, sid, id),
    },
    upstream: {
      mintToken: (p) => issuer.mint({ sub: p.id, role: p.role }),
      requestMac: (decisionId, body) => requestMac(requestMacKey, decisionId, body),
    },
    maxBodyBytes: opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    separator: opts.separator ?? '__',
    noPrefixService: opts.noPrefixService ?? null,
    newDecisionId: randomUUID,
    wwwAuthenticate: opts.wwwAuthenticate ?? 'Bearer realm="mcpgw"',
  };

  return {
    policy,
    keyRing,
    sessionKey,
    requestMacKey,
    check: (view) => check(view, deps),
    close: async () => {
      if (keyRing instanceof DbKeyRing) await keyRing.close();
    },
    async reloadPolicy() {
      const src = await loadPolicySource(opts.policyFile);
      if (!src.ok) return src;
      return policy.exclusive(() => policy.apply(src.text, src.file));
    },
  };
}

const API_KEY_MESSAGES: Record<ApiKeyAuthError, string> = {
  malformed: 'Malformed API key',
  bad_checksum: 'API key checksum does not match (typo?)',
  unknown_key: 'Unknown or revoked API key',
  kind_mismatch: 'This kind of API key cannot be used by this user',
};

export class PolicyLoadError extends Error {
  constructor(readonly errors: PolicyDiagnostic[]) {
    super(
      `policy rejected:\n${errors.map((e) => `  ${e.file}:${e.line}:${e.column} ${e.path ? `${e.path}: ` : ''}${e.message}`).join('\n')}`,
    );
    this.name = 'PolicyLoadError';
  }
}

async function loadPolicySource(
  file: string | undefined,
): Promise<{ ok: true; text: string; file: string } | { ok: false; errors: PolicyDiagnostic[] }> {
  if (!file) return { ok: true, text: EMPTY_POLICY, file: '<no policy: every tool call is denied>' };
  const read = await readPolicyText(file);
  return read.ok ? { ok: true, text: read.text, file } : read;
}
