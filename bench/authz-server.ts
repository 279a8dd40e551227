/**
 * The server side of `npm run bench:authz`: the real ext_authz gRPC server with either the real
 * Check path (`--mode layer1`) or an empty Check handler (`--mode empty`, the baseline: same gRPC
 * stack and CheckResponse encoding, no decision). It counts allow/deny itself so the bench can prove
 * the answers were right; SIGUSR2 prints and resets the counters.
 */
import pino from 'pino';
import { createAuthzRuntime } from '../src/authz/runtime.js';
import { startAuthzServer } from '../src/authz/server.js';
import type { CheckResult } from '../src/authz/check.js';
import { loadIdentityFile } from '../src/identity/store.js';
import { createLogger } from '../src/log.js';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i] ?? '', process.argv[i + 1] ?? '');
const mode = args.get('--mode') ?? 'layer1';
// Decisions are logged at info as in production, to a file so the terminal stays readable.
const logger = createLogger({
  level: 'info',
  destination: pino.destination({ dest: args.get('--log') ?? '/dev/null', sync: false }),
});

let check: (v: Parameters<Awaited<ReturnType<typeof createAuthzRuntime>>['check']>[0]) => Promise<CheckResult>;
if (mode === 'empty') {
  const allow: CheckResult = {
    kind: 'allow',
    decisionId: '00000000-0000-0000-0000-000000000000',
    upstreamHeaders: { 'x-mcpgw-decision-id': '00000000-0000-0000-0000-000000000000' },
    removeHeaders: ['authorization'],
    facts: {
      route: 'mcp',
      httpMethod: 'POST',
      userId: null,
      rpcMethod: null,
      service: null,
      name: null,
      code: 'empty',
      rule: null,
      reasons: [],
      approvalId: null,
      policyRevision: null,
      audited: false,
    },
  };
  check = () => Promise.resolve(allow);
} else {
  const runtime = await createAuthzRuntime({
    home: args.get('--home') ?? '',
    identities: await loadIdentityFile(args.get('--identities') ?? ''),
    policyFile: args.get('--policy') ?? '',
    logger,
  });
  check = (v) => runtime.check(v);
}

const counts = { allow: 0, deny: 0 };
const server = await startAuthzServer({
  address: '127.0.0.1:0',
  logger,
  check: async (v) => {
    const r = await check(v);
    counts[r.kind] += 1;
    return r;
  },
});
process.on('SIGUSR2', () => {
  process.stdout.write(`${JSON.stringify({ counts })}\n`);
  counts.allow = 0;
  counts.deny = 0;
});
process.on('SIGTERM', () => void server.drain().then(() => process.exit(0)));
process.stdout.write(`${JSON.stringify({ ready: true, port: server.port })}\n`);
