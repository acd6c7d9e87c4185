/**
 * The shapes of filters: the public types a caller writes filters in, and the two internal ones the compiler works
 * with (a property as the compiler sees it, and a walked filter).
 */

/**
 * The type of a filterable or sortable property; it decides which operators apply and which values are accepted.
 *
 * @example
 * ```ts
 * static override filterable: Readonly<Record<string, ColumnType>> = {
 *   status: { enum: ['building', 'active'] },
 *   createdAt: 'timestamp',
 * }
 * ```
 */
export type ColumnType =
  'string' | 'uuid' | 'integer' | 'boolean' | 'timestamp' | 'inet' | { readonly enum: readonly string[] }

/**
 * The `like` / `ilike` forms. The text is matched literally: `%` and `_` in it are escaped.
 *
 * @example
 * ```ts
 * const byPrefix: LikePattern = { startsWith: 'web-' }
 * ```
 */
export type LikePattern = { startsWith: string } | { contains: string } | { endsWith: string }

/**
 * The operators of one property. Several operators on one property are ANDed.
 *
 * @example
 * ```ts
 * const recent: FieldOperators = { gte: '2026-01-01T00:00:00Z', lt: new Date() }
 * ```
 */
export interface FieldOperators {
  eq?: FilterValue
  /** Not equal; rows whose value is NULL match. */
  ne?: FilterValue
  in?: readonly FilterValue[]
  /** Not in the list; rows whose value is NULL match. */
  notIn?: readonly FilterValue[]
  lt?: FilterValue
  lte?: FilterValue
  gt?: FilterValue
  gte?: FilterValue
  between?: readonly [FilterValue, FilterValue]
  isNull?: boolean
  like?: LikePattern
  ilike?: LikePattern
}

/**
 * A value in a filter: a string, number, boolean or Date (timestamps as Date or ISO 8601 strings).
 *
 * @example
 * ```ts
 * const since: FilterValue = new Date('2026-01-01')
 * ```
 */
export type FilterValue = string | number | boolean | Date

/**
 * A filter of a model whose declarations the compiler cannot see (`Filter` without a model, or a model whose
 * `filterable` is typed as a plain record): any property name, any operator; the library checks them at run time.
 *
 * @example
 * ```ts
 * const filter: UntypedFilter = {
 *   status: { in: ['active', 'building'] },
 *   or: [{ name: { ilike: { startsWith: 'web' } } }, { region: 'nyc3' }],
 *   not: { ipAddress: null },
 * }
 * ```
 */
export interface UntypedFilter {
  and?: readonly UntypedFilter[]
  or?: readonly UntypedFilter[]
  not?: UntypedFilter
  [property: string]: FilterValue | null | FieldOperators | readonly UntypedFilter[] | UntypedFilter | undefined
}

/** A property as the compiler sees it. @internal */
export interface FilterColumn {
  readonly sql: string
  readonly type: ColumnType
  /**
   * For an encrypted property: its blind index of a value. The column is then the blind-index column, and only
   * equality (and `null`) can be asked.
   */
  readonly lookup?: (value: string) => string | readonly string[]
}

/** The result of walking a filter: a key for its shape, and its values in order. @internal */
export interface FilterWalk {
  readonly shape: string
  readonly bindings: unknown[]
}
