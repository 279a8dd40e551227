#!/usr/bin/env node
// Compiles rego/*.rego (tests excluded) to rego/policy.wasm with `opa build -t wasm` and writes
// rego/policy.wasm.json, the manifest the freshness test checks on machines without opa.
//
//   node scripts/build-rego.mjs             regenerate rego/capabilities.json if needed, then build
//   node scripts/build-rego.mjs --out DIR   build into DIR; rego/ is left untouched
//   node scripts/build-rego.mjs --check     build into a temp dir, exit 1 unless rego/ is up to date
//
// The capabilities file is derived from the npm SDK's capabilities.json, minus every builtin that
// the compiled Wasm would have to call back into the host for. Those are either implemented in
// JavaScript by the SDK (sprintf, yaml.*: different code from the Go builtins `opa test` runs, so
// the two could disagree) or not implemented at all (rand.intn, time.diff: a runtime failure).
// Which ones they are is not hard-coded: a probe policy calling every listed builtin is compiled
// and the Wasm's own list of host builtins is read back.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { format, resolveConfig } from 'prettier';
import { loadPolicy } from '@open-policy-agent/opa-wasm';
import {
  CAPABILITIES_FILE,
  ENTRYPOINTS,
  MANIFEST_FILE,
  WASM_FILE,
  regoSources,
  sha256Hex,
  sourcesSha256,
  tarMember,
} from './rego-manifest.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const regoDir = join(root, 'rego');
const require = createRequire(import.meta.url);
// The package's exports hide package.json, so go up from its entry point (src/index.cjs).
const sdkCapabilitiesPath = join(dirname(require.resolve('@open-policy-agent/opa-wasm')), '..', 'capabilities.json');

// Language constructs that appear in the capabilities list but are not callable by name.
const NOT_CALLABLE = new Set(['eq', 'assign', 'internal.member_2', 'internal.member_3']);

function fail(message) {
  process.stderr.write(`build-rego: ${message}\n`);
  process.exit(1);
}

function findOpa() {
  const fromEnv = process.env['OPA'];
  if (fromEnv) return fromEnv;
  try {
    const p = execFileSync('sh', ['-c', 'command -v opa'], { encoding: 'utf8' }).trim();
    if (p) return p;
  } catch {
    // not on PATH
  }
  const goBin = join(homedir(), 'go', 'bin', 'opa');
  if (existsSync(goBin)) return goBin;
  return fail('opa not found on PATH or in ~/go/bin (go install github.com/open-policy-agent/opa@v1.22.2)');
}

function opaVersion(opa) {
  const out = execFileSync(opa, ['version'], { encoding: 'utf8' });
  const m = /^Version:\s*(\S+)/m.exec(out);
  if (!m) fail(`cannot read the version from \`${opa} version\``);
  return m[1];
}

/** `opa build -t wasm`, run inside `dir` with relative file names so no absolute path is embedded. */
function opaBuildWasm(opa, dir, files, entrypoints, capabilitiesPath, workDir) {
  const bundle = join(workDir, `bundle-${Math.random().toString(36).slice(2)}.tar.gz`);
  try {
    execFileSync(
      opa,
      [
        'build',
        '-t',
        'wasm',
        ...entrypoints.flatMap((e) => ['-e', e]),
        '--capabilities',
        capabilitiesPath,
        '-o',
        bundle,
        ...files,
      ],
      { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
  } catch (e) {
    const err = /** @type {{stderr?: Buffer, stdout?: Buffer}} */ (e);
    fail(`opa build failed:\n${err.stderr?.toString() ?? ''}${err.stdout?.toString() ?? ''}`);
  }
  const wasm = tarMember(readFileSync(bundle), WASM_FILE);
  if (!wasm) fail(`${bundle} has no /${WASM_FILE}`);
  return wasm;
}

/** Names of the builtins a compiled policy expects the host (the JavaScript SDK) to provide. */
async function hostBuiltins(wasm) {
  const policy = await loadPolicy(wasm);
  const exports = policy.wasmInstance.exports;
  const addr = exports.opa_json_dump(exports.builtins());
  const mem = new Uint8Array(policy.mem.buffer);
  const end = mem.indexOf(0, addr);
  return Object.keys(JSON.parse(new TextDecoder().decode(mem.subarray(addr, end))));
}

async function prettyJson(value, path) {
  const options = (await resolveConfig(path)) ?? {};
  return format(JSON.stringify(value), { ...options, filepath: path });
}

async function deriveCapabilities(opa, workDir) {
  const sdk = JSON.parse(readFileSync(sdkCapabilitiesPath, 'utf8'));
  // The SDK's list predates Rego v1 and says nothing about the language version.
  const probeCaps = { ...sdk, features: ['rego_v1'] };
  const probeCapsPath = join(workDir, 'probe-capabilities.json');
  writeFileSync(probeCapsPath, JSON.stringify(probeCaps));
  const calls = [];
  for (const b of sdk.builtins) {
    if (NOT_CALLABLE.has(b.name) || !b.decl?.result) continue;
    const args = (b.decl.args ?? []).map((_, i) => `input.a${i}`);
    calls.push(`${b.name}(${args.join(', ')})`);
  }
  const probeDir = join(workDir, 'probe');
  mkdirSync(probeDir, { recursive: true });
  writeFileSync(
    join(probeDir, 'probe.rego'),
    `package probe\n\n${calls.map((c, i) => `r${i} := ${c}`).join('\n')}\n\nall_results := [${calls.map((_, i) => `r${i}`).join(', ')}]\n`,
  );
  const probeWasm = opaBuildWasm(opa, probeDir, ['probe.rego'], ['probe/all_results'], probeCapsPath, workDir);
  const host = new Set(await hostBuiltins(probeWasm));
  const caps = {
    builtins: sdk.builtins.filter((b) => !host.has(b.name)),
    features: ['rego_v1'],
    wasm_abi_versions: sdk.wasm_abi_versions,
  };
  return { text: await prettyJson(caps, join(regoDir, CAPABILITIES_FILE)), excluded: [...host].sort() };
}

/** Loads the policy the way src/policy/layer1.ts does and checks it answers with one decision. */
async function smokeTest(wasm) {
  const host = await hostBuiltins(wasm);
  if (host.length > 0) fail(`the policy needs host builtins ${host.join(', ')}; the capabilities should forbid them`);
  const policy = await loadPolicy(wasm);
  policy.setData({ catalog: {}, rules: [], layer2: { limits: [{ name: 'bad', select: { tool: '^(' } }] } });
  const rs = policy.evaluate(
    { service: 'nope', name: 'x', method: 'tools/call', arguments: {}, grants: {} },
    ENTRYPOINTS[0],
  );
  const d = Array.isArray(rs) && rs.length === 1 ? rs[0].result : undefined;
  if (d?.code !== 'unknown_service' || d?.outcome !== 'deny') fail(`smoke evaluation gave ${JSON.stringify(rs)}`);
  const problems = policy.evaluate({}, ENTRYPOINTS[1]);
  if (JSON.stringify(problems) !== JSON.stringify([{ result: ["invalid RE2 pattern: '^('"] }])) {
    fail(`smoke data check gave ${JSON.stringify(problems)}`);
  }
}

async function main() {
  const argv = process.argv.slice(2);
  const check = argv.includes('--check');
  const outIdx = argv.indexOf('--out');
  const outDir = outIdx >= 0 ? resolve(argv[outIdx + 1] ?? fail('--out needs a directory')) : null;
  const writeRego = !check && outDir === null;

  const opa = findOpa();
  const workDir = mkdtempSync(join(tmpdir(), 'mcpgw-rego-'));
  try {
    const capsPath = join(regoDir, CAPABILITIES_FILE);
    const derived = await deriveCapabilities(opa, workDir);
    const committed = existsSync(capsPath) ? readFileSync(capsPath, 'utf8') : null;
    if (committed !== derived.text) {
      if (!writeRego) fail(`rego/${CAPABILITIES_FILE} is stale: run node scripts/build-rego.mjs`);
      writeFileSync(capsPath, derived.text);
      process.stdout.write(
        `wrote rego/${CAPABILITIES_FILE} (host builtins left out: ${derived.excluded.join(', ')})\n`,
      );
    }

    const sources = regoSources(regoDir);
    if (sources.length === 0) fail('no .rego sources in rego/');
    const wasm = opaBuildWasm(opa, regoDir, sources, ENTRYPOINTS, capsPath, workDir);
    await smokeTest(wasm);

    const manifest = {
      entrypoints: ENTRYPOINTS,
      sources,
      sourcesSha256: sourcesSha256(regoDir),
      opaVersion: opaVersion(opa),
      wasmSha256: sha256Hex(wasm),
    };
    const manifestText = await prettyJson(manifest, join(regoDir, MANIFEST_FILE));

    if (check) {
      const same =
        existsSync(join(regoDir, WASM_FILE)) &&
        readFileSync(join(regoDir, WASM_FILE)).equals(wasm) &&
        existsSync(join(regoDir, MANIFEST_FILE)) &&
        readFileSync(join(regoDir, MANIFEST_FILE), 'utf8') === manifestText;
      if (!same) fail('rego/policy.wasm or rego/policy.wasm.json is stale: run node scripts/build-rego.mjs');
      process.stdout.write('rego/ is up to date\n');
      return;
    }
    const dest = outDir ?? regoDir;
    mkdirSync(dest, { recursive: true });
    writeFileSync(join(dest, WASM_FILE), wasm);
    writeFileSync(join(dest, MANIFEST_FILE), manifestText);
    process.stdout.write(`wrote ${join(dest, WASM_FILE)} (${wasm.length} bytes, sha256 ${manifest.wasmSha256})\n`);
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}

await main();
