/** Config variants and broken copies shared by the strict-decode and `envoy --mode validate` suites. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EnvoyConfigOptions } from '../../src/front/envoy-config.js';
import { REPO_ROOT } from './bootstrap-schema.js';

export const COMMITTED_CONFIG = join(REPO_ROOT, 'envoy/envoy.yaml');

export function readCommittedConfig(): string {
  return readFileSync(COMMITTED_CONFIG, 'utf8');
}

export const VARIANTS: Record<string, EnvoyConfigOptions> = {
  container: { listen: { host: '0.0.0.0', port: 8000 } },
  'unix sockets and admin': {
    authz: { path: '/run/mcpgw/authz.sock' },
    gateway: { path: '/run/mcpgw/gateway.sock' },
    adminPort: 9901,
  },
  'service names (DNS)': { authz: { host: 'mcpgw-authz', port: 9191 }, gateway: { host: 'localhost', port: 3000 } },
  'larger body, longer timeout': { maxRequestBytes: 4 * 1024 * 1024, authzTimeoutMs: 2500 },
};

/**
 * One misspelling per level of the document: bootstrap, a listener's HCM (inside an Any), the
 * ext_authz filter (an Any in a list), a per-route Any in a map, a cluster's protocol options
 * (an Any in a map), an enum name, and a field only Envoy 1.40 has (NEWER_FIELDS).
 */
export const MISSPELLINGS: readonly { where: string; from: RegExp; to: string; bad: string }[] = [
  { where: 'bootstrap', from: /^layered_runtime:/m, to: 'layered_runtimes:', bad: 'layered_runtimes' },
  { where: 'HttpConnectionManager', from: /merge_slashes: true/, to: 'merge_slash: true', bad: 'merge_slash' },
  {
    where: 'ExtAuthz',
    from: /failure_mode_allow: false/,
    to: 'failure_mode_allowed: false',
    bad: 'failure_mode_allowed',
  },
  {
    where: 'ExtAuthz (Envoy 1.40 field)',
    from: /emit_filter_state_stats: true/,
    to: 'emit_filter_stats: true',
    bad: 'emit_filter_stats',
  },
  {
    where: 'ExtAuthzPerRoute.check_settings',
    from: /disable_request_body_buffering: true/,
    to: 'disable_body_buffering: true',
    bad: 'disable_body_buffering',
  },
  { where: 'HttpProtocolOptions', from: /http2_protocol_options:/, to: 'http2_options:', bad: 'http2_options' },
  {
    where: 'enum value',
    from: /path_with_escaped_slashes_action: REJECT_REQUEST/,
    to: 'path_with_escaped_slashes_action: REJECT',
    bad: 'REJECT',
  },
];

export function misspell(config: string, m: { from: RegExp; to: string }): string {
  if (!m.from.test(config)) throw new Error(`fixture: ${String(m.from)} not found in the config`);
  return config.replace(m.from, m.to);
}
