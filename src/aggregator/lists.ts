/**
 * Merging what the backends list into the one view an agent gets: names and URIs rewritten into
 * the gateway's namespace (naming.ts), refused names reported, and what Layer 1 denies this user
 * for every argument left out (visibility.ts). Pure functions over plain data.
 */
import {
  NameTable,
  publishedUri,
  publishedUriTemplate,
  type NamingOptions,
  type RefusedName,
  type RefusalReason,
} from './naming.js';
import { isPlainObject, type JsonObject } from './protocol.js';
import {
  promptVisible,
  resourceVisible,
  templateVisible,
  toolVisible,
  type ArgumentReaders,
  type Layer1View,
  type Viewer,
} from './visibility.js';

export interface ServiceList {
  service: string;
  items: readonly JsonObject[];
}

export interface MergeContext {
  naming: NamingOptions;
  engine: Layer1View;
  data: ArgumentReaders;
  viewer: Viewer;
  /** The `tools:` allow-list of a service; undefined offers every tool. */
  allowedTools(service: string): readonly string[] | undefined;
}

export interface Merged {
  items: JsonObject[];
  /** Items no agent can see because their name or URI cannot be published unambiguously. */
  refused: RefusedName[];
}

function byService(lists: readonly ServiceList[]): ServiceList[] {
  return [...lists].sort((a, b) => (a.service < b.service ? -1 : a.service > b.service ? 1 : 0));
}

function refusal(service: string, name: string, reason: RefusalReason, message: string): RefusedName {
  return { service, name, reason, message };
}

/**
 * Every name is checked against every other before anything is filtered per user, so whether a
 * name is refused does not depend on who is asking.
 */
export function mergeTools(lists: readonly ServiceList[], ctx: MergeContext): Merged {
  const table = new NameTable<JsonObject>('tool', ctx.naming);
  const refused: RefusedName[] = [];
  for (const { service, items } of byService(lists)) {
    const allow = ctx.allowedTools(service);
    for (const item of items) {
      const name = item['name'];
      if (typeof name !== 'string') {
        refused.push(refusal(service, String(name), 'invalid_name', `${service}: a tool without a string name`));
        continue;
      }
      if (allow !== undefined && !allow.includes(name)) continue;
      table.add(service, name, item);
    }
  }
  const r = table.result();
  const items = r.accepted
    .filter((e) => toolVisible(ctx.engine, ctx.data, ctx.viewer, e.service, e.name))
    .map((e) => ({ ...e.item, name: e.wire }));
  return { items, refused: [...refused, ...r.refused] };
}

export function mergePrompts(lists: readonly ServiceList[], ctx: MergeContext): Merged {
  const table = new NameTable<JsonObject>('prompt', ctx.naming);
  const refused: RefusedName[] = [];
  for (const { service, items } of byService(lists)) {
    for (const item of items) {
      const name = item['name'];
      if (typeof name !== 'string') {
        refused.push(refusal(service, String(name), 'invalid_name', `${service}: a prompt without a string name`));
        continue;
      }
      table.add(service, name, item);
    }
  }
  const r = table.result();
  const items = r.accepted
    .filter((e) => promptVisible(ctx.engine, ctx.data, ctx.viewer, e.service, e.name))
    .map((e) => ({ ...e.item, name: e.wire }));
  return { items, refused: [...refused, ...r.refused] };
}

export function mergeResources(lists: readonly ServiceList[], ctx: MergeContext): Merged {
  const items: JsonObject[] = [];
  const refused: RefusedName[] = [];
  const seen = new Set<string>();
  for (const { service, items: list } of byService(lists)) {
    for (const item of list) {
      const uri = item['uri'];
      const published = typeof uri === 'string' ? publishedUri(service, uri, ctx.naming) : null;
      if (typeof uri !== 'string' || published === null) {
        refused.push(refusal(service, String(uri), 'invalid_name', `${service}: resource URI cannot be published`));
        continue;
      }
      // The encoding is injective per service (and absent with one service, in no-prefix mode), so a
      // repeat is the backend listing a URI twice.
      if (seen.has(published)) continue;
      seen.add(published);
      if (resourceVisible(ctx.engine, ctx.viewer, service, uri)) items.push({ ...item, uri: published });
    }
  }
  return { items, refused };
}

export function mergeTemplates(lists: readonly ServiceList[], ctx: MergeContext): Merged {
  const items: JsonObject[] = [];
  const refused: RefusedName[] = [];
  for (const { service, items: list } of byService(lists)) {
    for (const item of list) {
      const template = item['uriTemplate'];
      const published = typeof template === 'string' ? publishedUriTemplate(service, template, ctx.naming) : null;
      if (typeof template !== 'string' || published === null) {
        refused.push(
          refusal(
            service,
            String(template),
            'invalid_name',
            `${service}: URI template uses expressions the gateway cannot publish (lists, explode, / ; ? & operators)`,
          ),
        );
        continue;
      }
      if (templateVisible(ctx.engine, ctx.viewer, service, template)) items.push({ ...item, uriTemplate: published });
    }
  }
  return { items, refused };
}

/**
 * The capabilities the gateway declares, from those of the backends it reached. `tools` and the
 * list_changed flags are always declared: the gateway itself announces changes of grants and
 * policy (DESIGN §5), whatever a backend can do.
 */
export function mergeCapabilities(backendCaps: readonly (JsonObject | undefined)[]): JsonObject {
  const has = (k: string) => backendCaps.some((c) => c !== undefined && isPlainObject(c[k]));
  const caps: JsonObject = { tools: { listChanged: true } };
  if (has('resources')) {
    const subscribe = backendCaps.some((c) => {
      const r = c?.['resources'];
      return isPlainObject(r) && r['subscribe'] === true;
    });
    caps['resources'] = subscribe ? { subscribe: true, listChanged: true } : { listChanged: true };
  }
  if (has('prompts')) caps['prompts'] = { listChanged: true };
  if (has('logging')) caps['logging'] = {};
  if (has('completions')) caps['completions'] = {};
  return caps;
}

/** Backend instructions, each under its service's name so the model knows which tools they are about. */
export function mergeInstructions(parts: readonly { service: string; text: string | undefined }[]): string | undefined {
  const kept = parts.filter((p) => typeof p.text === 'string' && p.text.trim() !== '');
  if (kept.length === 0) return undefined;
  return kept.map((p) => `## ${p.service}\n${(p.text ?? '').trim()}`).join('\n\n');
}
