/**
 * The `secrets:` section of config.yaml, apart from the stores: reading the configuration (every
 * CLI command does) must not load the builtin store's database driver.
 */
import { z } from 'zod';

/** The `secrets:` section of the gateway configuration. */
export const secretsConfigSchema = z.discriminatedUnion('backend', [
  z.strictObject({ backend: z.literal('builtin') }),
  z.strictObject({
    backend: z.literal('vault'),
    address: z.url({ protocol: /^https?$/, error: 'address must be an http:// or https:// URL' }),
    mount: z.string().min(1).default('secret'),
    namespace: z.string().min(1).optional(),
    /** A file holding the token (mode 0600, like the key files). Else MCPGW_VAULT_TOKEN, VAULT_TOKEN, BAO_TOKEN. */
    tokenFile: z.string().min(1).optional(),
    timeoutMs: z.number().int().min(100).max(60_000).default(5000),
    pollMs: z.number().int().min(1000).default(30_000),
    allowInsecureHttp: z.boolean().default(false),
  }),
  z.strictObject({ backend: z.literal('none') }),
]);
export type SecretsConfig = z.infer<typeof secretsConfigSchema>;
export const DEFAULT_SECRETS_CONFIG: SecretsConfig = { backend: 'builtin' };
