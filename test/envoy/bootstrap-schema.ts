/**
 * Envoy's Bootstrap schema for strict decoding, built at test time with buf from the protos npm
 * ships in @grpc/grpc-js-xds (never the BSR). Building takes well under a second, so no image is
 * committed.
 *
 * That snapshot is older than Envoy 1.40 in two ways, both repaired here and nowhere else:
 *  - its validate.proto lacks `StringRules.ignore_empty`, which its own envoy protos use, so
 *    config/core/v3/protocol.proto does not compile (fixed in a temp copy of validate.proto);
 *  - fields Envoy 1.40 has and the snapshot lacks (NEWER_FIELDS) are added to the descriptors. Each
 *    must be absent from the snapshot (so this list shrinks when grpc-js-xds catches up) and each is
 *    also checked by `envoy --mode validate` in validate.test.ts. The numbers are Envoy 1.40's.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { create, fromBinary, fromJson, type DescMessage, type JsonValue, type Message } from '@bufbuild/protobuf';
import { createFileRegistry, type FileRegistry } from '@bufbuild/protobuf';
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FieldDescriptorProtoSchema,
  FileDescriptorSetSchema,
  type FileDescriptorProto,
} from '@bufbuild/protobuf/wkt';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DEPS = join(REPO_ROOT, 'node_modules/@grpc/grpc-js-xds/deps');

/** The packages of every `@type` the front config uses, besides the bootstrap itself. */
export const PROTO_DIRS = [
  'envoy/config/bootstrap/v3',
  'envoy/extensions/filters/network/http_connection_manager/v3',
  'envoy/extensions/filters/http/ext_authz/v3',
  'envoy/extensions/filters/http/router/v3',
  'envoy/extensions/upstreams/http/v3',
  'envoy/extensions/access_loggers/stream/v3',
  'envoy/extensions/access_loggers/filters/cel/v3',
  'envoy/extensions/resource_monitors/downstream_connections/v3',
] as const;

interface NewerField {
  file: string;
  message: string;
  name: string;
  jsonName: string;
  number: number;
  type: FieldDescriptorProto_Type;
}

export const NEWER_FIELDS: readonly NewerField[] = [
  {
    file: 'envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto',
    message: 'ExtAuthz',
    name: 'emit_filter_state_stats',
    jsonName: 'emitFilterStateStats',
    number: 29,
    type: FieldDescriptorProto_Type.BOOL,
  },
];

function patchValidateProto(src: string): string {
  const rules = /message StringRules \{[\s\S]*?\n\}/.exec(src);
  if (!rules) throw new Error('validate.proto: no StringRules message');
  if (rules[0].includes('ignore_empty')) return src;
  const strict = 'optional bool strict = 25 [default = true];';
  if (!rules[0].includes(strict)) throw new Error('validate.proto: StringRules changed shape');
  return src.replace(strict, `${strict}\n  optional bool ignore_empty = 26;`);
}

function addNewerFields(files: FileDescriptorProto[]): void {
  for (const f of NEWER_FIELDS) {
    const file = files.find((d) => d.name === f.file);
    const message = file?.messageType.find((m) => m.name === f.message);
    if (!message) throw new Error(`${f.file}: no message ${f.message}`);
    if (message.field.some((d) => d.name === f.name || d.number === f.number)) {
      throw new Error(`${f.message}.${f.name} is in the npm protos now: remove it from NEWER_FIELDS`);
    }
    message.field.push(
      create(FieldDescriptorProtoSchema, {
        name: f.name,
        jsonName: f.jsonName,
        number: f.number,
        label: FieldDescriptorProto_Label.OPTIONAL,
        type: f.type,
      }),
    );
  }
}

export interface BootstrapSchema {
  registry: FileRegistry;
  bootstrap: DescMessage;
}

/** Builds the image with buf in a temp dir and loads it (about half a second). */
export function loadBootstrapSchema(): BootstrapSchema {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-bootstrap-'));
  try {
    for (const root of ['envoy-api', 'googleapis', 'xds']) symlinkSync(join(DEPS, root), join(dir, root));
    mkdirSync(join(dir, 'pgv/validate'), { recursive: true });
    const validate = join(dir, 'pgv/validate/validate.proto');
    copyFileSync(join(DEPS, 'protoc-gen-validate/validate/validate.proto'), validate);
    writeFileSync(validate, patchValidateProto(readFileSync(validate, 'utf8')));
    writeFileSync(
      join(dir, 'buf.yaml'),
      'version: v2\nmodules:\n  - path: envoy-api\n  - path: googleapis\n  - path: xds\n  - path: pgv\n',
    );
    const image = join(dir, 'image.binpb');
    const args = ['build', ...PROTO_DIRS.flatMap((p) => ['--path', `envoy-api/${p}`])];
    execFileSync(join(REPO_ROOT, 'node_modules/.bin/buf'), [...args, '--as-file-descriptor-set', '-o', image], {
      cwd: dir,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const set = fromBinary(FileDescriptorSetSchema, readFileSync(image));
    addNewerFields(set.file);
    const registry = createFileRegistry(set);
    const bootstrap = registry.getMessage('envoy.config.bootstrap.v3.Bootstrap');
    if (!bootstrap) throw new Error('no envoy.config.bootstrap.v3.Bootstrap in the image');
    return { registry, bootstrap };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Decodes a parsed config as a Bootstrap with the proto3 JSON rules Envoy applies: unknown fields
 * and unknown enum names throw, and every `typed_config` Any is resolved by its `@type`.
 */
export function decodeBootstrap(schema: BootstrapSchema, config: JsonValue): Message {
  return fromJson(schema.bootstrap, config, { registry: schema.registry, ignoreUnknownFields: false });
}
