/**
 * The secret store contract shared by the backends (builtin, vault, none), and the rules every
 * backend enforces the same way: names, services and which values may be stored.
 *
 * Error messages name services, variables, paths, key ids and HTTP statuses, never a value or a
 * token: they reach logs, the CLI and admin responses.
 */
import { ENV_NAME_PATTERN, SERVICE_NAME_PATTERN, TOOL_SEPARATOR } from '../policy/schema.js';

export type SecretBackendKind = 'builtin' | 'vault' | 'none';

/** One row of `mcpgw secret list`. */
export interface SecretListing {
  service: string;
  variable: string;
  /** false only for a name a caller declared (the policy's `secrets:` list) that has no value. */
  stored: boolean;
  /** When the value last changed, if the backend knows. */
  updatedAt: Date | null;
}

export interface SecretStore {
  readonly kind: SecretBackendKind;
  /** Stores or replaces a value. Refuses values that redaction could not reliably hide. */
  set(service: string, name: string, value: string): Promise<void>;
  /** The value, or null when none is stored. */
  get(service: string, name: string): Promise<string | null>;
  /**
   * Every stored name, never a value. With `declared` (service → names from the policy file),
   * declared names without a value are listed too, with `stored: false`.
   */
  list(declared?: Readonly<Record<string, readonly string[]>>): Promise<SecretListing[]>;
  /** true when something was deleted. */
  delete(service: string, name: string): Promise<boolean>;
  /**
   * The values to inject into `service` (VAR → value). With `only` (the service's authoritative
   * `secrets:` list), names outside it are left out; names in it without a value are simply absent,
   * and the caller decides whether that is fatal.
   */
  valuesFor(service: string, only?: readonly string[]): Promise<Record<string, string>>;
  /** Cheap reachability and credential check for start-up and `mcpgw doctor`. */
  check(): Promise<void>;
  /**
   * Calls `onChange` (at most about once per change) when values may have changed, also when the
   * change came from another process, so redaction can be rebuilt. Returns the unsubscribe.
   */
  watch(onChange: () => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export type SecretErrorCode =
  /** A service or variable name outside the grammar. */
  | 'invalid_name'
  /** A value the store refuses (too short, NUL, malformed Unicode, too long). */
  | 'invalid_value'
  /** The key file exists but cannot be used (mode, size, not a file). */
  | 'key_file'
  /** The key file is gone while the database still holds secrets encrypted with it. */
  | 'key_missing'
  /** Rows were encrypted with another key than the one on disk. */
  | 'key_mismatch'
  /** A row failed authentication: altered, or moved to another service/variable. */
  | 'decrypt_failed'
  /** The backend cannot be reached (connection refused, DNS, reset). */
  | 'unavailable'
  /** The backend did not answer in time. */
  | 'timeout'
  /** The backend refused the credential (HTTP 403). */
  | 'forbidden'
  /** Vault/OpenBao is sealed. */
  | 'sealed'
  /** The backend cannot do this at all (`secrets.backend: none`). */
  | 'not_supported'
  /** A concurrent writer kept winning. */
  | 'conflict'
  /** A copy read back differently during migration. */
  | 'verify_failed'
  /** Anything else the backend reported. */
  | 'backend';

export class SecretStoreError extends Error {
  readonly code: SecretErrorCode;
  constructor(code: SecretErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SecretStoreError';
    this.code = code;
  }
}

/**
 * Below this many characters a value is refused: the redactor would either miss encodings of it
 * (its base64 fragments get too short to be distinctive) or blank out ordinary text that happens
 * to contain it.
 */
export const MIN_SECRET_LENGTH = 8;
/** Environment values and Vault fields both cope with far more; this bounds the redactor's trie. */
export const MAX_SECRET_BYTES = 64 * 1024;

export function validateService(service: string): void {
  if (typeof service !== 'string' || !SERVICE_NAME_PATTERN.test(service) || service.includes(TOOL_SEPARATOR)) {
    throw new SecretStoreError(
      'invalid_name',
      `invalid service name ${JSON.stringify(String(service)).slice(0, 40)}: 1-31 characters of a-z, 0-9 and "-", starting with a letter, without "${TOOL_SEPARATOR}"`,
    );
  }
}

export function validateName(name: string): void {
  if (typeof name !== 'string' || !ENV_NAME_PATTERN.test(name)) {
    throw new SecretStoreError(
      'invalid_name',
      `invalid variable name ${JSON.stringify(String(name)).slice(0, 40)}: A-Z, 0-9 and "_", not starting with a digit, at most 128 characters`,
    );
  }
}

/** Length in code points, so that a value of 4 emoji does not pass as 8 characters. */
function codePoints(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

function wellFormed(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (d < 0xdc00 || d > 0xdfff) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return false;
    }
  }
  return true;
}

/** The reasons never quote the value, only what is wrong with it. */
export function validateValue(value: string): void {
  if (typeof value !== 'string') throw new SecretStoreError('invalid_value', 'a secret value must be a string');
  const n = codePoints(value);
  if (n < MIN_SECRET_LENGTH) {
    throw new SecretStoreError(
      'invalid_value',
      `the value has ${n} characters; secrets shorter than ${MIN_SECRET_LENGTH} are refused because redaction cannot reliably hide them in tool output (their encoded fragments are too short to recognise without blanking ordinary text)`,
    );
  }
  if (value.includes('\0')) {
    throw new SecretStoreError(
      'invalid_value',
      'the value contains a NUL character, which no environment variable can hold',
    );
  }
  if (!wellFormed(value)) {
    throw new SecretStoreError('invalid_value', 'the value is not well-formed Unicode (a lone surrogate)');
  }
  if (Buffer.byteLength(value, 'utf8') > MAX_SECRET_BYTES) {
    throw new SecretStoreError('invalid_value', `the value is longer than ${MAX_SECRET_BYTES} bytes`);
  }
}

export function validateEntry(service: string, name: string): void {
  validateService(service);
  validateName(name);
}

/** Adds declared-but-missing names to a listing and sorts it by service, then variable. */
export function mergeDeclared(
  stored: SecretListing[],
  declared: Readonly<Record<string, readonly string[]>> | undefined,
): SecretListing[] {
  const out = [...stored];
  if (declared) {
    const have = new Set(stored.map((s) => `${s.service}/${s.variable}`));
    for (const [service, names] of Object.entries(declared)) {
      for (const variable of names) {
        if (!have.has(`${service}/${variable}`)) {
          have.add(`${service}/${variable}`);
          out.push({ service, variable, stored: false, updatedAt: null });
        }
      }
    }
  }
  return out.sort((a, b) =>
    a.service === b.service
      ? a.variable < b.variable
        ? -1
        : a.variable > b.variable
          ? 1
          : 0
      : a.service < b.service
        ? -1
        : 1,
  );
}

/** Keeps only the names in `only`, when given. */
export function pick(values: Record<string, string>, only: readonly string[] | undefined): Record<string, string> {
  if (only === undefined) return values;
  const out: Record<string, string> = {};
  for (const name of only) {
    const v = values[name];
    if (v !== undefined && Object.prototype.hasOwnProperty.call(values, name)) out[name] = v;
  }
  return out;
}
