/**
 * A real authz runtime for tests: temp MCPGW_HOME, the policy under test, an in-memory identity
 * store with API keys for a few users, and a real JWKS with tokens signed for them.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { createAuthzRuntime, type AuthzRuntime } from '../../src/authz/runtime.js';
import type { Layer2Store } from '../../src/state/index.js';
import { generateApiKey, hashApiKey } from '../../src/identity/api-keys.js';
import { mintServerRequestId, mintSessionId } from '../../src/identity/session.js';
import { MemoryIdentityStore, keyKindForRole, type Principal } from '../../src/identity/store.js';
import { createLogger } from '../../src/log.js';
import pino from 'pino';

export const JWT_ISSUER = 'https://idp.test';
export const JWT_AUDIENCE = 'mcpgw';

export const TEST_USERS: Principal[] = [
  { id: 'alice', role: 'agent', grants: { gmail: ['*'], docs: ['*'] } },
  { id: 'bob', role: 'agent', grants: {} },
  { id: 'dave', role: 'agent', grants: { docs: ['*'] } },
  { id: 'owner', role: 'admin', grants: {} },
  { id: 'carol', role: 'approver', grants: {} },
];

export interface AuthzFixture {
  home: string;
  runtime: AuthzRuntime;
  store: MemoryIdentityStore;
  keys: Record<string, string>;
  session(user: string): string;
  serverRequestId(user: string): string;
  jwt(name: string): Promise<string>;
  close(): Promise<void>;
}

export async function createAuthzFixture(opts: {
  policyFile: string;
  store?: Layer2Store | null;
}): Promise<AuthzFixture> {
  const home = await mkdtemp(join(tmpdir(), 'mcpgw-authz-'));
  const store = new MemoryIdentityStore();
  const keys: Record<string, string> = {};
  for (const u of TEST_USERS) {
    store.addUser(u);
    const kind = keyKindForRole(u.role);
    const key = generateApiKey(kind);
    store.addKeyHash(u.id, kind, hashApiKey(key));
    keys[u.id] = key;
  }
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const foreign = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  const jwksFile = join(home, 'jwks.json');
  await writeFile(jwksFile, JSON.stringify({ keys: [jwk] }));

  const runtime = await createAuthzRuntime({
    home,
    identities: store,
    policyFile: opts.policyFile,
    store: opts.store ?? null,
    jwt: { jwks: { file: jwksFile }, issuer: JWT_ISSUER, audience: JWT_AUDIENCE },
    logger: createLogger({ destination: pino.destination({ dest: '/dev/null', sync: true }) }),
  });

  const sign = (
    key: CryptoKey,
    claims: Record<string, unknown>,
    o: { aud?: string; exp?: string | number; kid?: string } = {},
  ) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', kid: o.kid ?? 'k1' })
      .setIssuer(JWT_ISSUER)
      .setAudience(o.aud ?? JWT_AUDIENCE)
      .setIssuedAt()
      .setExpirationTime(o.exp ?? '5m')
      .sign(key);

  const sessions = new Map<string, string>();
  const session = (user: string) => {
    let s = sessions.get(user);
    if (!s) {
      s = mintSessionId(runtime.sessionKey, user);
      sessions.set(user, s);
    }
    return s;
  };
  return {
    home,
    runtime,
    store,
    keys,
    session,
    serverRequestId: (user) => mintServerRequestId(runtime.sessionKey, session(user)),
    async jwt(name) {
      switch (name) {
        case 'expired':
          return sign(privateKey, { sub: 'dave' }, { exp: Math.floor(Date.now() / 1000) - 3600 });
        case 'wrongAudience':
          return sign(privateKey, { sub: 'dave' }, { aud: 'someone-else' });
        case 'foreignKey':
          return sign(foreign.privateKey, { sub: 'dave' });
        case 'stranger':
          return sign(privateKey, { sub: 'stranger' });
        default:
          return sign(privateKey, { sub: name, email: `${name}@acme.com`, email_verified: true });
      }
    },
    async close() {
      await rm(home, { recursive: true, force: true });
    },
  };
}
