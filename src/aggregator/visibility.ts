/**
 * What a user's lists show (DESIGN §5): an item is hidden only when Layer 1 denies it for every
 * possible argument. Layer 1 is evaluated once per item with empty arguments; its answer holds for
 * all arguments when the denial comes from the gate (catalog, grants), or when no classifier or
 * value extractor of that item reads any argument (its labels are then fixed). Anything that could
 * depend on arguments stays visible; authz still decides every call.
 */
import type { Layer1Data, Layer1Decision, Layer1Input, Layer1Method, Role } from '../policy/layer1-types.js';

/** Decision codes that do not look at arguments at all. */
export const ARGUMENT_INDEPENDENT_CODES: ReadonlySet<string> = new Set([
  'no_grant',
  'unknown_service',
  'service_disabled',
  'service_suspended',
  'tool_disabled',
]);

/** Codes that deny a whole service, whatever item is named. */
const SERVICE_WIDE_CODES: ReadonlySet<string> = new Set(['unknown_service', 'service_disabled', 'service_suspended']);

export interface Layer1View {
  evaluate(input: Layer1Input): Layer1Decision;
}

export interface Viewer {
  id: string;
  role: Role;
  grants: Record<string, string[]>;
}

export type ArgumentReaders = Pick<Layer1Data, 'classifiers' | 'extractors'>;

/** True when some classifier or extractor of (service, name) reads the arguments. */
export function readsArguments(data: ArgumentReaders, service: string, name: string): boolean {
  const c = Object.hasOwn(data.classifiers, service) ? data.classifiers[service] : undefined;
  const x = Object.hasOwn(data.extractors, service) ? data.extractors[service] : undefined;
  const cs = c && Object.hasOwn(c, name) ? c[name] : undefined;
  const xs = x && Object.hasOwn(x, name) ? x[name] : undefined;
  return (cs?.length ?? 0) > 0 || (xs?.length ?? 0) > 0;
}

function decide(
  engine: Layer1View,
  viewer: Viewer,
  method: Layer1Method,
  service: string,
  name: string,
): Layer1Decision {
  return engine.evaluate({
    user: { id: viewer.id, role: viewer.role },
    grants: viewer.grants,
    method,
    service,
    name,
    arguments: {},
  });
}

function visible(d: Layer1Decision, data: ArgumentReaders, service: string, name: string): boolean {
  if (d.outcome !== 'deny') return true;
  if (ARGUMENT_INDEPENDENT_CODES.has(d.code)) return false;
  return readsArguments(data, service, name);
}

export function toolVisible(engine: Layer1View, data: ArgumentReaders, viewer: Viewer, service: string, tool: string) {
  return visible(decide(engine, viewer, 'tools/call', service, tool), data, service, tool);
}

export function promptVisible(
  engine: Layer1View,
  data: ArgumentReaders,
  viewer: Viewer,
  service: string,
  prompt: string,
) {
  return visible(decide(engine, viewer, 'prompts/get', service, prompt), data, service, prompt);
}

/** Resources take no arguments: a deny of the read is a deny for good. */
export function resourceVisible(engine: Layer1View, viewer: Viewer, service: string, uri: string): boolean {
  return decide(engine, viewer, 'resources/read', service, uri).outcome !== 'deny';
}

/**
 * A template names no resource yet, so only what holds for every URI can hide it: a service-wide
 * denial, or a user with no grant at all on the service.
 */
export function templateVisible(engine: Layer1View, viewer: Viewer, service: string, template: string): boolean {
  if (!hasAnyGrant(viewer, service)) return false;
  return !SERVICE_WIDE_CODES.has(decide(engine, viewer, 'resources/read', service, template).code);
}

export function hasAnyGrant(viewer: Pick<Viewer, 'grants'>, service: string): boolean {
  const g = Object.hasOwn(viewer.grants, service) ? viewer.grants[service] : undefined;
  return Array.isArray(g) && g.length > 0;
}
