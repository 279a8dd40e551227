/**
 * The internal-JWT key ring shared by every replica (DESIGN §2 scale-out, §4): Ed25519 keys in the
 * `signing_keys` table, the private half sealed with AES-256-GCM under `MCPGW_HOME/keys/signing.key`
 * (random 12-byte nonce, the kid as associated data), so the database holds only ciphertext and a
 * database dump alone cannot mint tokens.
 *
 * Arbitration. Whatever changes which key is current (the first key, a rotation) runs under one
 * lock: a session-level advisory lock on PostgreSQL (plus an in-process queue per database), only
 * the in-process queue on PGlite, which one process owns. Under the lock the ring re-reads the
 * table and acts on what it finds, so two replicas that start at once end up with one key, and two
 * that rotate on the same schedule rotate once. Readers (`reload()`) never take the lock; if they
 * catch a rotation half done (two `active` rows) they all pick the newest, and the older one stays
 * published until the next rotation under the lock demotes it.
 *
 * Integrity. A published key is accepted only if its private half decrypts under `signing.key` with
 * its own kid (an RFC 7638 thumbprint of the public key) and the public key derived from it is the
 * one in the row. Write access to the database therefore cannot slip in a verification key.
 *
 * Freshness. A replica re-reads the table every `refreshEveryMs` (default 30 s, well inside the
 * `RETIRED_KEY_GRACE_SECONDS` grace), so a replica whose key another replica rotated out moves to
 * the new key long before the old one stops being published. The gateway also calls `reload()`
 * when a token names a key it does not know (`keyRefresher`).
 */
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { join } from 'node:path';
import { calculateJwkThumbprint, type JSONWebKeySet } from 'jose';
import { keysDir, loadOrCreateKey, mcpgwHome } from '../config/keys.js';
import type { Database, SigningKeyRecord } from '../state/index.js';
import {
  RETIRED_KEY_GRACE_SECONDS,
  type Ed25519PublicJwk,
  type KeyRing,
  type KeyRingOptions,
  type RingPublicKey,
  type RingSigningKey,
} from './key-ring.js';

/** The key file, under `MCPGW_HOME/keys/`, that seals the private keys. Every replica needs the same one. */
export const SIGNING_KEY_FILE = 'signing.key';
export const DEFAULT_KEY_REFRESH_MS = 30_000;

/** Format byte of `private_enc`: 0x01 = AES-256-GCM, 12-byte nonce, PKCS#8 DER plaintext, 16-byte tag. */
const SEAL_V1 = 0x01;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const ALG = 'EdDSA';
/** pg_advisory_lock key of the ring (migrations and the audit sealer use their own). */
const RING_LOCK = `hashtextextended('mcpgw:signing-keys', 0)`;
const LOCK_WAIT = '15s';

/** What the ring needs from the state store (`Layer2Store` has it). */
export interface SigningKeyTable {
  readonly db: Pick<Database, 'kind' | 'session'>;
  putSigningKey(k: Omit<SigningKeyRecord, 'createdAt'>): Promise<void>;
  updateSigningKey(
    kid: string,
    change: { status: SigningKeyRecord['status']; retireAt?: Date | null },
  ): Promise<boolean>;
  listSigningKeys(): Promise<SigningKeyRecord[]>;
}

export interface DbKeyRingOptions extends KeyRingOptions {
  store: SigningKeyTable;
  /** `MCPGW_HOME` (default from the environment): the sealing key is `<home>/keys/signing.key`, created on first use. */
  home?: string;
  /** The 32-byte sealing key itself, instead of the file (tests, or a key from a secret manager). */
  sealingKey?: Uint8Array;
  /**
   * Rotate automatically once the current key is this old (ms). Every replica checks on its refresh
   * timer; the lock makes one of them rotate. Default: never (rotate with `rotate()`).
   */
  rotateEveryMs?: number;
  /** Re-read the table this often (ms); 0 turns the timer off. Default 30 s. */
  refreshEveryMs?: number;
  /** Failures of the background refresh (the ring keeps its last good state). */
  onError?: (err: unknown) => void;
}

export class SigningKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SigningKeyError';
  }
}

interface Entry {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  jwk: Ed25519PublicJwk;
  /** Database time the row was created. */
  createdAt: number;
  /** null while the key is active. */
  retireAt: number | null;
  /** The row's ciphertext, to skip decrypting it again on the next read. */
  sealed: Buffer;
}

interface State {
  current: Entry;
  previous: Entry[];
}

interface Snapshot {
  rows: SigningKeyRecord[];
  /** Order in which this ring started its reads. */
  seq: number;
}

// ---------------------------------------------------------------------------------------------
// Sealing
// ---------------------------------------------------------------------------------------------

function seal(key: Uint8Array, kid: string, pkcs8: Buffer): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(kid, 'utf8'));
  const body = Buffer.concat([cipher.update(pkcs8), cipher.final()]);
  return Buffer.concat([Buffer.from([SEAL_V1]), nonce, body, cipher.getAuthTag()]);
}

/** null when the ciphertext does not authenticate (wrong key, wrong kid, tampered bytes). */
function unseal(key: Uint8Array, kid: string, sealed: Buffer): Buffer | null {
  if (sealed.length < 1 + NONCE_BYTES + TAG_BYTES + 1 || sealed[0] !== SEAL_V1) return null;
  const nonce = sealed.subarray(1, 1 + NONCE_BYTES);
  const tag = sealed.subarray(sealed.length - TAG_BYTES);
  const body = sealed.subarray(1 + NONCE_BYTES, sealed.length - TAG_BYTES);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(kid, 'utf8'));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

async function describeKey(
  privateKey: KeyObject,
): Promise<{ kid: string; publicKey: KeyObject; jwk: Ed25519PublicJwk }> {
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new SigningKeyError('internal JWT keys are Ed25519');
  const publicKey = createPublicKey(privateKey);
  const { x } = publicKey.export({ format: 'jwk' });
  if (typeof x !== 'string') throw new SigningKeyError('Ed25519 public key without x');
  // RFC 7638 thumbprint: the kid names the key itself, the same on every replica.
  const kid = await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x });
  return { kid, publicKey, jwk: { kty: 'OKP', crv: 'Ed25519', x, kid, alg: 'EdDSA', use: 'sig' } };
}

function publicOf(e: Entry): RingPublicKey {
  return { kid: e.kid, publicKey: e.publicKey, jwk: { ...e.jwk } };
}

/** Newest first; ties (same database timestamp) by kid, so every replica picks the same one. */
function newestFirst(a: SigningKeyRecord, b: SigningKeyRecord): number {
  const d = b.createdAt.getTime() - a.createdAt.getTime();
  return d !== 0 ? d : a.kid < b.kid ? -1 : a.kid > b.kid ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// Locks
// ---------------------------------------------------------------------------------------------

/** One queue per database object, so rings of one process on one store never interleave changes. */
const localQueues = new WeakMap<object, Promise<unknown>>();

function inLocalQueue<T>(db: object, fn: () => Promise<T>): Promise<T> {
  const prev = localQueues.get(db) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  localQueues.set(
    db,
    run.catch(() => undefined),
  );
  return run;
}

// ---------------------------------------------------------------------------------------------
// The ring
// ---------------------------------------------------------------------------------------------

export class DbKeyRing implements KeyRing {
  readonly #store: SigningKeyTable;
  readonly #sealingKey: Uint8Array;
  /** For messages: where the sealing key came from. */
  readonly #keySource: string;
  readonly #now: () => number;
  readonly #rotateEveryMs: number | null;
  readonly #onError: (err: unknown) => void;
  #state: State | null = null;
  /** Numbers of the last table read started, and of the one the state comes from. */
  #reads = 0;
  #adopted = 0;
  #timer: NodeJS.Timeout | null = null;
  #ticking: Promise<void> | null = null;

  private constructor(store: SigningKeyTable, sealingKey: Uint8Array, keySource: string, opts: DbKeyRingOptions) {
    this.#store = store;
    this.#sealingKey = sealingKey;
    this.#keySource = keySource;
    this.#now = opts.now ?? Date.now;
    this.#rotateEveryMs = opts.rotateEveryMs ?? null;
    this.#onError = opts.onError ?? (() => undefined);
  }

  /**
   * Opens the ring: adopts the current key from the database, or creates the first one (exactly one,
   * however many replicas start at once). Fails with a `SigningKeyError` naming the key file when the
   * stored keys were sealed under another `signing.key`.
   */
  static async open(opts: DbKeyRingOptions): Promise<DbKeyRing> {
    const rotateEveryMs = opts.rotateEveryMs;
    if (rotateEveryMs !== undefined && (!Number.isFinite(rotateEveryMs) || rotateEveryMs <= 0)) {
      throw new Error('rotateEveryMs must be a positive number of milliseconds');
    }
    const refreshEveryMs = opts.refreshEveryMs ?? DEFAULT_KEY_REFRESH_MS;
    if (!Number.isFinite(refreshEveryMs) || refreshEveryMs < 0) {
      throw new Error('refreshEveryMs must be 0 (off) or a positive number of milliseconds');
    }
    let sealingKey: Uint8Array;
    let keySource: string;
    if (opts.sealingKey !== undefined) {
      if (opts.sealingKey.length !== 32) throw new Error('the signing-key sealing key must be 32 bytes');
      sealingKey = Uint8Array.from(opts.sealingKey);
      keySource = 'the sealing key given to this process';
    } else {
      const dir = keysDir(opts.home ?? mcpgwHome());
      sealingKey = await loadOrCreateKey(dir, SIGNING_KEY_FILE, 32);
      keySource = join(dir, SIGNING_KEY_FILE);
    }

    const ring = new DbKeyRing(opts.store, sealingKey, keySource, opts);
    await ring.#exclusive(async () => {
      const snap = await ring.#snapshot();
      if (snap.rows.some((r) => r.status === 'active')) await ring.#repair(snap);
      else await ring.#insertCurrent(snap.rows);
    });
    if (refreshEveryMs > 0) ring.#startTimer(refreshEveryMs);
    return ring;
  }

  async signingKey(): Promise<RingSigningKey> {
    const { current } = this.#ready();
    return { kid: current.kid, privateKey: current.privateKey };
  }

  async verificationKeys(): Promise<RingPublicKey[]> {
    const t = this.#now();
    const { current, previous } = this.#ready();
    return [current, ...previous.filter((e) => e.retireAt === null || e.retireAt > t)].map(publicOf);
  }

  async jwks(): Promise<JSONWebKeySet> {
    return { keys: (await this.verificationKeys()).map((k) => ({ ...k.jwk })) };
  }

  /**
   * A new key becomes current for every replica; whichever key was current in the database (this
   * replica's, or a newer one another replica made) keeps verifying for `RETIRED_KEY_GRACE_SECONDS`.
   */
  async rotate(): Promise<void> {
    await this.#exclusive(async () => {
      await this.#insertCurrent((await this.#snapshot()).rows);
    });
  }

  /**
   * Rotates when automatic rotation is on and the current key (as the database has it) is older than
   * `rotateEveryMs`; otherwise adopts the database's state. Returns whether this call rotated.
   */
  async rotateIfDue(): Promise<boolean> {
    const every = this.#rotateEveryMs;
    if (every === null) {
      await this.reload();
      return false;
    }
    const currentOf = (rows: SigningKeyRecord[]): SigningKeyRecord | undefined =>
      rows.filter((r) => r.status === 'active').sort(newestFirst)[0];
    // Most checks find nothing to do: read without the lock, and take it only to rotate.
    const seen = await this.#snapshot();
    const stale = currentOf(seen.rows);
    if (stale && stale.createdAt.getTime() + every > this.#now()) {
      await this.#adopt(seen);
      return false;
    }
    return this.#exclusive(async () => {
      const snap = await this.#snapshot();
      // Rotate only the key found due: if another replica rotated meanwhile, adopt its key instead.
      // (Comparing kids, not ages, keeps this right whatever the clocks of replicas and database say.)
      if (currentOf(snap.rows)?.kid !== stale?.kid) {
        await this.#repair(snap);
        return false;
      }
      await this.#insertCurrent(snap.rows);
      return true;
    });
  }

  /** Re-reads the table (another replica may have rotated). On failure the ring keeps its state. */
  async reload(): Promise<void> {
    await this.#adopt(await this.#snapshot());
  }

  /** Stops the refresh timer. The ring still answers from what it last read. */
  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  // -------------------------------------------------------------------------------------------

  #ready(): State {
    if (this.#state === null) throw new SigningKeyError('the key ring is not open');
    return this.#state;
  }

  #startTimer(everyMs: number): void {
    this.#timer = setInterval(() => {
      if (this.#ticking) return;
      this.#ticking = this.rotateIfDue()
        .then(
          () => undefined,
          (err: unknown) => this.#onError(err),
        )
        .finally(() => {
          this.#ticking = null;
        });
    }, everyMs);
    // The ring must not keep a process alive that is otherwise done.
    this.#timer.unref();
  }

  /** Runs `fn` as the only ring of any replica changing the table. */
  async #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const db = this.#store.db;
    return inLocalQueue(db, async () => {
      // PGlite: one process owns the data directory (lock file), so the local queue is the lock.
      if (db.kind !== 'postgres') return fn();
      const s = await db.session();
      try {
        await s.query(`SET lock_timeout = '${LOCK_WAIT}'`);
        try {
          await s.query(`SELECT pg_advisory_lock(${RING_LOCK})`);
        } catch (err) {
          throw new SigningKeyError(
            `could not take the signing-key lock within ${LOCK_WAIT} (another replica holds it): ${err instanceof Error ? err.message : String(err)}`,
          );
        }
        try {
          return await fn();
        } finally {
          await s.query(`SELECT pg_advisory_unlock(${RING_LOCK})`).catch(() => undefined);
        }
      } finally {
        await s.close();
      }
    });
  }

  /** The table now, numbered so that a slow read never replaces the state a later read produced. */
  async #snapshot(): Promise<Snapshot> {
    const seq = ++this.#reads;
    return { rows: await this.#store.listSigningKeys(), seq };
  }

  async #adopt(snap: Snapshot): Promise<void> {
    const state = await this.#read(snap.rows);
    if (snap.seq > this.#adopted) {
      this.#adopted = snap.seq;
      this.#state = state;
    }
  }

  /**
   * Under the lock: a fresh key becomes the only active one; every key active until now is
   * published for the grace period, and keys whose grace has passed are marked retired.
   */
  async #insertCurrent(rows: SigningKeyRecord[]): Promise<void> {
    // Prove this replica can read the keys in force before replacing them: one with a wrong
    // signing.key must fail here, not take the ring over with keys no other replica can open.
    if (rows.some((r) => r.status === 'active')) await this.#read(rows);
    const t = this.#now();
    const privateKey = generateKeyPairSync('ed25519').privateKey;
    const { kid, jwk } = await describeKey(privateKey);
    const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
    // The new key goes in before the old ones are demoted: a reader never sees no active key.
    await this.#store.putSigningKey({
      kid,
      alg: ALG,
      publicJwk: { ...jwk },
      privateEnc: seal(this.#sealingKey, kid, pkcs8),
      status: 'active',
      retireAt: null,
    });
    pkcs8.fill(0);
    const retireAt = new Date(t + RETIRED_KEY_GRACE_SECONDS * 1000);
    for (const r of rows) {
      if (r.status === 'active') await this.#store.updateSigningKey(r.kid, { status: 'previous', retireAt });
    }
    await this.#retireExpired(rows, t);
    await this.#adopt(await this.#snapshot());
  }

  /** Under the lock: leaves exactly one active key (the newest) and marks expired ones retired. */
  async #repair(snap: Snapshot): Promise<void> {
    const { rows } = snap;
    // Read first: a replica that cannot open the keys changes nothing.
    await this.#read(rows);
    const t = this.#now();
    const actives = rows.filter((r) => r.status === 'active').sort(newestFirst);
    // More than one: a rotation stopped half way (the process died between its two steps).
    const retireAt = new Date(t + RETIRED_KEY_GRACE_SECONDS * 1000);
    for (const r of actives.slice(1)) await this.#store.updateSigningKey(r.kid, { status: 'previous', retireAt });
    const changed = (await this.#retireExpired(rows, t)) || actives.length > 1;
    await this.#adopt(changed ? await this.#snapshot() : snap);
  }

  /** Marks keys past their grace period retired; true if there were any. */
  async #retireExpired(rows: SigningKeyRecord[], t: number): Promise<boolean> {
    const done = rows.filter((r) => expired(r, t));
    for (const r of done) await this.#store.updateSigningKey(r.kid, { status: 'retired' });
    return done.length > 0;
  }

  /** The ring as the rows describe it; throws (naming the key file) when a published key does not check out. */
  async #read(rows: SigningKeyRecord[]): Promise<State> {
    const t = this.#now();
    const actives = rows.filter((r) => r.status === 'active').sort(newestFirst);
    const [currentRow, ...otherActives] = actives;
    if (!currentRow) throw new SigningKeyError('no active internal-JWT signing key in the database');
    const published = rows
      .filter((r) => r.status === 'previous' && r.retireAt !== null && r.retireAt.getTime() > t)
      .sort(newestFirst);
    const known = new Map<string, Entry>();
    if (this.#state) for (const e of [this.#state.current, ...this.#state.previous]) known.set(e.kid, e);
    const load = async (r: SigningKeyRecord, retireAt: number | null): Promise<Entry> => {
      const cached = known.get(r.kid);
      const e = cached && cached.sealed.equals(r.privateEnc) ? cached : await this.#open(r);
      checkRow(r, e);
      return { ...e, createdAt: r.createdAt.getTime(), retireAt };
    };
    return {
      current: await load(currentRow, null),
      previous: [
        // Half-rotated leftovers stay published (no end yet) until the lock holder demotes them.
        ...(await Promise.all(otherActives.map((r) => load(r, null)))),
        ...(await Promise.all(published.map((r) => load(r, r.retireAt?.getTime() ?? null)))),
      ],
    };
  }

  async #open(r: SigningKeyRecord): Promise<Entry> {
    if (r.alg !== ALG) throw new SigningKeyError(`signing key ${r.kid}: algorithm ${r.alg}, expected ${ALG}`);
    const pkcs8 = unseal(this.#sealingKey, r.kid, r.privateEnc);
    if (pkcs8 === null) {
      throw new SigningKeyError(
        `signing key ${r.kid} in the database cannot be decrypted with ${this.#keySource}: ` +
          `the keys were sealed with another ${SIGNING_KEY_FILE} (or the row was altered). Every replica must use ` +
          `the same ${SIGNING_KEY_FILE}: copy it from the installation that created the keys, or mount the same secret`,
      );
    }
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
    } finally {
      pkcs8.fill(0);
    }
    const d = await describeKey(privateKey);
    return { ...d, privateKey, createdAt: r.createdAt.getTime(), retireAt: null, sealed: Buffer.from(r.privateEnc) };
  }
}

/** The row's kid and public JWK must be those of the key its ciphertext holds. */
function checkRow(r: SigningKeyRecord, e: Entry): void {
  const stored = r.publicJwk;
  if (
    e.kid !== r.kid ||
    stored['x'] !== e.jwk.x ||
    stored['kty'] !== 'OKP' ||
    stored['crv'] !== 'Ed25519' ||
    (stored['kid'] !== undefined && stored['kid'] !== r.kid)
  ) {
    throw new SigningKeyError(`signing key ${r.kid}: the row's public key does not match its private key`);
  }
}

function expired(r: SigningKeyRecord, t: number): boolean {
  return r.status === 'previous' && (r.retireAt === null || r.retireAt.getTime() <= t);
}
