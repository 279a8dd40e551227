/**
 * Credential isolation: where secret values live (`secrets.backend: builtin | vault | none`) and
 * how they are kept out of everything that flows back to the agent.
 */
import { readPrivateFile } from '../config/keys.js';
import type { Database } from '../state/db.js';
import { BuiltinSecretStore } from './builtin.js';
import { VaultSecretStore } from './kv2.js';
import { NoneSecretStore } from './none.js';
import type { SecretsConfig } from './config.js';
import { SecretStoreError, type SecretStore } from './types.js';

export { BuiltinSecretStore, SECRETS_KEY_FILE, SECRETS_CHANNEL, keyId, sealSecret, openSecret } from './builtin.js';
export type { BuiltinOptions, SealedSecret } from './builtin.js';
export { VaultSecretStore } from './kv2.js';
export type { VaultOptions } from './kv2.js';
export { NoneSecretStore } from './none.js';
export { migrateSecrets } from './migrate.js';
export type { MigrateSecretsOptions, MigrateSecretsReport, SecretRef } from './migrate.js';
export { Redactor, StreamRedactor, RedactionError, redactionLabel } from './redact.js';
export type { RedactorOptions, SecretEntry } from './redact.js';
export { LiveRedactor } from './live.js';
export type { LiveRedactorOptions } from './live.js';
export { secretForms } from './encodings.js';
export type { SecretForm, FormKind } from './encodings.js';
export { AhoCorasick } from './aho-corasick.js';
export {
  SecretStoreError,
  MIN_SECRET_LENGTH,
  MAX_SECRET_BYTES,
  validateName,
  validateService,
  validateValue,
} from './types.js';
export type { SecretStore, SecretListing, SecretBackendKind, SecretErrorCode } from './types.js';

export { DEFAULT_SECRETS_CONFIG, secretsConfigSchema, type SecretsConfig } from './config.js';

export interface OpenSecretStoreDeps {
  /** Required by the builtin backend. */
  db?: Database;
  /** Directory of `secrets.key`; default `MCPGW_HOME/keys`. */
  keyDir?: string;
  env?: NodeJS.ProcessEnv;
  /** See BuiltinOptions.allowKeyMismatch. */
  allowKeyMismatch?: boolean;
}

/** The token for each request: re-read, so a token renewed by an agent sidecar is picked up. */
function vaultToken(cfg: Extract<SecretsConfig, { backend: 'vault' }>, env: NodeJS.ProcessEnv): () => Promise<string> {
  if (cfg.tokenFile !== undefined) {
    const file = cfg.tokenFile;
    return async () => (await readPrivateFile(file)).toString('utf8').trim();
  }
  for (const name of ['MCPGW_VAULT_TOKEN', 'VAULT_TOKEN', 'BAO_TOKEN']) {
    const v = env[name];
    if (v !== undefined && v !== '') return async () => v;
  }
  throw new SecretStoreError(
    'forbidden',
    'secrets.backend is vault but no token is configured: set secrets.tokenFile, or MCPGW_VAULT_TOKEN',
  );
}

export async function openSecretStore(config: SecretsConfig, deps: OpenSecretStoreDeps = {}): Promise<SecretStore> {
  switch (config.backend) {
    case 'none':
      return new NoneSecretStore();
    case 'builtin': {
      if (!deps.db) throw new Error('the builtin secrets backend needs the database');
      return BuiltinSecretStore.open({
        db: deps.db,
        ...(deps.keyDir !== undefined ? { keyDir: deps.keyDir } : {}),
        ...(deps.allowKeyMismatch !== undefined ? { allowKeyMismatch: deps.allowKeyMismatch } : {}),
      });
    }
    case 'vault':
      return new VaultSecretStore({
        address: config.address,
        token: vaultToken(config, deps.env ?? process.env),
        mount: config.mount,
        ...(config.namespace !== undefined ? { namespace: config.namespace } : {}),
        timeoutMs: config.timeoutMs,
        pollMs: config.pollMs,
        allowInsecureHttp: config.allowInsecureHttp,
      });
  }
}
