/** The admin API (`/admin/v1`): see contract.ts for every route and shape. */
export { createAdminApi, type AdminApi, type AdminDeps } from './api.js';
export type { AdminCaller, AdminRequest, AdminResponse, BackendReport, PolicyHolderLike } from './handler.js';
export {
  adminHttpHandler,
  internalJwtCallerVerifier,
  DEFAULT_ADMIN_MAX_BODY_BYTES,
  type AdminHttpOptions,
  type CallerVerifier,
  type CallerVerifierOptions,
} from './http.js';
export { AdminError } from './errors.js';
export {
  ServiceStateStore,
  overlayServiceStates,
  effectiveServiceState,
  SERVICES_CHANNEL,
  type ServiceRuntimeState,
} from './services.js';
export { recordPolicyRevision, type StoredCompiledPolicy } from './policy.js';
export { diffPolicies, type DiffSide } from './policy-diff.js';
export * from './contract.js';
