#!/usr/bin/env node
// Regenerates src/gen/ from Envoy's protos (npm: @grpc/grpc-js-xds deps/) and proto/ with buf + ts-proto,
// as buf.gen.yaml says. `--out DIR` writes elsewhere (the freshness test generates into a temp dir).
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { parse } from 'yaml';

const template = parse(readFileSync('buf.gen.yaml', 'utf8'));
const i = process.argv.indexOf('--out');
const out = i > 0 ? process.argv[i + 1] : template.plugins[0].out;
for (const p of template.plugins) p.out = out;
rmSync(out, { recursive: true, force: true });
const r = spawnSync('npx', ['buf', 'generate', '--template', JSON.stringify(template)], { stdio: 'inherit' });
process.exit(r.status ?? 1);
