/**
 * The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in package.json)
 * run unmodified against the whole gateway as `mcpgw serve --role all --no-prefix` runs it: state
 * store, authz, gateway and front, with the fixture backend of test/fixtures/conformance/ behind
 * it. The suite sends no credentials, so it talks to the test-only relay (relay.ts), which adds an
 * agent's API key.
 *
 * Every server scenario runs (`--suite all`: active and pending). The test fails when a check
 * outside expected-failures.yaml fails or warns, when a listed check passes or changes status, and
 * when the run differs from the committed results.json. After a deliberate change, rewrite it:
 *
 *   MCPGW_CONFORMANCE_UPDATE=1 npx vitest run test/conformance
 *
 * With Envoy installed the same run goes through the real Envoy front too and must give the same
 * results.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeWith, findExecutable } from '../helpers/components.js';
import {
  compareWithExpected,
  formatResults,
  loadExpectedFailures,
  RESULTS_FILE,
  resultsFile,
  runSuite,
  startTarget,
  type ConformanceTarget,
  type ResultsFile,
  type SuiteRun,
} from './harness.js';

const SUITE_TIMEOUT_MS = 150_000;
const update = process.env['MCPGW_CONFORMANCE_UPDATE'] === '1';

/** The protocol version the gateway settles on with the SDK the suite's client is built on. */
async function negotiatedVersion(url: string): Promise<string> {
  const transport = new StreamableHTTPClientTransport(new URL(url));
  const client = new Client({ name: 'mcpgw-conformance-probe', version: '1.0.0' });
  await client.connect(transport);
  const version = transport.protocolVersion ?? '(none)';
  await transport.terminateSession();
  await client.close();
  return version;
}

/** The suite's own summary (one line per scenario), as the message of a failed assertion. */
function summary(run: SuiteRun): string {
  const at = run.output.lastIndexOf('=== SUMMARY ===');
  return at < 0 ? run.output.slice(-4000) : run.output.slice(at);
}

function committedResults(): unknown {
  return JSON.parse(readFileSync(RESULTS_FILE, 'utf8'));
}

function conformanceRun(front: () => Parameters<typeof startTarget>[0], owner: boolean): void {
  let target: ConformanceTarget | undefined;
  let run: SuiteRun;
  let results: ResultsFile;

  beforeAll(async () => {
    target = await startTarget(front());
    const version = await negotiatedVersion(target.url);
    run = await runSuite(target.url, SUITE_TIMEOUT_MS);
    results = resultsFile(run, version, loadExpectedFailures());
    if (owner && update) writeFileSync(RESULTS_FILE, formatResults(results));
  }, SUITE_TIMEOUT_MS + 60_000);

  afterAll(async () => {
    await target?.close();
  });

  it('ran every server scenario of the suite', () => {
    expect(run.scenarios.length).toBeGreaterThan(0);
    const ran = new Set(run.checks.map((c) => c.check.slice(0, c.check.indexOf('/'))));
    expect([...ran].sort(), summary(run)).toEqual([...run.scenarios].sort());
  });

  it('fails exactly the checks listed in expected-failures.yaml', () => {
    expect(compareWithExpected(run.checks, loadExpectedFailures()), summary(run)).toEqual([]);
  });

  it('matches the committed results.json', () => {
    const committed = committedResults();
    if (owner) {
      expect(results).toEqual(committed);
    } else {
      // Another front: the same checks with the same statuses as the built-in front's committed run.
      expect(committed).toMatchObject({ checks: results.checks, protocolVersion: results.protocolVersion });
    }
  });
}

describe('the expected-failures bookkeeping', () => {
  const listed = [{ check: 'a/x', status: 'FAILURE', kind: 'gap', reason: 'a known defect' }] as const;

  it('accepts a run that fails exactly the listed checks', () => {
    expect(
      compareWithExpected(
        [
          { check: 'a/x', status: 'FAILURE' },
          { check: 'b/y', status: 'SUCCESS' },
          { check: 'b/z', status: 'INFO' },
        ],
        listed,
      ),
    ).toEqual([]);
  });

  it('flags unlisted failures and warnings, listed checks that pass or changed, and vanished ones', () => {
    expect(
      compareWithExpected(
        [
          { check: 'a/x', status: 'FAILURE' },
          { check: 'b/y', status: 'WARNING' },
        ],
        listed,
      ),
    ).toEqual(['unexpected WARNING: b/y']);
    expect(compareWithExpected([{ check: 'a/x', status: 'SUCCESS' }], listed)).toEqual([
      'a/x is listed as FAILURE but is SUCCESS now: remove it from the list',
    ]);
    expect(compareWithExpected([{ check: 'a/x', status: 'WARNING' }], listed)).toEqual([
      'a/x is listed as FAILURE but is WARNING now: update its entry',
    ]);
    expect(compareWithExpected([], listed)).toEqual(['a/x is listed but the suite no longer reports it: remove it']);
  });

  it('the committed list parses, names each check once and gives every entry a reason', () => {
    const list = loadExpectedFailures();
    expect(new Set(list.map((e) => e.check)).size).toBe(list.length);
  });
});

describe('MCP conformance suite through the built-in front', () => {
  conformanceRun(() => ({ kind: 'builtin' }), true);
});

describeWith(['envoy'], 'MCP conformance suite through the real Envoy front', () => {
  conformanceRun(() => ({ kind: 'envoy', envoyBin: findExecutable('envoy') ?? 'envoy' }), false);
});
