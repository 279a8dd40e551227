/**
 * Who is calling: principals, the identity store interface the Check handler reads, an in-memory
 * store (tests, and `serve --role authz --identities FILE` until the PostgreSQL store exists) and
 * the loader for that file.
 */
import { timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { ROLES, type Role } from '../policy/layer1-types.js';
import { parseApiKey, type ApiKeyKind } from './api-keys.js';

export interface Principal {
  id: string;
  role: Role;
  /** service → granted tool, prompt or resource names; `"*"` grants everything of that service. */
  grants: Record<string, string[]>;
  email?: string;
}

export interface ApiKeyMatch {
  principal: Principal;
  /** The kind of key this hash was registered as; the presented key's prefix must agree. */
  keyKind: ApiKeyKind;
}

export interface IdentityStore {
  /** `hash` is `hashApiKey(key)`. Resolves null for an unknown key, never throws for one. */
  findByApiKeyHash(hash: Buffer): Promise<ApiKeyMatch | null>;
  findUser(id: string): Promise<Principal | null>;
}

const SHA256_BYTES = 32;

/**
 * User ids travel in headers (`x-mcpgw-user`), audit rows and the session MAC, and may come from an
 * IdP's `sub` (a UUID, `auth0|123…`): visible ASCII only, so no header injection or look-alikes.
 */
export const USER_ID_PATTERN = /^[\x21-\x7e]{1,256}$/;

export function isValidUserId(id: unknown): id is string {
  return typeof id === 'string' && USER_ID_PATTERN.test(id);
}

/** An agent key must belong to an agent, a person's key to an admin or approver. */
export function keyKindAllowsRole(kind: ApiKeyKind, role: Role): boolean {
  return kind === 'sk' ? role === 'agent' : role === 'admin' || role === 'approver';
}

export function keyKindForRole(role: Role): ApiKeyKind {
  return role === 'agent' ? 'sk' : 'ak';
}

// Same rule as service names in the policy file (DESIGN §5); it also keeps `__proto__` and friends
// out of the grants object.
const serviceName = z.string().regex(/^[a-z][a-z0-9-]{0,30}$/, 'service names match ^[a-z][a-z0-9-]{0,30}$');
const grantedName = z.string().min(1).max(2048);
const grantsSchema = z.record(serviceName, z.array(grantedName));

const principalSchema = z.strictObject({
  id: z.string().regex(USER_ID_PATTERN, 'user ids are 1–256 visible ASCII characters'),
  role: z.enum(ROLES),
  grants: grantsSchema,
  email: z.email().optional(),
});

function clonePrincipal(p: Principal): Principal {
  const grants: Record<string, string[]> = {};
  for (const [service, names] of Object.entries(p.grants)) grants[service] = [...names];
  const out: Principal = { id: p.id, role: p.role, grants };
  if (p.email !== undefined) out.email = p.email;
  return out;
}

/** zod reports a bad record key as "Invalid key in record"; the key schema's own message says why. */
function issueMessage(i: z.core.$ZodIssue): string {
  if (i.code === 'invalid_key' && i.issues.length > 0 && i.issues[0]) return i.issues[0].message;
  return i.message;
}

function describeZodError(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${issueMessage(i)}`).join('; ');
}

interface KeyEntry {
  hash: Buffer;
  userId: string;
  kind: ApiKeyKind;
}

export class MemoryIdentityStore implements IdentityStore {
  readonly #users = new Map<string, Principal>();
  readonly #keys = new Map<string, KeyEntry>();

  /** Throws when the principal is invalid or the id is taken. */
  addUser(principal: Principal): void {
    const parsed = principalSchema.safeParse(principal);
    if (!parsed.success) throw new Error(`invalid principal: ${describeZodError(parsed.error)}`);
    if (this.#users.has(principal.id)) throw new Error(`user ${principal.id} already exists`);
    this.#users.set(principal.id, clonePrincipal(parsed.data));
  }

  /** Removes the user and every key of theirs. */
  removeUser(id: string): boolean {
    for (const [k, entry] of this.#keys) if (entry.userId === id) this.#keys.delete(k);
    return this.#users.delete(id);
  }

  setGrants(userId: string, grants: Record<string, string[]>): void {
    const user = this.#users.get(userId);
    if (!user) throw new Error(`unknown user ${userId}`);
    const parsed = grantsSchema.safeParse(grants);
    if (!parsed.success) throw new Error(`invalid grants: ${describeZodError(parsed.error)}`);
    this.#users.set(userId, clonePrincipal({ ...user, grants: parsed.data }));
  }

  /** Registers `hashApiKey(key)` for a user. A kind that does not fit the user's role is refused. */
  addKeyHash(userId: string, kind: ApiKeyKind, hash: Buffer): void {
    const user = this.#users.get(userId);
    if (!user) throw new Error(`unknown user ${userId}`);
    if (hash.length !== SHA256_BYTES) throw new Error('an API key hash is 32 bytes (SHA-256)');
    if (!keyKindAllowsRole(kind, user.role)) {
      throw new Error(`a mcpgw_${kind}_ key cannot belong to ${userId}, whose role is ${user.role}`);
    }
    const k = hash.toString('hex');
    if (this.#keys.has(k)) throw new Error('this API key hash is already registered');
    this.#keys.set(k, { hash: Buffer.from(hash), userId, kind });
  }

  removeKeyHash(hash: Buffer): boolean {
    return this.#keys.delete(hash.toString('hex'));
  }

  async findByApiKeyHash(hash: Buffer): Promise<ApiKeyMatch | null> {
    if (!Buffer.isBuffer(hash) || hash.length !== SHA256_BYTES) return null;
    const entry = this.#keys.get(hash.toString('hex'));
    // The Map compares strings in variable time, but what it compares is a SHA-256 of the caller's
    // input against hashes the caller cannot choose, so that timing reveals nothing usable. The
    // constant-time check below makes the accept decision itself never rest on an early-exit
    // comparison, whatever index (a database, a prefix cache) ends up in front of it later.
    if (!entry || !timingSafeEqual(entry.hash, hash)) return null;
    const principal = this.#users.get(entry.userId);
    if (!principal) return null;
    return { principal: clonePrincipal(principal), keyKind: entry.kind };
  }

  async findUser(id: string): Promise<Principal | null> {
    const p = this.#users.get(id);
    return p ? clonePrincipal(p) : null;
  }
}

export type ApiKeyAuthError = 'malformed' | 'bad_checksum' | 'unknown_key' | 'kind_mismatch';

export type ApiKeyAuthResult =
  { ok: true; principal: Principal; keyKind: ApiKeyKind; displayId: string } | { ok: false; code: ApiKeyAuthError };

/**
 * The whole API-key check: shape and checksum (no store access for typos), hash lookup, then the
 * prefix of the presented key against the kind the hash was registered as and the user's role, so a
 * store that was fed a mismatched key still cannot hand an admin role to an `sk` key.
 */
export async function authenticateApiKey(store: IdentityStore, presented: string): Promise<ApiKeyAuthResult> {
  const parsed = parseApiKey(presented);
  if (!parsed.ok) return parsed;
  const match = await store.findByApiKeyHash(parsed.hash);
  if (!match) return { ok: false, code: 'unknown_key' };
  if (match.keyKind !== parsed.kind || !keyKindAllowsRole(parsed.kind, match.principal.role)) {
    return { ok: false, code: 'kind_mismatch' };
  }
  return { ok: true, principal: match.principal, keyKind: parsed.kind, displayId: parsed.displayId };
}

// ---------------------------------------------------------------------------------------------
// Identity file
// ---------------------------------------------------------------------------------------------

/** `<hex>` (kind implied by the role) or `sk:<hex>` / `ak:<hex>` (kind stated, checked at load). */
const KEY_ENTRY = /^(?:(sk|ak):)?([0-9a-fA-F]{64})$/;

const identityFileSchema = z.strictObject({
  users: z.array(
    z.strictObject({
      id: principalSchema.shape.id,
      role: principalSchema.shape.role,
      grants: grantsSchema.default({}),
      email: principalSchema.shape.email,
      apiKeySha256: z
        .array(z.string().regex(KEY_ENTRY, 'expected 64 hex digits, optionally prefixed sk: or ak:'))
        .default([]),
    }),
  ),
});

export interface IdentityFileIssue {
  file: string;
  line?: number;
  column?: number;
  path: string;
  message: string;
}

export class IdentityFileError extends Error {
  readonly issues: IdentityFileIssue[];
  constructor(issues: IdentityFileIssue[]) {
    super(
      issues.map((i) => `${i.file}${i.line ? `:${i.line}:${i.column ?? 1}` : ''}: ${i.path} ${i.message}`).join('\n'),
    );
    this.name = 'IdentityFileError';
    this.issues = issues;
  }
}

/**
 * Parses an identity document (YAML 1.2 or JSON, duplicate keys refused) into a store.
 * `file` only names the source in errors.
 */
export function parseIdentityDocument(text: string, file = '<identities>'): MemoryIdentityStore {
  const lineCounter = new LineCounter();
  // prettyErrors would quote the source in messages; positions come from the line counter instead.
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false, strict: true, lineCounter });
  if (doc.errors.length > 0) {
    throw new IdentityFileError(
      doc.errors.map((e) => {
        const pos = lineCounter.linePos(e.pos[0]);
        return { file, line: pos.line, column: pos.col, path: '(yaml)', message: e.message };
      }),
    );
  }
  const raw: unknown = doc.toJS();
  const parsed = identityFileSchema.safeParse(raw);
  if (!parsed.success) {
    throw new IdentityFileError(
      parsed.error.issues.map((i) => ({
        file,
        path: i.path.length ? i.path.join('.') : '(root)',
        message: issueMessage(i),
      })),
    );
  }

  const issues: IdentityFileIssue[] = [];
  const store = new MemoryIdentityStore();
  const seenKeys = new Map<string, string>();
  parsed.data.users.forEach((u, ui) => {
    const principal: Principal = { id: u.id, role: u.role, grants: u.grants };
    if (u.email !== undefined) principal.email = u.email;
    try {
      store.addUser(principal);
    } catch {
      issues.push({ file, path: `users.${ui}.id`, message: `duplicate user id ${u.id}` });
      return;
    }
    u.apiKeySha256.forEach((entry, ki) => {
      const m = KEY_ENTRY.exec(entry);
      if (!m) return; // unreachable: the schema checked the shape
      const stated = m[1] as ApiKeyKind | undefined;
      const hex = (m[2] as string).toLowerCase();
      const kind = stated ?? keyKindForRole(u.role);
      const path = `users.${ui}.apiKeySha256.${ki}`;
      if (!keyKindAllowsRole(kind, u.role)) {
        issues.push({ file, path, message: `a mcpgw_${kind}_ key cannot belong to role ${u.role}` });
        return;
      }
      const owner = seenKeys.get(hex);
      if (owner !== undefined) {
        issues.push({ file, path, message: `the same key hash is already listed for ${owner}` });
        return;
      }
      seenKeys.set(hex, u.id);
      store.addKeyHash(u.id, kind, Buffer.from(hex, 'hex'));
    });
  });
  if (issues.length > 0) throw new IdentityFileError(issues);
  return store;
}

/** Reads `mcpgw serve --identities FILE`. */
export async function loadIdentityFile(path: string): Promise<MemoryIdentityStore> {
  return parseIdentityDocument(await readFile(path, 'utf8'), path);
}
