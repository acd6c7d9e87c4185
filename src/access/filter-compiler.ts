/**
 * The filter compiler: the one module the rest of the library imports filters from. The parts live beside it: the
 * public types (`filter-types.ts`), the limits and the errors that name a place in a filter (`filter-limits.ts`), the
 * operators and value checks per column type (`filter-values.ts`), the walk (`filter-walk.ts`) and the SQL of a
 * walked shape (`filter-sql.ts`). This module joins them with the cache of compiled SQL.
 */
import { BoundedMap } from '../internal/bounded-map.js'
import { compileShape } from './filter-sql.js'
import type { FilterColumn, FilterWalk } from './filter-types.js'
import { walkFilter } from './filter-walk.js'

export type { ColumnType, FieldOperators, FilterValue, LikePattern, UntypedFilter } from './filter-types.js'
export type { Filter, FilterCondition, SortKey } from './typed-filters.js'
/** @internal */
export type { FilterColumn, FilterWalk } from './filter-types.js'
export { FILTER_LIMITS } from './filter-limits.js'
/** @internal */
export { displayKey } from '../internal/text.js'
/** @internal */
export { checkValue } from './filter-values.js'

/**
 * The bounds of the cache of compiled filter SQL, per model: at most `entries` distinct filter shapes and about `bytes`
 * bytes of shapes and SQL together; past either, the least recently used shapes are dropped (and compiled again when
 * they come back).
 *
 * @internal
 */
export const FILTER_SQL_CACHE = Object.freeze({ entries: 1_000, bytes: 1024 * 1024 })

/**
 * Compiles filters to parameterized SQL for one model. `walk()` checks a filter and extracts its shape and values
 * on every call; `sql()` turns a shape into SQL text once, and the caller caches it by shape. Column names come
 * only from the model's whitelist; every value is a bind parameter.
 *
 * @internal
 */
export class FilterCompiler {
  readonly #columns: ReadonlyMap<string, FilterColumn>
  readonly #sqlByShape = new BoundedMap<string, string>({
    maxEntries: FILTER_SQL_CACHE.entries,
    maxBytes: FILTER_SQL_CACHE.bytes,
  })

  constructor(columns: ReadonlyMap<string, FilterColumn>) {
    this.#columns = columns
  }

  /** Checks a filter; throws a ValidationError for anything not allowed, before any SQL exists. */
  walk(filter: unknown): FilterWalk {
    return walkFilter(this.#columns, filter)
  }

  /** The SQL condition for a shape from {@link walk}, with `?` placeholders; `''` for no filter. */
  sql(shape: string): string {
    if (shape === '') return ''
    let sql = this.#sqlByShape.get(shape)
    if (sql === undefined) {
      sql = compileShape(this.#columns, shape)
      this.#sqlByShape.set(shape, sql)
    }
    return sql
  }

  /** What the compiled-SQL cache holds now: entries and estimated bytes. @internal */
  cacheStats(): { entries: number; bytes: number; maxEntries: number; maxBytes: number } {
    const cache = this.#sqlByShape
    return { entries: cache.size, bytes: cache.bytes, maxEntries: cache.maxEntries, maxBytes: cache.maxBytes }
  }
}
