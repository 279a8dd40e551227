/**
 * The builtin backend: AES-256-GCM rows in the `secrets` table (migration 0050), the key in
 * `MCPGW_HOME/keys/secrets.key`.
 *
 * Losing no secret is the first rule. So: a missing key file while rows exist is refused (creating
 * a fresh key would make every row unreadable for good); rows encrypted under another key are
 * reported with both key ids and never overwritten (the write is guarded in the same statement, so
 * two replicas with different key files cannot clobber each other either); a row that fails
 * authentication is left exactly as it is.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { KeyFileError, keysDir, loadOrCreateKey } from '../config/keys.js';
import { asBuffer, asDate, asNumber, asString, sqlState, type Database } from '../state/db.js';
import {
  SecretStoreError,
  mergeDeclared,
  pick,
  validateEntry,
  validateService,
  validateValue,
  type SecretListing,
  type SecretStore,
} from './types.js';

export const SECRETS_KEY_FILE = 'secrets.key';
export const SECRETS_CHANNEL = 'mcpgw_secrets';

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const ALGORITHM = 'aes-256-gcm';

export interface BuiltinOptions {
  db: Database;
  /** Directory of the key file; default `keys/` under MCPGW_HOME. */
  keyDir?: string;
  /**
   * Open even when rows were encrypted with another key. Those rows stay unreadable and
   * untouchable except by `delete`; for the CLI's recovery commands, never for serving.
   */
  allowKeyMismatch?: boolean;
}

/** A public fingerprint of the key: names it in errors and rows without revealing anything. */
export function keyId(key: Buffer): string {
  return createHmac('sha256', key).update('mcpgw secrets key id v1').digest('hex').slice(0, 16);
}

/** Binds a ciphertext to its row. Names contain no NUL, so the encoding is unambiguous. */
function associatedData(service: string, name: string): Buffer {
  return Buffer.from(`mcpgw:secret:v1\0${service}\0${name}`, 'utf8');
}

export interface SealedSecret {
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

export function sealSecret(key: Buffer, service: string, name: string, value: string): SealedSecret {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv(ALGORITHM, key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(associatedData(service, name));
  const ciphertext = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
  return { nonce, ciphertext, tag: cipher.getAuthTag() };
}

/** Throws `decrypt_failed` when the row was altered, moved, or sealed under another key. */
export function openSecret(key: Buffer, service: string, name: string, sealed: SealedSecret): string {
  try {
    if (sealed.nonce.length !== NONCE_BYTES || sealed.tag.length !== TAG_BYTES) throw new Error('bad sizes');
    const decipher = createDecipheriv(ALGORITHM, key, sealed.nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(associatedData(service, name));
    decipher.setAuthTag(sealed.tag);
    const plain = Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]);
    // fatal: a value that is not UTF-8 was not written by us.
    return new TextDecoder('utf-8', { fatal: true }).decode(plain);
  } catch (err) {
    throw new SecretStoreError(
      'decrypt_failed',
      `the stored secret ${service}/${name} failed authentication: the row was altered or copied from another service or variable; it was left as it is`,
      { cause: err instanceof Error ? new Error(err.name) : undefined },
    );
  }
}

interface SecretRow {
  [k: string]: unknown;
  service: unknown;
  name: unknown;
  key_id: unknown;
  nonce: unknown;
  ciphertext: unknown;
  tag: unknown;
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

async function fileExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
}

function schemaHint(err: unknown): never {
  if (sqlState(err) === '42P01') {
    throw new SecretStoreError(
      'backend',
      'the secrets table does not exist: the database migrations (0050_secrets) have not run',
      { cause: err },
    );
  }
  throw err;
}

export class BuiltinSecretStore implements SecretStore {
  readonly kind = 'builtin' as const;
  readonly keyId: string;
  readonly #db: Database;
  readonly #key: Buffer;
  readonly #keyPath: string;

  private constructor(db: Database, key: Buffer, keyPath: string) {
    this.#db = db;
    this.#key = key;
    this.#keyPath = keyPath;
    this.keyId = keyId(key);
  }

  static async open(opts: BuiltinOptions): Promise<BuiltinSecretStore> {
    const dir = opts.keyDir ?? keysDir();
    const path = join(dir, SECRETS_KEY_FILE);
    const db = opts.db;

    if (!(await fileExists(path).catch(() => true))) {
      const held = await db
        .query<{ n: unknown; ids: unknown }>(
          `SELECT count(*) AS n, coalesce(string_agg(DISTINCT key_id, ', '), '') AS ids FROM secrets`,
        )
        .catch(schemaHint);
      const n = asNumber(held.rows[0]?.n ?? 0);
      if (n > 0) {
        throw new SecretStoreError(
          'key_missing',
          `the key file ${path} is missing, but the database holds ${n} secret(s) encrypted with key ${asString(held.rows[0]?.ids)}. ` +
            `Restore that file from a backup (mode 0600). mcpgw will not create a new key, because the stored secrets could then never be decrypted.`,
        );
      }
    }

    let key: Buffer;
    try {
      key = await loadOrCreateKey(dir, SECRETS_KEY_FILE, 32);
    } catch (err) {
      if (err instanceof KeyFileError) {
        // keys.ts words the fix (which chmod to run); keep it intact so it reaches the operator.
        throw new SecretStoreError('key_file', `cannot use the secrets key: ${err.message}`, { cause: err });
      }
      throw err;
    }
    const store = new BuiltinSecretStore(db, key, path);
    if (!opts.allowKeyMismatch) await store.check();
    return store;
  }

  /** Refuses when any row was encrypted under another key than the one on disk. */
  async check(): Promise<void> {
    const r = await this.#db
      .query<{ key_id: unknown; n: unknown }>(
        `SELECT key_id, count(*) AS n FROM secrets WHERE key_id <> $1 GROUP BY key_id ORDER BY key_id`,
        [this.keyId],
      )
      .catch(schemaHint);
    if (r.rows.length > 0) {
      const foreign = r.rows.map((row) => `${asNumber(row.n)} under key ${asString(row.key_id)}`).join(', ');
      throw new SecretStoreError(
        'key_mismatch',
        `${this.#keyPath} is key ${this.keyId}, but the database holds secrets encrypted with another key (${foreign}). ` +
          `The key file was probably replaced: restore the original one. Nothing was changed.`,
      );
    }
  }

  #mismatch(service: string, name: string, rowKey: string): SecretStoreError {
    return new SecretStoreError(
      'key_mismatch',
      `the stored secret ${service}/${name} was encrypted with key ${rowKey}, but ${this.#keyPath} is key ${this.keyId}; restore the original key file`,
    );
  }

  #decrypt(row: SecretRow): { service: string; name: string; value: string } {
    const service = asString(row.service);
    const name = asString(row.name);
    const rowKey = asString(row.key_id);
    if (rowKey !== this.keyId) throw this.#mismatch(service, name, rowKey);
    const value = openSecret(this.#key, service, name, {
      nonce: asBuffer(row.nonce),
      ciphertext: asBuffer(row.ciphertext),
      tag: asBuffer(row.tag),
    });
    return { service, name, value };
  }

  async set(service: string, name: string, value: string): Promise<void> {
    validateEntry(service, name);
    validateValue(value);
    const sealed = sealSecret(this.#key, service, name, value);
    // One statement: no row is written while any row is under another key, and an existing row
    // under another key is not replaced, even if another replica with a different key file races.
    const r = await this.#db
      .query(
        `INSERT INTO secrets AS s (service, name, key_id, nonce, ciphertext, tag)
         SELECT $1, $2, $3, $4, $5, $6
         WHERE NOT EXISTS (SELECT 1 FROM secrets WHERE key_id <> $3)
         ON CONFLICT (service, name) DO UPDATE
           SET key_id = excluded.key_id, nonce = excluded.nonce, ciphertext = excluded.ciphertext,
               tag = excluded.tag, updated_at = clock_timestamp()
           WHERE s.key_id = excluded.key_id`,
        [service, name, this.keyId, sealed.nonce, sealed.ciphertext, sealed.tag],
      )
      .catch(schemaHint);
    if (r.rowCount === 0) {
      const own = await this.#db.query<{ key_id: unknown }>(
        'SELECT key_id FROM secrets WHERE service = $1 AND name = $2',
        [service, name],
      );
      const rowKey = own.rows[0]?.key_id;
      if (rowKey !== undefined && asString(rowKey) !== this.keyId)
        throw this.#mismatch(service, name, asString(rowKey));
      await this.check();
      throw new SecretStoreError('conflict', `the secret ${service}/${name} could not be written; try again`);
    }
  }

  async get(service: string, name: string): Promise<string | null> {
    validateEntry(service, name);
    const r = await this.#db
      .query<SecretRow>(
        'SELECT service, name, key_id, nonce, ciphertext, tag FROM secrets WHERE service = $1 AND name = $2',
        [service, name],
      )
      .catch(schemaHint);
    const row = r.rows[0];
    return row ? this.#decrypt(row).value : null;
  }

  async list(declared?: Readonly<Record<string, readonly string[]>>): Promise<SecretListing[]> {
    const r = await this.#db
      .query<{ service: unknown; name: unknown; updated_at: unknown }>(
        'SELECT service, name, updated_at FROM secrets ORDER BY service, name',
      )
      .catch(schemaHint);
    const stored = r.rows.map((row) => ({
      service: asString(row.service),
      variable: asString(row.name),
      stored: true,
      updatedAt: asDate(row.updated_at),
    }));
    return mergeDeclared(stored, declared);
  }

  async delete(service: string, name: string): Promise<boolean> {
    validateEntry(service, name);
    const r = await this.#db
      .query('DELETE FROM secrets WHERE service = $1 AND name = $2', [service, name])
      .catch(schemaHint);
    return r.rowCount > 0;
  }

  async valuesFor(service: string, only?: readonly string[]): Promise<Record<string, string>> {
    validateService(service);
    const r = await this.#db
      .query<SecretRow>(
        'SELECT service, name, key_id, nonce, ciphertext, tag FROM secrets WHERE service = $1 ORDER BY name',
        [service],
      )
      .catch(schemaHint);
    const wanted = only === undefined ? null : new Set(only);
    const out: Record<string, string> = {};
    for (const row of r.rows) {
      if (wanted && !wanted.has(asString(row.name))) continue;
      const { name, value } = this.#decrypt(row);
      out[name] = value;
    }
    return pick(out, only);
  }

  async watch(onChange: () => void): Promise<() => Promise<void>> {
    const unlisten = await this.#db.listen(SECRETS_CHANNEL, () => onChange());
    // Notifications missed while the listener was down: assume a change.
    const offGap = this.#db.onListenerGap(() => onChange());
    return async () => {
      offGap();
      await unlisten();
    };
  }

  async close(): Promise<void> {
    // The database belongs to the caller; the key buffer is dropped with this object.
  }
}
