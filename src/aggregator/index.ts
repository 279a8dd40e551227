/**
 * The MCP aggregator (DESIGN §2, §5): the only part of mcpgw that imports the MCP SDK.
 */
export {
  Aggregator,
  forwardParams,
  type AggregatorOptions,
  type GatewayPolicy,
  type UserLookup,
} from './aggregator.js';
export {
  Backend,
  backoffDelay,
  DEFAULT_BACKOFF,
  DEFAULT_TIMEOUTS,
  type BackoffOptions,
  type BackendTimeouts,
} from './backend.js';
export { ChildProcessTransport } from './child-transport.js';
export {
  BackendConfigError,
  childEnv,
  defaultHeadersFor,
  INHERITED_ENV,
  noSecrets,
  resolveCommand,
  substituteHeaders,
  type BackendContext,
  type EnvFor,
  type HeadersFor,
  type RemoteServiceConfig,
  type StdioServiceConfig,
} from './env.js';
export {
  mergeCapabilities,
  mergeInstructions,
  mergePrompts,
  mergeResources,
  mergeTemplates,
  mergeTools,
  type MergeContext,
  type ServiceList,
} from './lists.js';
export {
  backendUri,
  DEFAULT_NAMING,
  DEFAULT_SEPARATOR,
  gatewayUri,
  gatewayUriTemplate,
  MAX_WIRE_NAME_LENGTH,
  NameTable,
  namingProblems,
  publishedUri,
  publishedUriTemplate,
  resolveUri,
  rewriteContentBlock,
  rewritePromptResult,
  rewriteReadResult,
  rewriteToolResult,
  splitWireName,
  wireName,
  type NamingOptions,
  type RefusedName,
} from './naming.js';
export { gatewayPolicyFrom, type PolicySourceLike } from './policy-source.js';
export * from './protocol.js';
export { AgentSession, idKey, type MessageSink } from './session.js';
export {
  ARGUMENT_INDEPENDENT_CODES,
  hasAnyGrant,
  promptVisible,
  readsArguments,
  resourceVisible,
  templateVisible,
  toolVisible,
  type Layer1View,
  type Viewer,
} from './visibility.js';
