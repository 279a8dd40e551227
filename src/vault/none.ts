/**
 * `secrets.backend: none`: the gateway stores and injects nothing; credentials reach backends by
 * whatever the operator arranged outside mcpgw (Kubernetes External Secrets, ECS, …). Writes are
 * refused rather than accepted and dropped, so nobody believes a secret is isolated when it is not.
 */
import {
  SecretStoreError,
  mergeDeclared,
  validateEntry,
  validateService,
  type SecretListing,
  type SecretStore,
} from './types.js';

export class NoneSecretStore implements SecretStore {
  readonly kind = 'none' as const;

  async set(service: string, name: string): Promise<void> {
    validateEntry(service, name);
    throw new SecretStoreError(
      'not_supported',
      'secrets.backend is none: mcpgw stores no secrets; give the backend its credentials outside mcpgw, or choose the builtin or vault backend',
    );
  }

  async get(service: string, name: string): Promise<string | null> {
    validateEntry(service, name);
    return null;
  }

  async list(declared?: Readonly<Record<string, readonly string[]>>): Promise<SecretListing[]> {
    return mergeDeclared([], declared);
  }

  async delete(service: string, name: string): Promise<boolean> {
    validateEntry(service, name);
    return false;
  }

  async valuesFor(service: string): Promise<Record<string, string>> {
    validateService(service);
    return {};
  }

  async check(): Promise<void> {}

  async watch(): Promise<() => Promise<void>> {
    return async () => undefined;
  }

  async close(): Promise<void> {}
}
