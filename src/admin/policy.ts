/**
 * `GET/POST /policy`: validate → (dry run: diff and stop) → store a revision → swap. A file with
 * any error changes nothing and answers 422 with every diagnostic located in the file.
 */
import type { ActivePolicy } from '../authz/runtime.js';
import { compilePolicyText, type CompiledPolicy } from '../policy/compile.js';
import { createLayer1Engine } from '../policy/layer1.js';
import { loadPolicyText, type PolicyDiagnostic } from '../policy/load.js';
import type { ServiceConfig } from '../policy/schema.js';
import type { Layer2Store } from '../state/index.js';
import { asDate, asNullableString, asString, sqlState } from '../state/db.js';
import {
  policyApplyRequestSchema,
  type PolicyApplyResponse,
  type PolicyInfoResponse,
  type RouteName,
} from './contract.js';
import { AdminError } from './errors.js';
import { auditChange, isoOrNull, ok, parse, type Handler, type HandlerEnv } from './handler.js';
import { diffPolicies } from './policy-diff.js';

type Services = Readonly<Record<string, ServiceConfig>>;

/** What a stored revision's `compiled` column holds (replicas can swap it in without the file). */
export interface StoredCompiledPolicy {
  revision: string;
  file: string;
  data: CompiledPolicy['data'];
  layer2: CompiledPolicy['layer2'];
  approval: CompiledPolicy['approval'];
}

const LATEST_OF_REVISION = `SELECT id, source, compiled, created_at, created_by FROM policy_revisions
  WHERE id = $1 OR id LIKE $2 ORDER BY seq DESC LIMIT 1`;

/**
 * Stores a validated policy as a new revision row and returns its id: the compiled revision, with
 * `.2`, `.3`… when that revision was stored before (a re-apply or a rollback still needs a new row,
 * so other replicas hear of it). The lead's startup code can call this too, so the file loaded at
 * start is a revision like any other.
 */
export async function recordPolicyRevision(
  store: Layer2Store,
  rev: { source: string; file: string; compiled: CompiledPolicy; createdBy: string | null },
): Promise<string> {
  const revision = rev.compiled.data.revision;
  const compiled: StoredCompiledPolicy = {
    revision,
    file: rev.file,
    data: rev.compiled.data,
    layer2: rev.compiled.layer2,
    approval: rev.compiled.approval,
  };
  for (let attempt = 0; ; attempt++) {
    const r = await store.db.query<{ n: unknown }>(
      'SELECT count(*)::int AS n FROM policy_revisions WHERE id = $1 OR id LIKE $2',
      [revision, `${revision}.%`],
    );
    const n = Number(r.rows[0]?.n ?? 0);
    const id = n === 0 ? revision : `${revision}.${n + 1}`;
    try {
      await store.putPolicyRevision({ id, source: rev.source, compiled, createdBy: rev.createdBy });
      return id;
    } catch (err) {
      // Another replica stored the same revision at the same moment: count again.
      if (sqlState(err) !== '23505' || attempt >= 3) throw err;
    }
  }
}

function servicesOfHolder(active: ActivePolicy): Services | null {
  // The holder may keep the parsed file (the gateway reads `active.policy.services` when it does).
  const policy: unknown = (active as ActivePolicy & { policy?: unknown }).policy;
  if (typeof policy !== 'object' || policy === null || !('services' in policy)) return null;
  const services: unknown = policy.services;
  return typeof services === 'object' && services !== null ? (services as Services) : null;
}

/** Finds the `services:` settings of the policy in force, which the compiled catalog does not hold. */
export class PolicyView {
  readonly #env: HandlerEnv;
  readonly #known = new WeakMap<ActivePolicy, Promise<Services | null>>();

  constructor(env: HandlerEnv) {
    this.#env = env;
  }

  remember(active: ActivePolicy, services: Services): void {
    this.#known.set(active, Promise.resolve(services));
  }

  services(active: ActivePolicy = this.#env.policy.active): Promise<Services | null> {
    let p = this.#known.get(active);
    if (!p) {
      p = this.#lookup(active).catch((err: unknown) => {
        this.#env.onError(err, 'reading the stored policy revision');
        return null;
      });
      this.#known.set(active, p);
    }
    return p;
  }

  async #lookup(active: ActivePolicy): Promise<Services | null> {
    const held = servicesOfHolder(active);
    if (held) return held;
    // After a restart, the newest stored row of the revision in force, if it came from the same file.
    const rev = active.engine.revision;
    const r = await this.#env.store.db.query(LATEST_OF_REVISION, [rev, `${rev}.%`]);
    const row = r.rows[0];
    if (!row) return null;
    const compiled = row['compiled'] as { file?: unknown } | null;
    if (compiled?.file !== active.source) return null;
    const loaded = loadPolicyText(asString(row['source']), active.source);
    return loaded.ok ? loaded.policy.services : null;
  }
}

function invalid(file: string, errors: PolicyDiagnostic[]): AdminError {
  const n = errors.length;
  return new AdminError(
    'invalid_policy',
    `${file}: ${n} problem${n === 1 ? '' : 's'}; the running policy is unchanged`,
    errors.map(({ file: f, line, column, path, message }) => ({ file: f, line, column, path, message })),
  );
}

export function policyHandlers(env: HandlerEnv, view: PolicyView): Pick<Record<RouteName, Handler>, PolicyRoute> {
  // One apply at a time in this process, so "store, then swap" cannot interleave with another.
  let queue: Promise<unknown> = Promise.resolve();
  const serialized = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  };

  return {
    async getPolicy() {
      const active = env.policy.active;
      const rev = active.engine.revision;
      const r = await env.store.db.query(LATEST_OF_REVISION, [rev, `${rev}.%`]);
      const row = r.rows[0];
      const body: PolicyInfoResponse = {
        revision: rev,
        file: active.source,
        storedAs: row ? asString(row['id']) : null,
        appliedAt: row ? isoOrNull(asDate(row['created_at'])) : null,
        appliedBy: row ? asNullableString(row['created_by']) : null,
      };
      return ok(body);
    },

    async applyPolicy(call) {
      const req = parse(policyApplyRequestSchema, call.body, 'request body');
      const result = compilePolicyText(req.content, req.filename);
      if (!result.ok) throw invalid(req.filename, result.errors);
      const next = { compiled: result.compiled, services: result.policy.services };

      const diffAgainst = async (before: ActivePolicy) =>
        diffPolicies({ compiled: before.compiled, services: await view.services(before) }, next);

      if (req.dryRun) {
        const before = env.policy.active;
        const body: PolicyApplyResponse = {
          applied: false,
          dryRun: true,
          revision: result.compiled.data.revision,
          previousRevision: before.engine.revision,
          storedAs: null,
          diff: await diffAgainst(before),
          warnings: result.warnings,
        };
        return ok(body);
      }

      return serialized(async () => {
        const before = env.policy.active;
        const diff = await diffAgainst(before);
        // Load it into an engine first, so nothing is stored that the swap would then refuse.
        try {
          await createLayer1Engine(result.compiled.data);
        } catch (err) {
          throw invalid(req.filename, [
            {
              file: req.filename,
              line: 0,
              column: 0,
              path: '',
              message: `the policy engine rejected the compiled policy: ${err instanceof Error ? err.message : String(err)}`,
            },
          ]);
        }
        const storedAs = await recordPolicyRevision(env.store, {
          source: req.content,
          file: req.filename,
          compiled: result.compiled,
          createdBy: call.caller.id,
        });
        const applied = await env.policy.apply(req.content, req.filename);
        if (!applied.ok) throw invalid(req.filename, applied.errors);
        view.remember(env.policy.active, result.policy.services);
        await auditChange(env, call.caller, 'admin/policy.apply', {
          revision: applied.revision,
          previousRevision: before.engine.revision,
          storedAs,
          file: req.filename,
          summary: diff.summary,
        });
        env.onPolicyApplied(applied.revision);
        const body: PolicyApplyResponse = {
          applied: true,
          dryRun: false,
          revision: applied.revision,
          previousRevision: before.engine.revision,
          storedAs,
          diff,
          warnings: applied.warnings,
        };
        return ok(body);
      });
    },
  };
}

export type PolicyRoute = 'getPolicy' | 'applyPolicy';
