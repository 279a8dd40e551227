/**
 * Users, their API keys and grants. A key is generated here, returned in the one response that
 * creates it, and only its SHA-256 and display id reach the database; nothing else ever sees it
 * (no log line, no audit row, no error message).
 */
import { generateApiKey, parseApiKey } from '../identity/api-keys.js';
import { keyKindForRole, type Principal } from '../identity/store.js';
import type { Role } from '../policy/layer1-types.js';
import { sqlState } from '../state/db.js';
import {
  createUserRequestSchema,
  grantedNameSchema,
  grantRequestSchema,
  pageQuerySchema,
  serviceNameSchema,
  userIdSchema,
  type CreateUserResponse,
  type GrantsResponse,
  type Page,
  type RevokeGrantResponse,
  type RotateKeyResponse,
  type RouteName,
  type UserBody,
} from './contract.js';
import { AdminError } from './errors.js';
import {
  auditChange,
  iso,
  ok,
  param,
  parse,
  type AdminResponse,
  type Call,
  type Handler,
  type HandlerEnv,
} from './handler.js';
import { pageInMemory } from './pagination.js';

type KeyRow = Awaited<ReturnType<HandlerEnv['store']['identity']['listApiKeys']>>[number];

function toUserBody(p: Principal, keys: readonly KeyRow[]): UserBody {
  return {
    id: p.id,
    role: p.role,
    email: p.email ?? null,
    grants: p.grants,
    keys: keys
      .filter((k) => k.userId === p.id && k.revokedAt === null)
      .map((k) => ({ displayId: k.displayId, kind: k.kind, createdAt: iso(k.createdAt) })),
  };
}

const KEY_ATTEMPTS = 3;

/** A new key for `userId`; only its hash is stored. Retries the (unlikely) display id collision. */
async function issueKey(env: HandlerEnv, userId: string, role: Role): Promise<{ key: string; displayId: string }> {
  const kind = keyKindForRole(role);
  for (let attempt = 1; ; attempt++) {
    const key = generateApiKey(kind);
    const parsed = parseApiKey(key);
    if (!parsed.ok) throw new Error('generated an API key that does not parse');
    try {
      await env.store.identity.addApiKey({ userId, kind, hash: parsed.hash, displayId: parsed.displayId });
      return { key, displayId: parsed.displayId };
    } catch (err) {
      if (sqlState(err) !== '23505' || attempt >= KEY_ATTEMPTS) throw err;
    }
  }
}

async function requireUser(env: HandlerEnv, id: string): Promise<Principal> {
  const user = await env.store.identity.findUser(id);
  if (!user) throw new AdminError('not_found', `no user ${id}`);
  return user;
}

async function userBody(env: HandlerEnv, id: string): Promise<UserBody> {
  const [user, keys] = await Promise.all([requireUser(env, id), env.store.identity.listApiKeys(id)]);
  return toUserBody(user, keys);
}

/** Grants that cannot take effect under the policy in force: stored anyway (the policy may follow). */
function grantWarnings(env: HandlerEnv, service: string, tools: readonly string[]): string[] {
  const entry = env.policy.active.compiled.data.catalog[service];
  if (!entry) return [`service ${service} is not in the policy's catalog: this grant has no effect until it is`];
  if (entry.tools === null) return [];
  const allowed = entry.tools;
  return tools
    .filter((t) => t !== '*' && !allowed.includes(t))
    .map((t) => `tool ${t} is not in services.${service}.tools: calls to it are denied whatever the grant`);
}

export function userHandlers(env: HandlerEnv): Pick<Record<RouteName, Handler>, UserRoute> {
  const identity = env.store.identity;
  return {
    async listUsers(call) {
      const q = parse(pageQuerySchema, call.query, 'query');
      const [users, keys] = await Promise.all([identity.listUsers(), identity.listApiKeys()]);
      const page: Page<UserBody> = pageInMemory(
        users.map((u) => toUserBody(u, keys)),
        (u) => [u.id],
        1,
        q,
      );
      return ok(page);
    },

    async getUser(call) {
      return ok(await userBody(env, param(call, 'id', userIdSchema)));
    },

    async createUser(call) {
      const req = parse(createUserRequestSchema, call.body, 'request body');
      try {
        await identity.createUser(req);
      } catch (err) {
        if (sqlState(err) === '23505') throw new AdminError('conflict', `user ${req.id} already exists`);
        throw err;
      }
      let issued: { key: string; displayId: string };
      try {
        issued = await issueKey(env, req.id, req.role);
      } catch (err) {
        // A user without a key would be a half-made account nobody asked for.
        await identity.deleteUser(req.id).catch(() => undefined);
        throw err;
      }
      await auditChange(env, call.caller, 'admin/users.create', {
        target: req.id,
        targetRole: req.role,
        key: issued.displayId,
      });
      const body: CreateUserResponse = { user: await userBody(env, req.id), apiKey: issued.key };
      return ok(body, 201);
    },

    async deleteUser(call) {
      const id = param(call, 'id', userIdSchema);
      const users = await identity.listUsers();
      const target = users.find((u) => u.id === id);
      if (!target) throw new AdminError('not_found', `no user ${id}`);
      if (target.role === 'admin' && users.filter((u) => u.role === 'admin').length <= 1) {
        throw new AdminError('conflict', `${id} is the last admin; add another admin first`);
      }
      if (!(await identity.deleteUser(id))) throw new AdminError('not_found', `no user ${id}`);
      await auditChange(env, call.caller, 'admin/users.delete', { target: id, targetRole: target.role });
      env.onGrantsChanged(id);
      return ok({ id, deleted: true });
    },

    async rotateKey(call) {
      const id = param(call, 'id', userIdSchema);
      const user = await requireUser(env, id);
      const old = (await identity.listApiKeys(id)).filter((k) => k.revokedAt === null);
      // New key first: a failure in between leaves the user with both keys, never with none.
      const issued = await issueKey(env, id, user.role);
      const revoked: string[] = [];
      for (const k of old) if (await identity.revokeApiKey(k.displayId)) revoked.push(k.displayId);
      await auditChange(env, call.caller, 'admin/users.rotate-key', { target: id, key: issued.displayId, revoked });
      const body: RotateKeyResponse = { user: await userBody(env, id), apiKey: issued.key, revoked };
      return ok(body);
    },

    async addGrants(call) {
      const id = param(call, 'id', userIdSchema);
      const req = parse(grantRequestSchema, call.body, 'request body');
      await requireUser(env, id);
      const tools = [...new Set(req.tools)];
      for (const tool of tools) await identity.grant(id, req.service, tool);
      await auditChange(env, call.caller, 'admin/grants.add', { target: id, tools }, req.service);
      env.onGrantsChanged(id);
      const user = await requireUser(env, id);
      const body: GrantsResponse = {
        userId: id,
        grants: user.grants,
        warnings: grantWarnings(env, req.service, tools),
      };
      return ok(body);
    },

    revokeServiceGrants: (call) => revoke(env, call, undefined),
    revokeToolGrant: (call) => revoke(env, call, param(call, 'tool', grantedNameSchema)),
  };
}

async function revoke(env: HandlerEnv, call: Call, tool: string | undefined): Promise<AdminResponse> {
  const id = param(call, 'id', userIdSchema);
  const service = param(call, 'service', serviceNameSchema);
  await requireUser(env, id);
  const removed = await env.store.identity.revokeGrant(id, service, tool);
  if (removed === 0) {
    throw new AdminError('not_found', `${id} has no grant on ${service}${tool === undefined ? '' : `:${tool}`}`);
  }
  await auditChange(env, call.caller, 'admin/grants.revoke', { target: id, tool: tool ?? '*all*', removed }, service);
  env.onGrantsChanged(id);
  const user = await requireUser(env, id);
  const body: RevokeGrantResponse = { userId: id, removed, grants: user.grants };
  return ok(body);
}

export type UserRoute =
  | 'listUsers'
  | 'getUser'
  | 'createUser'
  | 'deleteUser'
  | 'rotateKey'
  | 'addGrants'
  | 'revokeServiceGrants'
  | 'revokeToolGrant';
