/**
 * Moves every secret from one backend to another (`mcpgw vault enable|disable`) without losing one.
 *
 * Order: read everything from the source (fails before any write if a value is unreadable), copy,
 * read every copy back from the target and compare, and only when all of them match delete from
 * the source. A crash anywhere leaves each secret in the source, the target, or both, never in
 * neither; running the migration again completes it, since a copy already equal in the target is
 * recognised and not written again.
 *
 * A target that already holds a *different* value under the same name is a conflict: by default it
 * is left alone and the source keeps its value (reported), because the target's value may be the
 * newer one.
 */
import { timingSafeEqual } from 'node:crypto';
import { SecretStoreError, type SecretStore } from './types.js';

export interface SecretRef {
  service: string;
  variable: string;
}

export interface MigrateSecretsOptions {
  /** `keep-target` (default): leave both values, report. `overwrite`: the source wins. */
  onConflict?: 'keep-target' | 'overwrite';
  /** Default true. false copies and verifies only (the source keeps everything). */
  deleteFromSource?: boolean;
  /** Progress for the CLI: names only. */
  onProgress?: (event: {
    step: 'copied' | 'present' | 'conflict' | 'deleted';
    service: string;
    variable: string;
  }) => void;
}

export interface MigrateSecretsReport {
  /** Written to the target by this run. */
  copied: SecretRef[];
  /** Already in the target with the same value (a previous, interrupted run). */
  alreadyPresent: SecretRef[];
  /** Removed from the source after every copy was verified. */
  deleted: SecretRef[];
  /** Different values in source and target; both kept. */
  conflicts: SecretRef[];
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

export async function migrateSecrets(
  from: SecretStore,
  to: SecretStore,
  opts: MigrateSecretsOptions = {},
): Promise<MigrateSecretsReport> {
  const onConflict = opts.onConflict ?? 'keep-target';
  const progress = opts.onProgress ?? (() => undefined);
  const report: MigrateSecretsReport = { copied: [], alreadyPresent: [], deleted: [], conflicts: [] };

  const listed = (await from.list()).filter((l) => l.stored);
  const services = [...new Set(listed.map((l) => l.service))];
  const entries: { service: string; variable: string; value: string }[] = [];
  for (const service of services) {
    const values = await from.valuesFor(service);
    for (const l of listed) {
      if (l.service !== service) continue;
      const value = values[l.variable];
      // Deleted between list and read: nothing to move.
      if (value !== undefined) entries.push({ service, variable: l.variable, value });
    }
  }

  const moved: typeof entries = [];
  for (const e of entries) {
    const ref = { service: e.service, variable: e.variable };
    const existing = await to.get(e.service, e.variable);
    if (existing !== null && same(existing, e.value)) {
      report.alreadyPresent.push(ref);
      progress({ step: 'present', ...ref });
      moved.push(e);
      continue;
    }
    if (existing !== null && onConflict === 'keep-target') {
      report.conflicts.push(ref);
      progress({ step: 'conflict', ...ref });
      continue;
    }
    await to.set(e.service, e.variable, e.value);
    report.copied.push(ref);
    progress({ step: 'copied', ...ref });
    moved.push(e);
  }

  // Read back every copy before deleting anything: a target that accepted a write but lost it
  // (a dev-mode Vault that restarted, a misrouted replica) must not cost the source its value.
  for (const e of moved) {
    const back = await to.get(e.service, e.variable);
    if (back === null || !same(back, e.value)) {
      throw new SecretStoreError(
        'verify_failed',
        `the copy of ${e.service}/${e.variable} in the ${to.kind} backend reads back ${back === null ? 'as missing' : 'differently'}; nothing was deleted from the ${from.kind} backend`,
      );
    }
  }

  if (opts.deleteFromSource ?? true) {
    for (const e of moved) {
      const ref = { service: e.service, variable: e.variable };
      // Changed in the source since it was read: that newer value was not copied, so keep it.
      const now = await from.get(e.service, e.variable);
      if (now !== null && !same(now, e.value)) {
        report.conflicts.push(ref);
        progress({ step: 'conflict', ...ref });
        continue;
      }
      if (now !== null) await from.delete(e.service, e.variable);
      report.deleted.push(ref);
      progress({ step: 'deleted', ...ref });
    }
  }
  return report;
}
