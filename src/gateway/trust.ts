/**
 * What the gateway believes about a request: only what authz vouched for (DESIGN §3 "Answer").
 * A request is accepted when it carries an internal JWT signed by a key of the ring AND an
 * `x-mcpgw-request-mac` over the decision id and the exact body bytes received. The user is the
 * token's `sub`; `x-mcpgw-user` is never trusted on its own, and must agree with the token when sent.
 * A decision id is accepted once, so a captured token + MAC cannot be replayed even with the same body.
 */
import { verifyInternalJwt, type InternalJwtVerifier, type PublicKeySource } from '../identity/internal-jwt.js';
import { verifyRequestMac } from '../identity/request-mac.js';
import type { Role } from '../policy/layer1-types.js';

export interface TrustedCaller {
  userId: string;
  role: Role;
  decisionId: string;
  /** Token expiry, seconds since the epoch. */
  exp: number;
}

export type TrustResult = { ok: true; caller: TrustedCaller } | { ok: false; code: string; message: string };

export interface TrustDeps {
  keys: PublicKeySource;
  /**
   * Checks the token instead of a full verifyInternalJwt against `keys` (createInternalJwtVerifier
   * over the same keys, which skips the signature for a token it verified recently).
   */
  verifier?: InternalJwtVerifier;
  requestMacKey: Uint8Array;
  replay: ReplayGuard;
  /**
   * Re-reads the key ring; true when it did. Called when a token names a key we do not know, which
   * is how a gateway in another process learns that authz rotated the shared ring.
   */
  refreshKeys?: () => Promise<boolean>;
  now?: () => number;
}

const DECISION_ID = /^[\x21-\x7e]{1,128}$/;
const BEARER = /^Bearer ([\x21-\x7e]+)$/;

type HeaderValue = string | string[] | undefined;

function single(h: HeaderValue): string | undefined {
  if (Array.isArray(h)) return h.length === 1 ? h[0] : undefined;
  return h;
}

export async function verifyCaller(
  headers: Readonly<Record<string, HeaderValue>>,
  body: Uint8Array,
  deps: TrustDeps,
): Promise<TrustResult> {
  const authorization = single(headers['authorization']);
  const m = authorization === undefined ? null : BEARER.exec(authorization);
  if (!m?.[1]) return { ok: false, code: 'no_internal_token', message: 'Missing internal token' };
  const decisionId = single(headers['x-mcpgw-decision-id']);
  const mac = single(headers['x-mcpgw-request-mac']);
  if (decisionId === undefined || !DECISION_ID.test(decisionId) || mac === undefined) {
    return { ok: false, code: 'no_request_mac', message: 'Missing decision id or request MAC' };
  }
  // The MAC first: it is cheap, and a body that was swapped is the likelier attack.
  if (!verifyRequestMac(deps.requestMacKey, decisionId, body, mac)) {
    return { ok: false, code: 'bad_request_mac', message: 'Request MAC does not match this body' };
  }
  const token = m[1];
  const verifier = deps.verifier;
  const verify = verifier
    ? () => verifier.verify(token)
    : () => verifyInternalJwt(deps.keys, token, deps.now ? { now: deps.now } : {});
  let v = await verify();
  if (!v.ok && v.code === 'unknown_key' && deps.refreshKeys && (await deps.refreshKeys())) v = await verify();
  if (!v.ok) return { ok: false, code: `internal_token_${v.code}`, message: 'Invalid internal token' };
  const claimed = single(headers['x-mcpgw-user']);
  if (claimed !== undefined && claimed !== v.sub) {
    return { ok: false, code: 'user_mismatch', message: 'x-mcpgw-user does not match the internal token' };
  }
  if (!deps.replay.claim(decisionId, v.exp)) {
    return { ok: false, code: 'replayed', message: 'This authorization was already used' };
  }
  return { ok: true, caller: { userId: v.sub, role: v.role, decisionId, exp: v.exp } };
}

/**
 * A `refreshKeys` for a ring that can re-read its storage (FileKeyRing), at most once per
 * `minIntervalMs`, so tokens from an unknown key cannot make the gateway read the file per request.
 */
export function keyRefresher(
  ring: { reload(): Promise<void> },
  minIntervalMs = 5000,
  now: () => number = Date.now,
): () => Promise<boolean> {
  let last = -Infinity;
  let running: Promise<boolean> | null = null;
  return () => {
    if (running) return running;
    if (now() - last < minIntervalMs) return Promise.resolve(false);
    last = now();
    running = ring
      .reload()
      .then(
        () => true,
        () => false,
      )
      .finally(() => {
        running = null;
      });
    return running;
  };
}

/**
 * Decision ids seen while their token could still be valid. Bounded: past `max` entries the
 * oldest go first, and since every entry expires with its token (five minutes at most) the bound
 * only bites beyond max / 300 requests per second.
 */
export class ReplayGuard {
  readonly #seen = new Map<string, number>();
  readonly #max: number;
  readonly #now: () => number;

  constructor(opts: { max?: number; now?: () => number } = {}) {
    this.#max = opts.max ?? 200_000;
    this.#now = opts.now ?? Date.now;
  }

  /** True the first time `id` is claimed before `expSeconds` (+ clock tolerance); false after. */
  claim(id: string, expSeconds: number): boolean {
    const now = this.#now();
    if (this.#seen.has(id)) return false;
    // Map iteration is insertion order; tokens live at most five minutes, so this is nearly sorted.
    for (const [k, until] of this.#seen) {
      if (until > now && this.#seen.size < this.#max) break;
      this.#seen.delete(k);
    }
    this.#seen.set(id, expSeconds * 1000 + 10_000);
    return true;
  }

  get size(): number {
    return this.#seen.size;
  }
}
