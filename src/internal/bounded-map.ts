/**
 * The bounds and the eviction order of a {@link BoundedMap}.
 *
 * @internal
 */
export interface BoundedMapOptions<K, V> {
  /** At most this many entries. */
  readonly maxEntries: number
  /** At most about this many bytes, keys and values together (with a fixed overhead per entry). */
  readonly maxBytes: number
  /** An entry estimated larger than this is not stored; `maxBytes / 8` by default. */
  readonly maxEntryBytes?: number
  /** `'lru'` (default): `get` makes an entry the newest. `'fifo'`: entries age by insertion only. */
  readonly order?: 'lru' | 'fifo'
  /** The estimated bytes of one entry, without the per-entry overhead; keys and values by length by default. */
  readonly sizeOf?: (key: K, value: V) => number
}

/** The estimated cost of one entry of a Map beyond its key and value: the hash table slot and the record. */
export const ENTRY_OVERHEAD_BYTES = 64

/**
 * About how many bytes a value takes: two per character of a string (an upper bound: V8 stores Latin-1 text in one),
 * eight for a number, a boolean or a bigint of up to 64 bits, the sum of the parts of an array, and a flat 64 for any
 * other object (give the map a `sizeOf` when its values are objects that matter).
 *
 * @internal
 */
export function estimateBytes(value: unknown): number {
  switch (typeof value) {
    case 'string':
      return 16 + 2 * value.length
    case 'number':
    case 'boolean':
      return 8
    case 'bigint':
      return 8 + 8 * Math.ceil(value.toString(16).length / 16)
    case 'undefined':
      return 0
    case 'object':
      if (value === null) return 0
      if (Array.isArray(value)) return 16 + (value as unknown[]).reduce<number>((n, v) => n + 8 + estimateBytes(v), 0)
      return 64
    default:
      return 64
  }
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`BoundedMap: ${name} must be a positive integer.`)
  return value
}

/**
 * A Map with two bounds: how many entries it holds, and about how many bytes they take. Past either bound the oldest
 * entries go, one at a time (never the whole map at once): the least recently used ones by default, or the first
 * inserted ones with `order: 'fifo'`. An entry that alone is larger than `maxEntryBytes` is not kept at all, so one
 * huge value cannot push everything else out.
 *
 * Sizes are estimates, from the lengths of keys and values (see {@link estimateBytes}); they are upper bounds for
 * strings, which is what the library's caches hold.
 *
 * @example
 * ```ts
 * const sqlByShape = new BoundedMap<string, string>({ maxEntries: 1_000, maxBytes: 1024 * 1024 })
 * sqlByShape.set(shape, sql)
 * sqlByShape.get(shape) // the SQL, now the most recently used entry
 * ```
 *
 * Iteration (`keys`, `values`, `entries`) goes from the oldest entry to the newest.
 *
 * @internal
 */
export class BoundedMap<K, V> {
  readonly maxEntries: number
  readonly maxBytes: number
  readonly maxEntryBytes: number
  readonly #lru: boolean
  readonly #sizeOf: (key: K, value: V) => number
  readonly #map = new Map<K, { value: V; bytes: number }>()
  #bytes = 0
  #evictions = 0

  constructor(options: BoundedMapOptions<K, V>) {
    this.maxEntries = positiveInteger(options.maxEntries, 'maxEntries')
    this.maxBytes = positiveInteger(options.maxBytes, 'maxBytes')
    this.maxEntryBytes = Math.min(
      this.maxBytes,
      positiveInteger(options.maxEntryBytes ?? Math.max(1, Math.floor(this.maxBytes / 8)), 'maxEntryBytes'),
    )
    this.#lru = (options.order ?? 'lru') === 'lru'
    this.#sizeOf = options.sizeOf ?? ((key, value) => estimateBytes(key) + estimateBytes(value))
  }

  /** How many entries it holds. */
  get size(): number {
    return this.#map.size
  }

  /** The estimated bytes of its entries, overhead included; never above `maxBytes`. */
  get bytes(): number {
    return this.#bytes
  }

  /** How many entries were dropped to keep within the bounds, since it was made. */
  get evictions(): number {
    return this.#evictions
  }

  /** The value, which (in `'lru'` order) becomes the most recently used entry. */
  get(key: K): V | undefined {
    const entry = this.#map.get(key)
    if (entry === undefined) return undefined
    if (this.#lru) {
      this.#map.delete(key)
      this.#map.set(key, entry)
    }
    return entry.value
  }

  /** The value, leaving the order alone. */
  peek(key: K): V | undefined {
    return this.#map.get(key)?.value
  }

  has(key: K): boolean {
    return this.#map.has(key)
  }

  /**
   * Stores an entry as the newest, dropping the oldest ones until both bounds hold. Returns false (and stores nothing,
   * dropping any old value of the key) when the entry alone is larger than `maxEntryBytes`.
   */
  set(key: K, value: V): boolean {
    this.delete(key)
    const bytes = ENTRY_OVERHEAD_BYTES + Math.max(0, this.#sizeOf(key, value))
    if (!(bytes <= this.maxEntryBytes)) return false
    while (this.#map.size > 0 && (this.#map.size >= this.maxEntries || this.#bytes + bytes > this.maxBytes)) {
      this.#evictOldest()
    }
    this.#map.set(key, { value, bytes })
    this.#bytes += bytes
    return true
  }

  delete(key: K): boolean {
    const entry = this.#map.get(key)
    if (entry === undefined) return false
    this.#map.delete(key)
    this.#bytes -= entry.bytes
    return true
  }

  /** Empties the map (for an explicit reset; the bounds never need it). */
  clear(): void {
    this.#map.clear()
    this.#bytes = 0
  }

  *keys(): IterableIterator<K> {
    yield* this.#map.keys()
  }

  *values(): IterableIterator<V> {
    for (const entry of this.#map.values()) yield entry.value
  }

  *entries(): IterableIterator<[K, V]> {
    for (const [key, entry] of this.#map) yield [key, entry.value]
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries()
  }

  #evictOldest(): void {
    const oldest = this.#map.keys().next()
    if (oldest.done === true) return
    this.delete(oldest.value)
    this.#evictions += 1
  }
}
