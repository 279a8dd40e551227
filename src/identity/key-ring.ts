/**
 * Ed25519 signing keys for the internal JWT. One current key signs; keys rotated out stay published
 * (and accepted) until every token they signed has expired, so rotation never breaks a request in
 * flight. The PostgreSQL-backed ring (keys encrypted, shared by replicas) will implement the same
 * interface; this file has the in-memory ring and a file-backed one for single-process native mode.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { dirname } from 'node:path';
import { calculateJwkThumbprint, type JSONWebKeySet } from 'jose';
import { z } from 'zod';
import { ensurePrivateDir, readPrivateFile, replacePrivateFile, writePrivateFileNoClobber } from '../config/keys.js';

/** Longest life of an internal JWT. */
export const MAX_INTERNAL_JWT_TTL_SECONDS = 300;
/** How long a rotated-out key stays published: the longest token life plus clock skew. */
export const RETIRED_KEY_GRACE_SECONDS = MAX_INTERNAL_JWT_TTL_SECONDS + 60;

export interface Ed25519PublicJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  kid: string;
  alg: 'EdDSA';
  use: 'sig';
}

export interface RingSigningKey {
  kid: string;
  privateKey: KeyObject;
}

export interface RingPublicKey {
  kid: string;
  publicKey: KeyObject;
  jwk: Ed25519PublicJwk;
}

/** What a verifier needs; the gateway may hold only this side. */
export interface PublicKeySource {
  /** The current key first, then rotated-out keys still inside their grace period. */
  verificationKeys(): Promise<RingPublicKey[]>;
}

export interface KeyRing extends PublicKeySource {
  signingKey(): Promise<RingSigningKey>;
  /** A new key becomes current; the old one keeps verifying for `RETIRED_KEY_GRACE_SECONDS`. */
  rotate(): Promise<void>;
  /** The public JWK Set for `/.well-known/jwks.json`. */
  jwks(): Promise<JSONWebKeySet>;
}

export interface KeyRingOptions {
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number;
}

interface RingEntry {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  x: string;
  createdAt: number;
  /** null for the current key. */
  retireAt: number | null;
}

interface RingState {
  current: RingEntry;
  previous: RingEntry[];
}

async function entryFromPrivate(privateKey: KeyObject, createdAt: number, retireAt: number | null): Promise<RingEntry> {
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error('internal JWT keys are Ed25519');
  const publicKey = createPublicKey(privateKey);
  const jwk = publicKey.export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new Error('Ed25519 public key without x');
  // RFC 7638 thumbprint: a kid that names the key itself, the same on every replica.
  const kid = await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: jwk.x });
  return { kid, privateKey, publicKey, x: jwk.x, createdAt, retireAt };
}

async function newEntry(now: number): Promise<RingEntry> {
  return entryFromPrivate(generateKeyPairSync('ed25519').privateKey, now, null);
}

function publicOf(e: RingEntry): RingPublicKey {
  return {
    kid: e.kid,
    publicKey: e.publicKey,
    jwk: { kty: 'OKP', crv: 'Ed25519', x: e.x, kid: e.kid, alg: 'EdDSA', use: 'sig' },
  };
}

export class MemoryKeyRing implements KeyRing {
  protected state: RingState;
  protected readonly now: () => number;
  #rotation: Promise<void> = Promise.resolve();

  protected constructor(state: RingState, now: () => number) {
    this.state = state;
    this.now = now;
  }

  static async create(options: KeyRingOptions = {}): Promise<MemoryKeyRing> {
    const now = options.now ?? Date.now;
    return new MemoryKeyRing({ current: await newEntry(now()), previous: [] }, now);
  }

  async signingKey(): Promise<RingSigningKey> {
    return { kid: this.state.current.kid, privateKey: this.state.current.privateKey };
  }

  async verificationKeys(): Promise<RingPublicKey[]> {
    const t = this.now();
    const live = this.state.previous.filter((e) => e.retireAt !== null && e.retireAt > t);
    if (live.length !== this.state.previous.length) this.state = { ...this.state, previous: live };
    return [this.state.current, ...live].map(publicOf);
  }

  async jwks(): Promise<JSONWebKeySet> {
    return { keys: (await this.verificationKeys()).map((k) => ({ ...k.jwk })) };
  }

  rotate(): Promise<void> {
    // Serialized so two concurrent rotations cannot both demote the same key.
    const run = this.#rotation.then(async () => {
      const t = this.now();
      const next: RingState = {
        current: await newEntry(t),
        previous: [
          { ...this.state.current, retireAt: t + RETIRED_KEY_GRACE_SECONDS * 1000 },
          ...this.state.previous.filter((e) => e.retireAt !== null && e.retireAt > t),
        ],
      };
      // Persist first: if that fails, the ring keeps signing with the key that is on disk.
      await this.persist(next);
      this.state = next;
    });
    this.#rotation = run.catch(() => undefined);
    return run;
  }

  protected async persist(_next: RingState): Promise<void> {
    // Nothing to store in memory.
  }
}

// ---------------------------------------------------------------------------------------------
// File-backed ring
// ---------------------------------------------------------------------------------------------

const b64url = z.string().regex(/^[A-Za-z0-9_-]{43}$/);
const ringFileSchema = z.strictObject({
  version: z.literal(1),
  keys: z
    .array(
      z.strictObject({
        kid: z.string().min(1),
        createdAt: z.number().int().nonnegative(),
        retireAt: z.number().int().nonnegative().nullable(),
        x: b64url,
        d: b64url,
      }),
    )
    .min(1),
});
type RingFile = z.infer<typeof ringFileSchema>;

function serialize(state: RingState): Buffer {
  const keys = [state.current, ...state.previous].map((e) => {
    const d = e.privateKey.export({ format: 'jwk' }).d;
    if (typeof d !== 'string') throw new Error('Ed25519 private key without d');
    return { kid: e.kid, createdAt: e.createdAt, retireAt: e.retireAt, x: e.x, d };
  });
  return Buffer.from(JSON.stringify({ version: 1, keys } satisfies RingFile) + '\n', 'utf8');
}

async function deserialize(path: string, raw: Buffer): Promise<RingState> {
  let doc: unknown;
  try {
    doc = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new Error(`${path}: not valid JSON`);
  }
  const parsed = ringFileSchema.safeParse(doc);
  // Paths only: the issues could otherwise quote private key material.
  if (!parsed.success) {
    throw new Error(`${path}: not a key ring file (${parsed.error.issues.map((i) => i.path.join('.')).join(', ')})`);
  }
  const entries: RingEntry[] = [];
  for (const [i, k] of parsed.data.keys.entries()) {
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', x: k.x, d: k.d }, format: 'jwk' });
    } catch {
      throw new Error(`${path}: keys.${i} is not a valid Ed25519 key`);
    }
    const e = await entryFromPrivate(privateKey, k.createdAt, i === 0 ? null : k.retireAt);
    if (e.x !== k.x || e.kid !== k.kid) throw new Error(`${path}: keys.${i} does not match its kid or public key`);
    entries.push(e);
  }
  const [current, ...previous] = entries as [RingEntry, ...RingEntry[]];
  return { current, previous };
}

/**
 * A ring kept in one 0600 JSON file (normally `keys/internal-jwt.json`), for a single `mcpgw serve`
 * process. Separate authz and gateway processes sharing the file must call `reload()` after the
 * other one rotates; scale-out uses the database-backed ring instead.
 */
export class FileKeyRing extends MemoryKeyRing {
  readonly path: string;

  private constructor(path: string, state: RingState, now: () => number) {
    super(state, now);
    this.path = path;
  }

  static async open(path: string, options: KeyRingOptions = {}): Promise<FileKeyRing> {
    const now = options.now ?? Date.now;
    await ensurePrivateDir(dirname(path));
    let state: RingState;
    try {
      state = await deserialize(path, await readPrivateFile(path));
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'ENOENT') throw err;
      const fresh: RingState = { current: await newEntry(now()), previous: [] };
      state = (await writePrivateFileNoClobber(path, serialize(fresh)))
        ? fresh
        : await deserialize(path, await readPrivateFile(path));
    }
    return new FileKeyRing(path, state, now);
  }

  /** Re-reads the file, e.g. after another process rotated the keys. */
  async reload(): Promise<void> {
    this.state = await deserialize(this.path, await readPrivateFile(this.path));
  }

  protected override async persist(next: RingState): Promise<void> {
    await replacePrivateFile(this.path, serialize(next));
  }
}
