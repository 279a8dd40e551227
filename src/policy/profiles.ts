/**
 * Community profiles: `@<org>/security-<service>` names `profiles/<service>.yaml` shipped in this
 * package. Profiles carry classification only (hints, verbs, labels, classifiers), never rules.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type DataPath, parseYamlAs, type PolicyDiagnostic, type PolicySource } from './load.js';
import { type PolicyFile, PROFILE_REF_PATTERN, type ProfileFile, profileFileSchema } from './schema.js';

/**
 * Two levels up from both `src/policy/` (tsx, tests) and `dist/policy/` (the published build):
 * the package root, whatever the working directory is.
 */
export const PACKAGE_PROFILES_DIR = fileURLToPath(new URL('../../profiles/', import.meta.url));

/** The service a profile reference names, or null when the reference is malformed. */
export function profileService(ref: string): string | null {
  return PROFILE_REF_PATTERN.exec(ref)?.[1] ?? null;
}

/** Services that have a profile in `dir`, sorted. */
export function listProfiles(dir: string = PACKAGE_PROFILES_DIR): string[] {
  try {
    return readdirSync(dir)
      .filter((name) => name.endsWith('.yaml'))
      .map((name) => name.slice(0, -'.yaml'.length))
      .sort();
  } catch {
    return [];
  }
}

export interface ProfileOptions {
  /** Where profiles live; tests point it at fixtures. Default: the package's `profiles/`. */
  dir?: string;
  /** Where the reference was written, so a bad or missing profile is reported there. */
  from?: { source: PolicySource; path: DataPath };
}

export type ProfileResult =
  { ok: true; profile: ProfileFile; file: string } | { ok: false; errors: PolicyDiagnostic[] };

export function loadProfile(ref: string, opts: ProfileOptions = {}): ProfileResult {
  const dir = opts.dir ?? PACKAGE_PROFILES_DIR;
  const at = (message: string, file: string): PolicyDiagnostic =>
    opts.from ? opts.from.source.diagnostic(opts.from.path, message) : { file, line: 1, column: 1, path: '', message };

  const service = profileService(ref);
  if (service === null) {
    return { ok: false, errors: [at(`invalid profile name "${ref}": expected @<org>/security-<service>`, ref)] };
  }
  const file = join(dir, `${service}.yaml`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    const known = listProfiles(dir);
    const hint = known.length > 0 ? ` (available: ${known.join(', ')})` : '';
    return { ok: false, errors: [at(`profile ${ref} not found: no ${service}.yaml in ${dir}${hint}`, file)] };
  }
  const parsed = parseYamlAs(profileFileSchema, text, file);
  if (!parsed.ok) return parsed;
  if (parsed.value.service !== service) {
    const message = `profile ${ref} describes service "${parsed.value.service}", expected "${service}"`;
    return { ok: false, errors: [parsed.source.diagnostic(['service'], message)] };
  }
  return { ok: true, profile: parsed.value, file };
}

/** Every profile the file references, keyed by reference, or every error at once. */
export function resolveProfiles(
  policy: PolicyFile,
  source: PolicySource,
  dir?: string,
): { ok: true; profiles: Record<string, ProfileFile> } | { ok: false; errors: PolicyDiagnostic[] } {
  const profiles: Record<string, ProfileFile> = {};
  const errors: PolicyDiagnostic[] = [];
  policy.profiles.forEach((ref, i) => {
    const loaded = loadProfile(ref, { ...(dir === undefined ? {} : { dir }), from: { source, path: ['profiles', i] } });
    if (loaded.ok) profiles[ref] = loaded.profile;
    else errors.push(...loaded.errors);
  });
  return errors.length > 0 ? { ok: false, errors } : { ok: true, profiles };
}
