/**
 * What a backend is started with: the command resolved to a file, and a minimal environment
 * (DESIGN §5): PATH, HOME and LANG from the gateway, the service's non-secret `env`, and the
 * variables the credentials layer injects for that service alone. Never a copy of the gateway's
 * environment, which holds the gateway's own secrets.
 */
import { constants } from 'node:fs';
import { access, realpath } from 'node:fs/promises';
import { basename, delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ENV_NAME_PATTERN, type ServiceConfig } from '../policy/schema.js';

export type StdioServiceConfig = Extract<ServiceConfig, { transport: 'stdio' }>;
export type RemoteServiceConfig = Extract<ServiceConfig, { transport: 'http' | 'sse' }>;

/** Who a backend connection serves: `userId` is null for a child shared by all users. */
export interface BackendContext {
  userId: string | null;
}

/**
 * The credentials hook: the variables to inject into `service` (its secrets, by name). The
 * credentials engineer fills it (vault / builtin store); the default injects nothing.
 */
export type EnvFor = (service: string, ctx: BackendContext) => Promise<Record<string, string>>;

/** HTTP headers for a remote backend; the default fills `${VAR}` in the configured headers from `envFor`. */
export type HeadersFor = (
  service: string,
  config: RemoteServiceConfig,
  ctx: BackendContext,
) => Promise<Record<string, string>>;

export const noSecrets: EnvFor = async () => ({});

export const INHERITED_ENV = ['PATH', 'HOME', 'LANG'] as const;

export class BackendConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackendConfigError';
  }
}

/**
 * The child's environment. Injected names must be environment names and, when the service lists
 * `secrets`, one of them: that list is authoritative (DESIGN §8), so a store holding more for the
 * service cannot widen what reaches it.
 */
export function childEnv(
  service: string,
  config: StdioServiceConfig,
  injected: Record<string, string>,
  from: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const env: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const name of INHERITED_ENV) {
    const v = from[name];
    if (v !== undefined) env[name] = v;
  }
  for (const [k, v] of Object.entries(config.env ?? {})) env[k] = v;
  for (const [k, v] of Object.entries(injected)) {
    if (!ENV_NAME_PATTERN.test(k))
      throw new BackendConfigError(`${service}: injected variable name ${JSON.stringify(k)} is invalid`);
    if (config.secrets !== undefined && !config.secrets.includes(k)) continue;
    if (typeof v !== 'string' || v.includes('\0'))
      throw new BackendConfigError(`${service}: injected variable ${k} is not a string`);
    env[k] = v;
  }
  return { ...env };
}

const SECRET_REFERENCE = /\$\{([A-Z_][A-Z0-9_]{0,127})\}/g;

/** Configured headers with `${VAR}` replaced by this service's injected values; a missing one is an error. */
export function substituteHeaders(
  service: string,
  headers: Record<string, string> | undefined,
  values: Record<string, string>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, template] of Object.entries(headers ?? {})) {
    out[name] = template.replace(SECRET_REFERENCE, (_m, v: string) => {
      const value = Object.hasOwn(values, v) ? values[v] : undefined;
      // The message names the variable, never a value.
      if (value === undefined) throw new BackendConfigError(`${service}: secret ${v} (header ${name}) is not set`);
      if (/[\r\n\0]/.test(value)) throw new BackendConfigError(`${service}: secret ${v} cannot go in a header`);
      return value;
    });
  }
  return out;
}

export function defaultHeadersFor(envFor: EnvFor): HeadersFor {
  return async (service, config, ctx) => substituteHeaders(service, config.headers, await envFor(service, ctx));
}

/**
 * Where the package's own dependencies put their executables: under the package root
 * (`src/aggregator/` and `dist/aggregator/` are two levels below it), or one level up when npm
 * hoisted them because mcpgw is itself installed as a dependency.
 */
function packageBinDirs(): string[] {
  const root = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, '');
  const dirs = [join(root, 'node_modules', '.bin')];
  if (basename(dirname(root)) === 'node_modules') dirs.push(join(dirname(root), '.bin'));
  return dirs;
}
const PACKAGE_BIN_DIRS = packageBinDirs();

export interface ResolvedCommand {
  file: string;
  args: string[];
}

async function executable(p: string): Promise<boolean> {
  try {
    await access(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The file to spawn. `node` is this very Node; a bare name is looked up first among the package's
 * own dependencies (so the demo servers run from what was installed, never fetched at run time),
 * then on the child's PATH. A JavaScript entry point runs under this Node, so a child does not
 * depend on which `node` its PATH happens to find.
 */
export async function resolveCommand(
  command: string,
  args: readonly string[],
  env: Record<string, string>,
  cwd: string = process.cwd(),
): Promise<ResolvedCommand> {
  if (command === 'node') return { file: process.execPath, args: [...args] };
  let found: string | null = null;
  if (command.includes('/')) {
    const p = isAbsolute(command) ? command : resolve(cwd, command);
    if (await executable(p)) found = p;
    else if (/\.[cm]?js$/.test(p)) found = p;
  } else {
    const dirs = [...PACKAGE_BIN_DIRS, ...(env['PATH'] ?? '').split(delimiter).filter((d) => d !== '')];
    for (const dir of dirs) {
      const p = join(dir, command);
      if (await executable(p)) {
        found = p;
        break;
      }
    }
  }
  if (found === null) throw new BackendConfigError(`command not found: ${command}`);
  const real = await realpath(found).catch(() => found);
  if (/\.[cm]?js$/.test(real)) return { file: process.execPath, args: [real, ...args] };
  return { file: found, args: [...args] };
}
