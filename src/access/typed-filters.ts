import type { LikePattern, UntypedFilter } from './filter-types.js'

// Filters and sorts typed from a model's own static declarations (`filterable`, `sortable`, `encrypted`, declared
// `as const`) and its instance fields (for nullability): no second declaration to keep in step. A model whose
// declarations are plain records (or `Filter` without a model) gets the untyped form, checked at run time only.

/** What the types read from a model class. */
interface ModelStatics {
  readonly filterable?: unknown
  readonly sortable?: unknown
  readonly encrypted?: unknown
  readonly prototype: unknown
}

/** The model's `filterable` declaration, or never. */
type FilterableOf<C> = C extends { readonly filterable?: infer F } ? Exclude<F, undefined> : never
/** The model's `sortable` declaration, or never. */
type SortableOf<C> = C extends { readonly sortable?: infer S } ? Exclude<S, undefined> : never
/** The model's `encrypted` declaration, or never. */
type EncryptedOf<C> = C extends { readonly encrypted?: infer E } ? Exclude<E, undefined> : never

/** Whether a declaration is a plain record (any name): then the types cannot say more than the run time does. */
type IsUntyped<T> = [T] extends [never] ? true : string extends keyof T ? true : false

/** The value type of a column type. */
type ValueOf<T> = T extends 'integer'
  ? number
  : T extends 'boolean'
    ? boolean
    : T extends 'timestamp'
      ? Date | string
      : T extends { readonly enum: readonly (infer E)[] }
        ? E
        : string

interface Equality<V> {
  eq?: V
  /** Not equal; rows whose value is NULL match. */
  ne?: V
}
interface Lists<V> {
  in?: readonly V[]
  /** Not in the list; rows whose value is NULL match. */
  notIn?: readonly V[]
}
interface Ranges<V> {
  lt?: V
  lte?: V
  gt?: V
  gte?: V
  between?: readonly [V, V]
}
interface Patterns {
  like?: LikePattern
  ilike?: LikePattern
}

/** The operators of a column type, as the filter compiler allows them. */
type OperatorsOf<T, V> = T extends 'string'
  ? Equality<V> & Lists<V> & Ranges<V> & Patterns
  : T extends 'integer' | 'timestamp'
    ? Equality<V> & Lists<V> & Ranges<V>
    : T extends 'boolean'
      ? Equality<V>
      : Equality<V> & Lists<V>

/** Whether the model's instance field can hold null (a field the instance does not declare counts as nullable). */
type NullableIn<C extends ModelStatics, K> = K extends keyof C['prototype']
  ? null extends C['prototype'][K]
    ? true
    : false
  : true

/**
 * What one filterable property of type `T` takes: a value (equality), the operators of its type, and `null` or
 * `isNull` only when it is nullable.
 *
 * @example
 * ```ts
 * const recent: FilterCondition<'timestamp', false> = { gte: '2026-01-01T00:00:00Z', lt: new Date() }
 * ```
 */
export type FilterCondition<T, Nullable extends boolean> =
  | ValueOf<T>
  | (OperatorsOf<T, ValueOf<T>> & (Nullable extends true ? { isNull?: boolean } : unknown))
  | (Nullable extends true ? null : never)

/**
 * The encrypted properties with a blind index: those can be filtered by equality. None when `encrypted` is not
 * declared `as const` (a plain record says nothing about which properties have one).
 */
type BlindIndexed<C> =
  IsUntyped<EncryptedOf<C>> extends true
    ? never
    : {
        [K in keyof EncryptedOf<C>]: EncryptedOf<C>[K] extends { readonly blindIndex: infer B }
          ? [Exclude<B, undefined | false>] extends [never]
            ? never
            : K
          : never
      }[keyof EncryptedOf<C>]

/** A filter of a model whose declarations are typed. */
// A property whose value is undefined is skipped (an absent query parameter filters nothing): `| undefined` keeps
// that open to hosts compiled with exactOptionalPropertyTypes.
type TypedFilter<C extends ModelStatics> = object & {
  [K in keyof FilterableOf<C>]?: FilterCondition<FilterableOf<C>[K], NullableIn<C, K>> | undefined
} & {
  [K in BlindIndexed<C>]?: string | { eq: string } | (NullableIn<C, K> extends true ? null : never) | undefined
} & {
  and?: readonly Filter<C>[]
  or?: readonly Filter<C>[]
  not?: Filter<C>
}

/**
 * A filter of the model class `C`: properties with a value (equality), `null` (is null) or operators, combined with
 * `and`, `or` and `not`. With the model's `filterable` (and `encrypted`) declared `as const`, only its filterable
 * properties may appear, each with its own value type and only the operators that fit it (no `ilike` on a number,
 * no `gt` on a boolean, `null` only where the field is nullable, equality only on an encrypted property with a blind
 * index); without a model, or with declarations typed as plain records, any name is accepted here and checked at run
 * time.
 *
 * @example
 * ```ts
 * const filter: Filter<typeof Droplet> = {
 *   status: { in: ['active', 'building'] },
 *   or: [{ name: { ilike: { startsWith: 'web' } } }, { region: 'nyc3' }],
 *   not: { ipAddress: null },
 * }
 * ```
 */
export type Filter<C extends ModelStatics = { readonly prototype: unknown }> =
  IsUntyped<FilterableOf<C>> extends true ? UntypedFilter : TypedFilter<C>

/**
 * A sort key of the model class `C`: one of its `sortable` properties, `-` in front for descending. Any string when
 * `sortable` is not declared `as const`.
 *
 * @example
 * ```ts
 * const sort: readonly SortKey<typeof Droplet>[] = ['-createdAt', 'name']
 * ```
 */
export type SortKey<C extends ModelStatics = { readonly prototype: unknown }> =
  IsUntyped<SortableOf<C>> extends true
    ? string
    : SortableOf<C> extends readonly (infer S extends string)[]
      ? S | `-${S}`
      : string
