/**
 * `GET/POST /policy`: validate → (dry run: diff and stop) → store a revision → swap. A file with
 * any error changes nothing and answers 422 with every diagnostic located in the file.
 */
import type { ActivePolicy } from '../authz/runtime.js';
import { compilePolicyText, type CompiledPolicy } from '../policy/compile.js';
import { createLayer1Engine } from '../policy/layer1.js';
import type { PolicyDiagnostic } from '../policy/load.js';
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

/** What a stored revision's `compiled` column holds (replicas can swap it in without the file). */
export interface StoredCompiledPolicy {
  revision: string;
  file: string;
  data: CompiledPolicy['data'];
  layer2: CompiledPolicy['layer2'];
  approval: CompiledPolicy['approval'];
}

const LATEST_OF_REVISION = `SELECT id, created_at, created_by FROM policy_revisions
  WHERE id = $1 OR id LIKE $2 ORDER BY seq DESC LIMIT 1`;

/**
 * Stores a validated policy as a new revision row and returns its id: the compiled revision, with
 * `.2`, `.3`… when that revision was stored before (a re-apply or a rollback still needs a new row,
 * so other replicas hear of it). Startup can call this too, so the file loaded at start is a
 * revision like any other.
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

function invalid(file: string, errors: PolicyDiagnostic[]): AdminError {
  const n = errors.length;
  return new AdminError(
    'invalid_policy',
    `${file}: ${n} problem${n === 1 ? '' : 's'}; the running policy is unchanged`,
    errors.map(({ file: f, line, column, path, message }) => ({ file: f, line, column, path, message })),
  );
}

export function policyHandlers(env: HandlerEnv): Pick<Record<RouteName, Handler>, PolicyRoute> {
  // One apply at a time in this process, so "store, then swap" cannot interleave with another,
  // nor with the adoption of a revision announced by NOTIFY (including this apply's own).
  let queue: Promise<unknown> = Promise.resolve();
  const serialized = <T>(fn: () => Promise<T>): Promise<T> => {
    if (env.policy.exclusive) return env.policy.exclusive(fn);
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

      const diffAgainst = (before: ActivePolicy) =>
        diffPolicies({ compiled: before.compiled, services: before.policy.services }, next);

      if (req.dryRun) {
        const before = env.policy.active;
        const body: PolicyApplyResponse = {
          applied: false,
          dryRun: true,
          revision: result.compiled.data.revision,
          previousRevision: before.engine.revision,
          storedAs: null,
          diff: diffAgainst(before),
          warnings: result.warnings,
        };
        return ok(body);
      }

      return serialized(async () => {
        const before = env.policy.active;
        const diff = diffAgainst(before);
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
        // Storing the row NOTIFYs `mcpgw_policy` (a trigger): every replica adopts it from there.
        const storedAs = await recordPolicyRevision(env.store, {
          source: req.content,
          file: req.filename,
          compiled: result.compiled,
          createdBy: call.caller.id,
        });
        const applied = await env.policy.apply(req.content, req.filename);
        if (!applied.ok) throw invalid(req.filename, applied.errors);
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
