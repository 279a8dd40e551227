/** Layer 2 state: the public surface of src/state. */
export { Layer2Store, openStore, ForbiddenError } from './store.js';
export type {
  StoreOptions,
  ScopeTarget,
  AuditEntry,
  FlagRecord,
  TaintMark,
  CounterRecord,
  PolicyRevisionRecord,
  SigningKeyRecord,
} from './store.js';
export { ApprovalError } from './approvals.js';
export type {
  ApprovalRecord,
  ApprovalStatus,
  ApprovalFilter,
  ApprovalPage,
  Decider,
  ApprovalErrorCode,
} from './approvals.js';
export type { AuditReport, AuditIssue, AuditIssueKind, VerifyOptions, SealerOptions } from './audit.js';
export type { GroupCommitStats } from './decide-batch.js';
export { DbIdentityStore } from './identity.js';
export type { IdentityCacheOptions } from './identity.js';
export { DatabaseLockedError, StateTimeoutError } from './db.js';
export type { Database, Queryable, DbKind } from './db.js';
export { migrate, loadMigrations, MigrationError } from './migrate.js';
