/**
 * Property test of the whole Check handler (real policy Wasm, real identity): thousands of random
 * and mutated bodies from a valid agent with a valid session. It must never throw, every denial
 * must carry a JSON-RPC body, and anything it allows must be a well-formed message that the strict
 * parser, JSON.parse and a direct Layer 1 evaluation all agree is an allowed call.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpRequestView } from '../../src/authz/http-view.js';
import { parseJsonRpc } from '../../src/authz/jsonrpc.js';
import { createAuthzFixture, type AuthzFixture } from '../helpers/authz-fixture.js';

let fx: AuthzFixture;
beforeAll(async () => {
  fx = await createAuthzFixture({ policyFile: new URL('../fixtures/check/policy.yaml', import.meta.url).pathname });
});
afterAll(async () => fx.close());

const seeds = [
  { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'gmail__read_email', arguments: { id: 'm1' } } },
  {
    jsonrpc: '2.0',
    id: 'x',
    method: 'tools/call',
    params: { name: 'gmail__send_email', arguments: { to: ['a@acme.com'], subject: 's' } },
  },
  {
    jsonrpc: '2.0',
    id: 2,
    method: 'tools/call',
    params: { name: 'gmail__send_email', arguments: { to: 'a@acme.com', bcc: 'e@evil.com' } },
  },
  { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'gmail__delete_email', arguments: { id: 'm1' } } },
  { jsonrpc: '2.0', id: 4, method: 'tools/list', params: {} },
  { jsonrpc: '2.0', id: 5, method: 'ping' },
  { jsonrpc: '2.0', method: 'notifications/initialized' },
  { jsonrpc: '2.0', id: 6, method: 'resources/read', params: { uri: 'mcpgw://gmail/x' } },
].map((s) => JSON.stringify(s));

type Mutation =
  | { op: 'flip'; at: number; byte: number }
  | { op: 'insert'; at: number; text: string }
  | { op: 'delete'; at: number; len: number }
  | { op: 'truncate'; at: number }
  | { op: 'upper'; at: number }
  | { op: 'dupKey'; at: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({
    op: fc.constant('insert' as const),
    at: fc.nat(),
    text: fc.oneof(
      fc.string(),
      fc.constantFrom(
        '\\ud800',
        '\ufeff',
        ',"name":"gmail__delete_email"',
        '[[[[[[[[',
        '9007199254740993',
        '"To":"x"',
        '\u0000',
        '"__proto__":{}',
      ),
    ),
  }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('upper' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('dupKey' as const), at: fc.nat() }),
);

function apply(body: Buffer, m: Mutation): Buffer {
  const at = body.length === 0 ? 0 : m.at % (body.length + 1);
  switch (m.op) {
    case 'flip': {
      const b = Buffer.from(body);
      if (b.length > 0) b[at % b.length] = m.byte;
      return b;
    }
    case 'insert':
      return Buffer.concat([body.subarray(0, at), Buffer.from(m.text, 'utf8'), body.subarray(at)]);
    case 'delete':
      return Buffer.concat([body.subarray(0, at), body.subarray(at + m.len)]);
    case 'truncate':
      return body.subarray(0, at);
    case 'upper': {
      const s = body.toString('latin1');
      return Buffer.from(s.slice(0, at) + s.slice(at, at + 1).toUpperCase() + s.slice(at + 1), 'latin1');
    }
    case 'dupKey': {
      // Repeat the first `"key":value` pair after position `at`, if any.
      const s = body.toString('utf8');
      const match = /"(\w+)":("[^"]*"|\d+)/.exec(s.slice(at));
      if (!match) return body;
      const i = at + match.index + match[0].length;
      return Buffer.from(`${s.slice(0, i)},${match[0]}${s.slice(i)}`, 'utf8');
    }
  }
}

function view(body: Buffer): HttpRequestView {
  return {
    method: 'POST',
    path: '/mcp',
    headers: {
      authorization: `Bearer ${fx.keys['alice'] ?? ''}`,
      'content-type': 'application/json',
      'mcp-session-id': fx.session('alice'),
    },
    rawBody: body,
    bodyAsString: false,
  };
}

describe('Check handler under random and mutated bodies', () => {
  it('never throws, always answers a denial with a JSON-RPC body, allows only well-formed authorized messages', async () => {
    let allowed = 0;
    let denied = 0;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...seeds), fc.array(mutation, { maxLength: 4 }), async (seed, muts) => {
        const body = muts.reduce<Buffer>((b, m) => apply(b, m), Buffer.from(seed, 'utf8'));
        const result = await fx.runtime.check(view(body));
        if (result.kind === 'deny') {
          denied++;
          const parsed = JSON.parse(result.answer.body) as { jsonrpc?: string };
          expect(parsed.jsonrpc).toBe('2.0');
          return;
        }
        allowed++;
        // The strict parser accepted it, and an ordinary parser sees the same message.
        const msg = parseJsonRpc(body);
        expect(msg.kind === 'request' || msg.kind === 'notification').toBe(true);
        const plain = JSON.parse(body.toString('utf8')) as {
          method?: string;
          params?: { name?: string; uri?: string; arguments?: unknown };
        };
        if (msg.kind === 'invalid' || msg.kind === 'response') return;
        expect(plain.method).toBe(msg.method);
        if (msg.method === 'tools/call' || msg.method === 'resources/read') {
          const [service, name] =
            msg.method === 'tools/call'
              ? (plain.params?.name ?? '').split('__')
              : [
                  /^mcpgw:\/\/([^/]+)\//.exec(plain.params?.uri ?? '')?.[1],
                  decodeURIComponent((plain.params?.uri ?? '').replace(/^mcpgw:\/\/[^/]+\//, '')),
                ];
          const decision = fx.runtime.policy.active.engine.evaluate({
            user: { id: 'alice', role: 'agent' },
            grants: { gmail: ['*'], docs: ['*'] },
            method: msg.method,
            service: service ?? '',
            name: name ?? '',
            arguments: msg.method === 'tools/call' ? ((plain.params?.arguments ?? {}) as Record<string, unknown>) : {},
          });
          expect(decision.outcome).toBe('allow');
        } else {
          expect(['tools/list', 'ping', 'notifications/initialized']).toContain(msg.method);
        }
      }),
      { numRuns: 4000 },
    );
    // The generator must exercise both sides, or the property says little.
    expect(allowed).toBeGreaterThan(50);
    expect(denied).toBeGreaterThan(500);
  });
});
