/**
 * The owner's admin key on disk, encrypted under the approval passphrase chosen at `mcpgw init`
 * (DESIGN §4, local threat model). In native mode an agent often runs as the same OS user and can
 * read every file that user can; the encrypted key is useless to it without the passphrase, which
 * is only ever typed on the controlling terminal.
 *
 * `MCPGW_HOME/admin-credential.json` (0600): scrypt derives a 256-bit key from the passphrase and a
 * random salt; AES-256-GCM seals the admin key with a random 96-bit nonce, and the file version and
 * user id are bound as associated data, so a file edited to claim another user does not open.
 */
import { createCipheriv, createDecipheriv, randomBytes, scrypt as scryptCb, type ScryptOptions } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { KeyFileError, readPrivateFile, replacePrivateFile } from '../config/keys.js';
import { EXIT, type ExitCode } from './exit.js';

export const CREDENTIAL_FILE = 'admin-credential.json';
export const MIN_PASSPHRASE_LENGTH = 8;

/** 64 MiB and about a fifth of a second per guess here: cheap once per command, dear per guess. */
const KDF_DEFAULTS = { N: 1 << 16, r: 8, p: 1 } as const;
const KEY_BYTES = 32;

export class CredentialError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode = EXIT.failed,
  ) {
    super(message);
    this.name = 'CredentialError';
  }
}

const b64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'base64');

export const storedCredentialSchema = z.strictObject({
  version: z.literal(1),
  user: z.string().min(1).max(256),
  kdf: z.strictObject({
    name: z.literal('scrypt'),
    // Bounds keep a tampered file from making the CLI allocate gigabytes.
    N: z
      .number()
      .int()
      .min(1 << 14)
      .max(1 << 18)
      .refine((n) => (n & (n - 1)) === 0, 'N must be a power of two'),
    r: z.number().int().min(1).max(16),
    p: z.number().int().min(1).max(4),
  }),
  cipher: z.literal('aes-256-gcm'),
  salt: b64,
  iv: b64,
  tag: b64,
  ciphertext: b64,
});
export type StoredCredential = z.infer<typeof storedCredentialSchema>;

export interface AdminCredential {
  user: string;
  key: string;
}

export function credentialPath(home: string): string {
  return join(home, CREDENTIAL_FILE);
}

export function hasAdminCredential(home: string): boolean {
  return existsSync(credentialPath(home));
}

/** Why `passphrase` is not acceptable, or null when it is. */
export function passphraseProblem(passphrase: string): string | null {
  if ([...passphrase].length < MIN_PASSPHRASE_LENGTH)
    return `the passphrase must be at least ${MIN_PASSPHRASE_LENGTH} characters`;
  if (passphrase.trim() !== passphrase) return 'the passphrase may not start or end with a space';
  return null;
}

function deriveKey(passphrase: string, salt: Buffer, kdf: StoredCredential['kdf']): Promise<Buffer> {
  const options: ScryptOptions = { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 129 * kdf.N * kdf.r * kdf.p + (1 << 20) };
  return new Promise((resolve, reject) => {
    scryptCb(passphrase.normalize('NFC'), salt, KEY_BYTES, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

function aad(version: number, user: string): Buffer {
  return Buffer.from(`mcpgw admin credential v${version}\u0000${user}`, 'utf8');
}

/** Encrypts `key` under `passphrase`. The passphrase must pass passphraseProblem(). */
export async function sealAdminCredential(
  credential: AdminCredential,
  passphrase: string,
  kdf: StoredCredential['kdf'] = { name: 'scrypt', ...KDF_DEFAULTS },
): Promise<StoredCredential> {
  const problem = passphraseProblem(passphrase);
  if (problem !== null) throw new CredentialError(problem, EXIT.usage);
  const salt = randomBytes(16);
  const iv = randomBytes(12);
  const key = await deriveKey(passphrase, salt, kdf);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(aad(1, credential.user));
  const ciphertext = Buffer.concat([cipher.update(credential.key, 'utf8'), cipher.final()]);
  return {
    version: 1,
    user: credential.user,
    kdf,
    cipher: 'aes-256-gcm',
    salt: salt.toString('base64'),
    iv: iv.toString('base64'),
    tag: cipher.getAuthTag().toString('base64'),
    ciphertext: ciphertext.toString('base64'),
  };
}

/** Decrypts; a wrong passphrase (or a tampered file) is a CredentialError with exit code 4. */
export async function openAdminCredential(stored: StoredCredential, passphrase: string): Promise<AdminCredential> {
  const key = await deriveKey(passphrase, Buffer.from(stored.salt, 'base64'), stored.kdf);
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(stored.iv, 'base64'));
  decipher.setAAD(aad(stored.version, stored.user));
  decipher.setAuthTag(Buffer.from(stored.tag, 'base64'));
  try {
    const plain = Buffer.concat([decipher.update(Buffer.from(stored.ciphertext, 'base64')), decipher.final()]);
    return { user: stored.user, key: plain.toString('utf8') };
  } catch {
    throw new CredentialError('wrong passphrase', EXIT.notAuthorized);
  }
}

/** Writes `MCPGW_HOME/admin-credential.json` (0600), replacing an older one atomically. */
export async function writeAdminCredential(
  home: string,
  credential: AdminCredential,
  passphrase: string,
): Promise<string> {
  const stored = await sealAdminCredential(credential, passphrase);
  const path = credentialPath(home);
  await replacePrivateFile(path, Buffer.from(`${JSON.stringify(stored, null, 2)}\n`, 'utf8'));
  return path;
}

/** The stored credential, or null when there is none. A file others can read is refused. */
export async function readAdminCredential(home: string): Promise<StoredCredential | null> {
  const path = credentialPath(home);
  let raw: Buffer;
  try {
    raw = await readPrivateFile(path);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return null;
    if (err instanceof KeyFileError) throw new CredentialError(err.message, EXIT.notAuthorized);
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new CredentialError(`${path} is not JSON; run \`mcpgw init --force\` to start over`, EXIT.failed);
  }
  const parsed = storedCredentialSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CredentialError(
      `${path} is not an mcpgw admin credential (${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'})`,
      EXIT.failed,
    );
  }
  return parsed.data;
}
