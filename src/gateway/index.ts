/**
 * The gateway role: the HTTP server behind the front, hosting the MCP aggregator.
 */
export {
  startGateway,
  type AdminHandler,
  type GatewayKeys,
  type GatewayOptions,
  type GatewayServer,
} from './server.js';
export { accepts, checkProtocolVersionHeader, originAllowed } from './checks.js';
export { keyRefresher, ReplayGuard, verifyCaller, type TrustedCaller, type TrustResult } from './trust.js';
export { gatewayPolicyFrom, type GatewayPolicy, type PolicySourceLike } from '../aggregator/index.js';
