import type { Knex } from 'knex'
import type { Model } from 'objection'

/** The query-context key under which a scope travels with every query, eager child queries included. @internal */
export const SCOPE_KEY = '@wincloud/data:scope'

/** The part of an objection query builder a scope narrows. @internal */
export interface ScopedQueryBuilder {
  modelClass(): unknown
  tableRefFor(modelClass: never): string
  isInsert(): boolean
  isUpdate(): boolean
  isDelete(): boolean
}

/**
 * What the models' hooks and query builder ask of the scope a query runs in. The models declare it; access/
 * implements it (the scope carries its enforcement), so models import no enforcement.
 *
 * @internal
 */
export interface ScopeEnforcement {
  /** Checks (and completes: an omitted owner) a model about to be inserted or updated in the scope. */
  checkWrite(scope: ScopePort, model: Model & Record<string, unknown>, action: 'create' | 'update'): void
  /** Narrows the knex query objection built to the scope, and compiles a write with its audit rows. */
  narrow(scope: ScopePort, builder: ScopedQueryBuilder, knexBuilder: Knex.QueryBuilder): void
  /** Whatever a write of the model needs before it is compiled (its audit shape, read once). */
  prepareWrite(scope: ScopePort, modelClass: typeof Model, knex: Knex): Promise<void>
}

/** A scope as a query carries it in its context. @internal */
export interface ScopePort {
  /**
   * With row-level security: the statements that make a transaction scoped (after BEGIN). Undefined without RLS
   * and for system scopes.
   */
  readonly rlsSql: string | undefined
  /** True when the queries run in a transaction that already carries the scope's settings. */
  readonly inTransaction: boolean
  /**
   * A write to `table` has settled: outside a transaction it committed (or failed after committing chunks), and the
   * cache and read-your-writes learn of it now; inside one, when the outermost transaction ends.
   */
  readonly wrote?: ((table: string) => void) | undefined
  readonly enforcement: ScopeEnforcement
}

/** The scope a query context carries, if any. @internal */
export function scopeOf(context: unknown): ScopePort | undefined {
  if (typeof context !== 'object' || context === null) return undefined
  return (context as Record<string, ScopePort | undefined>)[SCOPE_KEY]
}
