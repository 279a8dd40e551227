// What bin/mcpgw.js runs from a clone: src/ transpiled to JavaScript once per content of src/, so
// a start does not pay for tsx's loader (≈1.5 s per process, twice for `mcpgw up`). Each build
// lives in node_modules/.cache/mcpgw/<key>/, where the key is a hash of every source file's path
// and bytes, the transpile options and esbuild's version: an edit to src/ makes a new key, hence a
// new build on the next start, and a build is never changed once it exists (it is written to a
// temporary directory and renamed into place, so concurrent starts never see half of one).
//
// Files are transpiled one by one with esbuild (the same transform tsx applies), with
// `import.meta.url` set to the URL of the .ts file: the code finds package.json, profiles/, rego/
// and the SQL migrations relative to its own source, and those stay where they are.
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, relative, sep } from 'node:path';
import { pathToFileURL } from 'node:url';

/** Bump when the output of a build changes for the same inputs (options, layout). */
const FORMAT = 'mcpgw-source-build 1';
const TRANSPILED = /\.m?ts$/;
const DECLARATION = /\.d\.m?ts$/;
/** Files an ES module may import besides transpiled ones: copied next to the build output. */
const COPIED = /\.(m?js|cjs|json)$/;
/** Builds kept besides the one in use: other checkouts' states, or a server still running an old one. */
const KEEP_BUILDS = 8;
/** A temporary directory older than this is left over from a build that died. */
const STALE_TMP_MS = 60 * 60 * 1000;
/** tsconfig compilerOptions that change what esbuild emits for a file. */
const EMIT_OPTIONS = [
  'target',
  'useDefineForClassFields',
  'verbatimModuleSyntax',
  'experimentalDecorators',
  'emitDecoratorMetadata',
  'importsNotUsedAsValues',
  'preserveValueImports',
  'alwaysStrict',
  'strict',
];

function walk(dir, out) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    const kind = e.isSymbolicLink() ? statSync(p) : e;
    if (kind.isDirectory()) walk(p, out);
    else if (kind.isFile() && ((TRANSPILED.test(e.name) && !DECLARATION.test(e.name)) || COPIED.test(e.name)))
      out.push(p);
  }
  return out;
}

/** The source files of a build, relative to `srcDir`, sorted ('/'-separated). */
export function sourceFiles(srcDir) {
  return walk(srcDir, [])
    .map((p) => relative(srcDir, p).split(sep).join('/'))
    .sort();
}

/** Every source file's bytes, read once: the key and the build must see the same bytes. */
function readSources(srcDir) {
  return sourceFiles(srcDir).map((rel) => ({ rel, bytes: readFileSync(join(srcDir, rel)) }));
}

function esbuildFrom(root) {
  // esbuild comes with tsx (a dependency of ours); resolved from tsx so npm's layout does not matter.
  const req = createRequire(join(root, 'package.json'));
  return createRequire(req.resolve('tsx/package.json'))('esbuild');
}

function esbuildVersion(root) {
  const req = createRequire(join(root, 'package.json'));
  const fromTsx = createRequire(req.resolve('tsx/package.json'));
  return JSON.parse(readFileSync(fromTsx.resolve('esbuild/package.json'), 'utf8')).version;
}

function emitOptions(root) {
  const { compilerOptions = {} } = JSON.parse(readFileSync(join(root, 'tsconfig.json'), 'utf8'));
  const picked = {};
  for (const k of EMIT_OPTIONS) if (compilerOptions[k] !== undefined) picked[k] = compilerOptions[k];
  return picked;
}

/**
 * The key of the current sources: every file's path and bytes, plus whatever else changes the
 * output. Contents, not mtimes: a checkout or a same-second edit changes what runs. The absolute
 * source directory is part of it because the build names its sources (import.meta.url).
 */
export function sourceKey({ srcDir, sources, esbuildVersion: version, compilerOptions }) {
  const h = createHash('sha256');
  h.update(`${FORMAT}\0esbuild ${version}\0${JSON.stringify(compilerOptions)}\0${srcDir}\0`);
  for (const { rel, bytes } of sources) {
    h.update(`${rel}\0${bytes.length}\0`);
    h.update(bytes);
  }
  return h.digest('hex').slice(0, 32);
}

async function transpileAll(esbuild, srcDir, sources, outDir, compilerOptions) {
  const dirs = new Set(sources.map(({ rel }) => dirname(join(outDir, rel))));
  for (const d of dirs) mkdirSync(d, { recursive: true });
  await Promise.all(
    sources.map(async ({ rel, bytes }) => {
      const file = join(srcDir, ...rel.split('/'));
      if (!TRANSPILED.test(rel)) {
        writeFileSync(join(outDir, rel), bytes);
        return;
      }
      const url = pathToFileURL(file).href;
      const r = await esbuild.transform(bytes.toString('utf8'), {
        loader: 'ts',
        format: 'esm',
        platform: 'node',
        target: 'node20',
        sourcefile: file,
        sourcemap: 'inline',
        sourcesContent: false,
        tsconfigRaw: { compilerOptions },
        define: {
          'import.meta.url': JSON.stringify(url),
          'import.meta.filename': JSON.stringify(file),
          'import.meta.dirname': JSON.stringify(dirname(file)),
        },
        logLevel: 'silent',
      });
      // Anything else under import.meta (resolve) would answer for the build's location.
      const code = r.code.slice(0, r.code.lastIndexOf('//# sourceMappingURL='));
      if (/\bimport\.meta\b/.test(code)) throw new Error(`${rel}: import.meta other than url/filename/dirname`);
      writeFileSync(join(outDir, rel.replace(/ts$/, 'js')), r.code);
    }),
  );
}

function prune(cacheDir, current) {
  let entries;
  try {
    entries = readdirSync(cacheDir, { withFileTypes: true }).filter((e) => e.isDirectory());
  } catch {
    return;
  }
  const now = Date.now();
  const builds = [];
  for (const e of entries) {
    const p = join(cacheDir, e.name);
    let mtime;
    try {
      mtime = statSync(p).mtimeMs;
    } catch {
      continue;
    }
    if (e.name.startsWith('.tmp-')) {
      if (now - mtime > STALE_TMP_MS) rmSync(p, { recursive: true, force: true });
    } else if (e.name !== current) builds.push({ p, mtime });
  }
  builds.sort((a, b) => b.mtime - a.mtime);
  for (const b of builds.slice(KEEP_BUILDS)) rmSync(b.p, { recursive: true, force: true });
}

/**
 * The directory holding the build of `root`/src as it is now (`<dir>/cli/main.js` is the CLI),
 * building it first when no build of these sources exists. Throws when it cannot build (no
 * esbuild, unwritable cache, a syntax error); the caller then runs the sources through tsx.
 */
export async function sourceBuild(root, opts = {}) {
  const srcDir = opts.srcDir ?? join(root, 'src');
  const cacheDir = opts.cacheDir ?? join(root, 'node_modules', '.cache', 'mcpgw');
  const compilerOptions = emitOptions(root);
  const sources = readSources(srcDir);
  const key = sourceKey({ srcDir, sources, esbuildVersion: esbuildVersion(root), compilerOptions });
  const dir = join(cacheDir, key);
  if (touch(dir)) return { dir, key, built: false };
  // One build per key in a process; other processes race through the rename below.
  let pending = inflight.get(dir);
  if (!pending) {
    pending = build(root, srcDir, sources, cacheDir, dir, compilerOptions).finally(() => inflight.delete(dir));
    inflight.set(dir, pending);
  }
  await pending;
  return { dir, key, built: true };
}

/** Whether `dir` exists; its mtime becomes now, as the last use that pruning goes by. */
function touch(dir) {
  const t = new Date();
  try {
    utimesSync(dir, t, t);
    return true;
  } catch (err) {
    if (err.code === 'ENOENT') return false;
    // Someone else's cache we may read but not touch: still a build of these sources.
    return statSync(dir).isDirectory();
  }
}

const inflight = new Map();
let running = 0;

async function build(root, srcDir, sources, cacheDir, dir, compilerOptions) {
  mkdirSync(cacheDir, { recursive: true });
  const tmp = join(
    cacheDir,
    `.tmp-${process.pid}-${createHash('sha256').update(`${Math.random()}`).digest('hex').slice(0, 8)}`,
  );
  const esbuild = esbuildFrom(root);
  running++;
  try {
    await transpileAll(esbuild, srcDir, sources, tmp, compilerOptions);
    try {
      renameSync(tmp, dir);
    } catch (err) {
      // Another start built the same sources first: theirs is as good.
      if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
    }
  } finally {
    // The transform service is a child process (shared by this process's builds): a long-running
    // server must not keep it.
    if (--running === 0) esbuild.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
  prune(cacheDir, basename(dir));
}
