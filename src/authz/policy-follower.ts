/**
 * Keeps a process's policy on the revision the replicas last stored (DESIGN §2 "Scale-out"): every
 * INSERT into `policy_revisions` NOTIFYs `mcpgw_policy` with the row's id (a trigger, so a row
 * written by any means is announced), and each process re-reads that row and adopts its source.
 * After the listener reconnects, notifications may have been lost, so the newest row is adopted.
 */
import { z } from 'zod';
import type { Logger } from '../log.js';
import type { Layer2Store, PolicyRevisionRecord } from '../state/index.js';
import type { PolicyHolder } from './runtime.js';

/** The part of `StoredCompiledPolicy` (src/admin/policy.ts) needed before compiling the source. */
const storedCompiled = z.object({ revision: z.string().min(1), file: z.string() });

export interface PolicyFollowerOptions {
  store: Layer2Store;
  holder: PolicyHolder;
  logger: Logger;
}

/** Starts following; resolves with the function that stops it. */
export async function followPolicyRevisions(o: PolicyFollowerOptions): Promise<() => Promise<void>> {
  const log = o.logger;
  // One notification at a time, in arrival order: two quick applies must end on the later one.
  let queue: Promise<void> = Promise.resolve();
  let stopped = false;

  const adopt = async (id: string | null): Promise<void> => {
    let row: PolicyRevisionRecord | null;
    try {
      row = id === null ? await o.store.latestPolicyRevision() : await o.store.getPolicyRevision(id);
    } catch (err) {
      log.error(
        { revisionId: id, err: err instanceof Error ? err.message : String(err) },
        'cannot read the policy revision; the running policy stays in force',
      );
      return;
    }
    if (stopped || row === null) return;
    const meta = storedCompiled.safeParse(row.compiled);
    if (!meta.success) {
      log.error(
        { revisionId: row.id },
        'policy revision has no usable compiled header; the running policy stays in force',
      );
      return;
    }
    const result = await o.holder.adopt(row.source, meta.data.file, meta.data.revision);
    if (!result.ok) {
      log.error(
        { revisionId: row.id, errors: result.errors },
        'policy revision failed to load; the running policy stays in force',
      );
      return;
    }
    if ('unchanged' in result) return;
    if (result.revision !== meta.data.revision) {
      // The source compiled to another revision than the row claims (written by another version?).
      log.warn({ revisionId: row.id, compiled: result.revision }, 'policy revision compiled to a different hash');
    }
    log.info({ revisionId: row.id, revision: result.revision }, 'policy revision adopted from the database');
  };

  const stop = await o.store.onPolicyRevision((id) => {
    queue = queue.then(() => adopt(id));
  });
  return async () => {
    stopped = true;
    await stop();
    await queue;
  };
}
