import { BoundedMap } from './bounded-map.js'

/** Compiled statements per owner (a model's access metadata), keyed by their shape. */
const statements = new WeakMap<object, BoundedMap<string, string>>()

/**
 * The SQL of a statement compiled once per owner and shape: `build()` runs on the first call for a key. Each owner's
 * statements are bounded in entries and bytes, oldest out first, so hostile shapes cannot grow memory.
 *
 * @internal
 */
export function cachedStatement(owner: object, key: string, build: () => string): string {
  let byKey = statements.get(owner)
  if (byKey === undefined) {
    byKey = new BoundedMap<string, string>({ maxEntries: 2_000, maxBytes: 2 * 1024 * 1024 })
    statements.set(owner, byKey)
  }
  let sql = byKey.get(key)
  if (sql === undefined) {
    sql = build()
    byKey.set(key, sql)
  }
  return sql
}
