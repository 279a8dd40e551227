/** Profiles: the shipped Gmail profile, resolution from the package, and located errors. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { compilePolicyText } from '../../src/policy/compile.js';
import { listProfiles, loadProfile, PACKAGE_PROFILES_DIR, profileService } from '../../src/policy/profiles.js';
import type { ProfileFile } from '../../src/policy/schema.js';
import { yamlLines } from './helpers.js';

function gmail(): ProfileFile {
  const loaded = loadProfile('@openclaw/security-gmail');
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  return loaded.profile;
}

describe('profiles/gmail.yaml (reference §1.2)', () => {
  const expected: Record<string, [verb: string, readOnly: boolean, destructive: boolean, idempotent: boolean]> = {
    send_email: ['create', false, false, false],
    draft_email: ['create', false, false, false],
    read_email: ['get', true, false, true],
    search_emails: ['list', true, false, true],
    modify_email: ['update', false, false, true],
    delete_email: ['delete', false, true, true],
    download_attachment: ['get', true, false, true],
    batch_modify_emails: ['update', false, false, true],
    batch_delete_emails: ['delete', false, true, true],
    list_email_labels: ['list', true, false, true],
    create_label: ['create', false, false, false],
    update_label: ['update', false, false, true],
    delete_label: ['delete', false, true, true],
    get_or_create_label: ['create', false, false, false],
    list_filters: ['list', true, false, true],
    get_filter: ['get', true, false, true],
    create_filter: ['create', false, false, false],
    create_filter_from_template: ['create', false, false, false],
    delete_filter: ['delete', false, true, true],
  };

  test('the 19 tools, with verb and all four hints stated explicitly', () => {
    const { service, tools } = gmail();
    expect(service).toBe('gmail');
    expect(Object.keys(tools).sort()).toEqual(Object.keys(expected).sort());
    for (const [name, [verb, readOnly, destructive, idempotent]] of Object.entries(expected)) {
      expect(tools[name], name).toMatchObject({
        verb,
        readOnlyHint: readOnly,
        destructiveHint: destructive,
        idempotentHint: idempotent,
        openWorldHint: name === 'send_email',
      });
    }
  });

  test('labels use only the namespaces scope, env, category and data', () => {
    for (const [name, tool] of Object.entries(gmail().tools)) {
      const labels = [...(tool.labels ?? []), ...(tool.classify ?? []).flatMap((c) => c.set_labels)];
      for (const label of labels)
        expect(label.split(':')[0], `${name}: ${label}`).toMatch(/^(scope|env|category|data)$/);
    }
    expect(gmail().tools['send_email']?.labels).toEqual(['category:communication']);
    expect(gmail().tools['download_attachment']?.labels).toContain('data:attachment');
  });

  test('recipient and BCC classifiers, with the tenant placeholder', () => {
    const { tools } = gmail();
    expect(tools['send_email']?.classify).toEqual([
      { field: 'to', contains: '@{company_domain}', set_labels: ['scope:internal'] },
      { field: 'to', not_contains: '@{company_domain}', set_labels: ['scope:external'] },
      { field: 'bcc', present: true, set_labels: ['data:bcc-used'] },
    ]);
    expect(tools['draft_email']?.classify).toEqual([
      { field: 'to', not_contains: '@{company_domain}', set_labels: ['scope:external'] },
    ]);
    const others = Object.entries(tools).filter(([n, t]) => t.classify && !['send_email', 'draft_email'].includes(n));
    expect(others).toEqual([]);
  });
});

describe('resolution', () => {
  const cwd = process.cwd();
  afterEach(() => process.chdir(cwd));

  test('from the package folder, whatever the working directory', () => {
    process.chdir(tmpdir());
    expect(loadProfile('@openclaw/security-gmail').ok).toBe(true);
    expect(PACKAGE_PROFILES_DIR).toMatch(/\/profiles\/$/);
  });

  test('the org is informative: @noumena/security-gmail is the same profile', () => {
    const a = loadProfile('@openclaw/security-gmail');
    const b = loadProfile('@noumena/security-gmail');
    expect(a.ok && b.ok && a.profile).toEqual(b.ok && b.profile);
  });

  test('profileService and listProfiles', () => {
    expect(profileService('@openclaw/security-gmail')).toBe('gmail');
    expect(profileService('@openclaw/security-mock-calendar')).toBe('mock-calendar');
    for (const bad of ['gmail', '@openclaw/gmail', '@OpenClaw/security-gmail', '@x/security-Gmail', '@x/security-']) {
      expect(profileService(bad), bad).toBeNull();
    }
    expect(listProfiles()).toContain('gmail');
    expect(listProfiles('/nonexistent')).toEqual([]);
  });
});

describe('errors', () => {
  function dirWith(files: Record<string, string>): string {
    const dir = mkdtempSync(join(tmpdir(), 'mcpgw-profiles-'));
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    return dir;
  }

  test('a missing profile is reported where the policy references it', () => {
    const text = yamlLines(
      'version: "1.0"',
      'profiles:',
      '  - "@openclaw/security-gmail"',
      '  - "@acme/security-jira"',
    );
    const result = compilePolicyText(text, 'mcp-security.yaml');
    expect(result).toEqual({
      ok: false,
      errors: [
        {
          file: 'mcp-security.yaml',
          line: 4,
          column: 5,
          path: 'profiles[1]',
          message: expect.stringMatching(
            /^profile @acme\/security-jira not found: no jira\.yaml in .*\(available: .*gmail/,
          ),
        },
      ],
    });
  });

  test('an invalid profile is reported inside the profile file', () => {
    const dir = dirWith({ 'jira.yaml': yamlLines('service: jira', 'tools:', '  create_issue:', '    verb: execute') });
    const result = compilePolicyText(yamlLines('version: "1.0"', 'profiles: ["@acme/security-jira"]'), 'p.yaml', {
      profilesDir: dir,
    });
    expect(result).toEqual({
      ok: false,
      errors: [
        expect.objectContaining({ file: join(dir, 'jira.yaml'), line: 4, column: 11, path: 'tools.create_issue.verb' }),
      ],
    });
  });

  test('profiles carry no rules', () => {
    const dir = dirWith({ 'jira.yaml': yamlLines('service: jira', 'tools: {}', 'policies: []') });
    const loaded = loadProfile('@acme/security-jira', { dir });
    expect(loaded.ok || loaded.errors[0]).toMatchObject({
      line: 3,
      path: 'policies',
      message: 'unknown key "policies"',
    });
  });

  test('a profile must describe the service its name says', () => {
    const dir = dirWith({ 'jira.yaml': yamlLines('service: confluence', 'tools: {}') });
    const loaded = loadProfile('@acme/security-jira', { dir });
    expect(loaded.ok || loaded.errors[0]).toMatchObject({
      line: 1,
      column: 10,
      path: 'service',
      message: 'profile @acme/security-jira describes service "confluence", expected "jira"',
    });
  });
});
