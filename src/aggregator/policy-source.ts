/**
 * The gateway's view of the policy in force, read from the authz `PolicyHolder` (or anything
 * shaped like it). The compiled Layer 1 revision does not cover how a backend is started (command,
 * URL, environment), so the gateway's revision also hashes the `services:` section: editing a
 * command restarts that backend.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../policy/compile.js';
import type { Layer1Data } from '../policy/layer1-types.js';
import type { ServiceConfig } from '../policy/schema.js';
import type { GatewayPolicy } from './aggregator.js';
import type { Layer1View } from './visibility.js';

type Services = Readonly<Record<string, ServiceConfig>>;

export interface ActiveLike {
  readonly engine: Layer1View & { readonly revision: string };
  readonly compiled: { readonly data: Pick<Layer1Data, 'classifiers' | 'extractors' | 'revision'> };
  /** The validated policy file; when the holder keeps it, `services` come from here. */
  readonly policy?: { readonly services: Services };
}

export interface PolicySourceLike {
  readonly active: ActiveLike;
}

/**
 * A getter for the current GatewayPolicy. `services` reads the `services:` section of the active
 * policy; by default from `active.policy`, which the holder must keep for the gateway to find any
 * backend.
 */
export function gatewayPolicyFrom(
  holder: PolicySourceLike,
  services: (active: ActiveLike) => Services = (a) => a.policy?.services ?? {},
): () => GatewayPolicy {
  const cache = new WeakMap<ActiveLike, GatewayPolicy>();
  return () => {
    const active = holder.active;
    const hit = cache.get(active);
    if (hit) return hit;
    const svc = services(active);
    const revision = createHash('sha256')
      .update(active.engine.revision)
      .update('\0')
      .update(canonicalJson(svc))
      .digest('hex')
      .slice(0, 16);
    const view: GatewayPolicy = { revision, services: svc, engine: active.engine, data: active.compiled.data };
    cache.set(active, view);
    return view;
  };
}
