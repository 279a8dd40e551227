/**
 * The server side of `npm run bench:layer2`: the real ext_authz gRPC server and the real Check
 * path, with a Layer 2 store (`--store postgres` with `--database-url` and `--pool-size`, or
 * `--store pglite` under `--home`) or without one (`--store none`, Layer 1 only, identities from
 * `--identities`). With a store, identities come from the store (as in production) and the audit
 * sealer runs in this process (the production default).
 *
 * It counts answers itself, keyed `allow:<rule>` / `deny:<rule>`, so the bench can prove every
 * answer; SIGUSR2 prints the counts and the span from the first request to the last answer since
 * the previous SIGUSR2, then resets them. SIGTERM drains and closes the store.
 */
import pino from 'pino';
import { createAuthzRuntime } from '../src/authz/runtime.js';
import { startAuthzServer } from '../src/authz/server.js';
import { loadIdentityFile } from '../src/identity/store.js';
import { createLogger } from '../src/log.js';
import { openStore, type Layer2Store } from '../src/state/index.js';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i] ?? '', process.argv[i + 1] ?? '');
const kind = args.get('--store') ?? 'none';
const home = args.get('--home') ?? '';
// Decisions are logged at info as in production, to a file so the terminal stays readable.
const logger = createLogger({
  level: 'info',
  destination: pino.destination({ dest: args.get('--log') ?? '/dev/null', sync: false }),
});

let store: Layer2Store | null = null;
if (kind === 'postgres') {
  store = await openStore({
    databaseUrl: args.get('--database-url') ?? '',
    home,
    poolSize: Number(args.get('--pool-size') ?? 10),
    logger,
  });
} else if (kind === 'pglite') {
  store = await openStore({ databaseUrl: null, home, logger });
} else if (kind !== 'none') {
  throw new Error(`unknown --store ${kind}`);
}

const runtime = await createAuthzRuntime({
  home,
  ...(store ? { store } : { identities: await loadIdentityFile(args.get('--identities') ?? '') }),
  policyFile: args.get('--policy') ?? '',
  logger,
});

let counts = new Map<string, number>();
let first = 0;
let last = 0;
const server = await startAuthzServer({
  address: '127.0.0.1:0',
  logger,
  check: async (v) => {
    if (first === 0) first = performance.now();
    const r = await runtime.check(v);
    const k = `${r.kind}:${r.facts.rule ?? '(none)'}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
    last = performance.now();
    return r;
  },
});
process.on('SIGUSR2', () => {
  const spanMs = first === 0 ? 0 : last - first;
  process.stdout.write(`${JSON.stringify({ counts: Object.fromEntries(counts), spanMs })}\n`);
  counts = new Map();
  first = 0;
  last = 0;
});
process.on('SIGTERM', () => {
  void (async () => {
    await server.drain();
    await store?.close();
    process.exit(0);
  })();
});
process.stdout.write(`${JSON.stringify({ ready: true, port: server.port })}\n`);
