/**
 * `MCPGW_HOME/config.yaml`: how this installation runs. Never holds a key, token or secret value
 * (those live hashed or encrypted in the state store and `keys/`).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { parseDocument, stringify } from 'yaml';
import { z } from 'zod';
import { secretsConfigSchema } from '../vault/config.js';

export const configSchema = z.strictObject({
  version: z.literal(1),
  /** The front every agent talks to. */
  listen: z.strictObject({
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(8000),
  }),
  /** The policy file, absolute. */
  policy: z.string().min(1),
  auth: z.strictObject({ mode: z.enum(['api-key', 'keycloak']).default('api-key') }),
  /** `secrets.backend: builtin | vault | none` and, for vault, its address, mount, namespace, token file. */
  secrets: secretsConfigSchema,
  tui: z.boolean().default(false),
  /** Which preset wrote this file, for `status`. */
  preset: z.enum(['openclaw', 'team', 'enterprise', 'custom']).default('custom'),
});
export type McpgwConfig = z.infer<typeof configSchema>;

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = 'ConfigError';
  }
}

export async function readConfig(file: string): Promise<McpgwConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') {
      throw new ConfigError(file, 'not found; run `mcpgw init` first');
    }
    throw err;
  }
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) throw new ConfigError(file, doc.errors[0]?.message ?? 'invalid YAML');
  const parsed = configSchema.safeParse(doc.toJS());
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(file, `${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

export function renderConfig(cfg: McpgwConfig): string {
  return `# mcpgw installation settings (written by \`mcpgw init\`). No keys or secrets live here.\n${stringify(cfg)}`;
}

export async function writeConfig(file: string, cfg: McpgwConfig): Promise<void> {
  await writeFile(file, renderConfig(cfg), { mode: 0o600 });
}
