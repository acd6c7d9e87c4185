/** One key of a checked sort. @internal */
export interface SortKey {
  readonly sql: string
  readonly descending: boolean
  readonly nullable: boolean
}

/** A checked sort: its SQL (`order by` list, ending in the id), its keys, and a key for caches. @internal */
export interface CompiledSort {
  readonly key: string
  readonly sql: string
  readonly keys: readonly SortKey[]
}

/**
 * The scoped read a page is taken from, compiled by the repository: which table, which rows (the row scope and the
 * filter, already ANDed), in which order, and how to run a statement and make an item of a row. The page functions
 * only add their own clauses (limit and offset, the keyset condition, the count) and never see the scope's rules.
 *
 * @internal
 */
export interface PageSource<Item> {
  /** The quoted table. */
  readonly table: string
  /** ` where …` or `''`. */
  readonly where: string
  /** The bindings of `where`. */
  readonly bindings: readonly unknown[]
  readonly sort: CompiledSort
  /** Runs one read where the repository's reads go (replica or primary, with the scope's settings). */
  run<R>(sql: string, bindings: readonly unknown[]): Promise<{ rows: R[] }>
  /** The item of a row (a model instance). */
  item(row: Record<string, unknown>): Item
}
