/**
 * The redactor the gateway uses: rebuilt from the store whenever the set of secrets changes (a
 * NOTIFY from any replica for builtin, polling for Vault, or an explicit `refresh()` after the
 * admin API wrote a value).
 *
 * Values that were replaced or deleted stay redacted until the process exits: a backend spawned
 * before the change still holds the old value in its environment and may print it, and a rotated
 * token may still be valid for a while. Values the gateway injects are added the moment it reads
 * them (`noteInjected`), so there is no window in which a backend knows a value the redactor does
 * not.
 */
import { Redactor, type RedactorOptions, type SecretEntry } from './redact.js';
import type { SecretStore } from './types.js';

export interface LiveRedactorOptions extends RedactorOptions {
  /** Names, services and error messages only; never values. */
  log?: (msg: string, err?: unknown) => void;
}

export class LiveRedactor {
  #current: Redactor = Redactor.EMPTY;
  /** Every value seen in this process, by value; the entry names its label. */
  readonly #known = new Map<string, SecretEntry>();
  readonly #store: SecretStore;
  readonly #opts: LiveRedactorOptions;
  #unwatch: (() => Promise<void>) | null = null;
  #refreshing: Promise<void> | null = null;
  #again = false;

  private constructor(store: SecretStore, opts: LiveRedactorOptions) {
    this.#store = store;
    this.#opts = opts;
  }

  /** Loads every secret (failing if the store cannot be read: serving without redaction is worse). */
  static async start(store: SecretStore, opts: LiveRedactorOptions = {}): Promise<LiveRedactor> {
    const live = new LiveRedactor(store, opts);
    live.#unwatch = await store.watch(() => {
      live.refresh().catch((err: unknown) => {
        live.#opts.log?.(
          'could not reload secrets for redaction; the previous set (still complete) stays in force',
          err,
        );
      });
    });
    await live.refresh();
    return live;
  }

  get current(): Redactor {
    return this.#current;
  }

  /** Re-reads the store; concurrent calls share one reload, and a call during a reload queues one more. */
  refresh(): Promise<void> {
    if (this.#refreshing) {
      this.#again = true;
      return this.#refreshing;
    }
    this.#refreshing = (async () => {
      try {
        do {
          this.#again = false;
          await this.#load();
        } while (this.#again);
      } finally {
        this.#refreshing = null;
      }
    })();
    return this.#refreshing;
  }

  async #load(): Promise<void> {
    const listing = await this.#store.list();
    const services = [...new Set(listing.filter((l) => l.stored).map((l) => l.service))];
    const fresh: SecretEntry[] = [];
    for (const service of services) {
      const values = await this.#store.valuesFor(service);
      for (const [name, value] of Object.entries(values)) fresh.push({ service, name, value });
    }
    this.#include(fresh);
  }

  /** Call with what is about to be injected into `service`, before the backend gets it. */
  noteInjected(service: string, values: Readonly<Record<string, string>>): void {
    this.#include(Object.entries(values).map(([name, value]) => ({ service, name, value })));
  }

  #include(entries: SecretEntry[]): void {
    let added = false;
    for (const e of entries) {
      const had = this.#known.get(e.value);
      // A value stored under a new name is labelled with the newest one.
      if (!had || had.name !== e.name || had.service !== e.service) {
        this.#known.set(e.value, e);
        added = true;
      }
    }
    if (!added) return;
    const { log: _log, ...redactorOpts } = this.#opts;
    this.#current = new Redactor(this.#known.values(), redactorOpts);
  }

  async close(): Promise<void> {
    const u = this.#unwatch;
    this.#unwatch = null;
    if (u) await u();
  }
}
