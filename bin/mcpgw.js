#!/usr/bin/env node
// An installed package (or the container image) runs the compiled dist/. From a clone, src/ runs
// as JavaScript transpiled once per content of src/ (scripts/source-build.mjs), so only the first
// start after an edit pays for the transpile; tsx's loader is the fallback when that cannot be
// built, and MCPGW_TSX=1 asks for it.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const source = new URL('../src/cli/main.ts', import.meta.url);
if (!existsSync(source)) {
  await import(new URL('../dist/cli/main.js', import.meta.url).href);
} else {
  let built = null;
  if (process.env.MCPGW_TSX !== '1') {
    try {
      const { sourceBuild } = await import('../scripts/source-build.mjs');
      built = await sourceBuild(fileURLToPath(new URL('..', import.meta.url)));
    } catch (err) {
      process.stderr.write(`mcpgw: running src/ through tsx: no build (${err instanceof Error ? err.message : err})\n`);
    }
  }
  if (built) {
    // Stack traces name the .ts files and lines, as under tsx.
    process.setSourceMapsEnabled(true);
    await import(pathToFileURL(join(built.dir, 'cli', 'main.js')).href);
  } else {
    const { register } = await import('tsx/esm/api');
    register();
    await import(source.href);
  }
}
