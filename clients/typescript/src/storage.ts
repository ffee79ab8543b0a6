/** Where the SDK keeps what must outlive a connection (last seen seq per conversation, the
 * outbox). `window.localStorage` fits as it is; `memoryStorage()` keeps things for the life of
 * the process. */
export interface KeyValueStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export function memoryStorage(): KeyValueStorage {
  const values = new Map<string, string>();
  return {
    getItem: (key) => values.get(key) ?? null,
    setItem: (key, value) => {
      values.set(key, value);
    },
  };
}

/** A JSON value kept under one key of a storage. */
export class StoredValue<T> {
  constructor(
    private readonly storage: KeyValueStorage,
    private readonly key: string,
  ) {}

  load(fallback: T): T {
    const text = this.storage.getItem(this.key);
    if (text === null) return fallback;
    try {
      return JSON.parse(text) as T;
    } catch {
      return fallback;
    }
  }

  /** Stores the value; a storage that refuses (full, or disabled) leaves the SDK working from
   * memory: only what must survive a reload is at risk. */
  save(value: T): void {
    try {
      this.storage.setItem(this.key, JSON.stringify(value));
    } catch {
      // Kept in memory; the next save tries again.
    }
  }
}
