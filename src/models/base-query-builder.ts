import type { Knex } from 'knex'
import { QueryBuilder, type Model, type Page } from 'objection'
import { SCOPE_KEY, scopeOf, type ScopePort } from './scope-port.js'
import { toDataError } from '../errors/driver-errors.js'
import { DataError } from '../errors/index.js'

type BuildKnex = (this: unknown, knexBuilder: Knex.QueryBuilder) => Knex.QueryBuilder
const objectionMethods = QueryBuilder.prototype as unknown as Record<
  'execute' | 'resultSize',
  (this: unknown) => Promise<unknown>
>
const objectionExecuteOnBuildKnex = (QueryBuilder.prototype as unknown as { executeOnBuildKnex: BuildKnex })
  .executeOnBuildKnex

/**
 * The query builder of every library model. It behaves exactly like objection's, except that database errors
 * come out as the library's typed errors (`ConflictError`, `ValidationError`, `UnavailableError`) with the
 * driver's error kept as `cause`.
 *
 * @example
 * ```ts
 * const active: Droplet[] = await db.model(Droplet).query().where('status', 'active').orderBy('created_at')
 * ```
 */
export class BaseQueryBuilder<M extends Model, R = M[]> extends QueryBuilder<M, R> {
  declare ArrayQueryBuilderType: BaseQueryBuilder<M, M[]>
  declare SingleQueryBuilderType: BaseQueryBuilder<M, M>
  declare MaybeSingleQueryBuilderType: BaseQueryBuilder<M, M | undefined>
  declare NumberQueryBuilderType: BaseQueryBuilder<M, number>
  declare PageQueryBuilderType: BaseQueryBuilder<M, Page<M>>

  /**
   * objection calls this once per build of a knex query, for root and eager child queries alike: the place where a
   * scope in the query context narrows the query to the rows it may touch.
   *
   * @internal
   */
  executeOnBuildKnex(knexBuilder: Knex.QueryBuilder): Knex.QueryBuilder {
    const built = objectionExecuteOnBuildKnex.call(this, knexBuilder)
    const scope = scopeOf(this.context())
    if (scope !== undefined) scope.enforcement.narrow(scope, this, built)
    return built
  }

  override execute(): Promise<R> {
    return this.#run('execute') as Promise<R>
  }

  // objection runs the count of resultSize() (and of page() and range()) on knex directly, not through execute().
  override resultSize(): Promise<number> {
    return this.#run('resultSize') as Promise<number>
  }

  /**
   * Runs one of objection's executing methods with the library's errors. Under row-level security outside a
   * transaction, it runs inside a transaction that carries the scope's settings (eager child queries included).
   * A scoped write of an audited model (`repo.query().patch(…)`, `.delete()`, `.insert(…)`) is one statement with
   * its audit rows (see access/query-writes.ts); an upsert runs in a transaction (or savepoint) of its own.
   */
  async #run(method: 'execute' | 'resultSize'): Promise<unknown> {
    const scope = scopeOf(this.context())
    try {
      return await this.#runScoped(method, scope)
    } finally {
      // A scoped write has settled: the cache and the actor's next reads need it (read-your-writes).
      if (scope !== undefined && (this.isInsert() || this.isUpdate() || this.isDelete())) {
        scope.wrote?.(this.modelClass().tableName)
      }
    }
  }

  async #runScoped(method: 'execute' | 'resultSize', scope: ScopePort | undefined): Promise<unknown> {
    const objection = objectionMethods[method]
    try {
      if (scope === undefined) return await objection.call(this)
      const write = method === 'execute' && (this.isInsert() || this.isUpdate() || this.isDelete())
      // The write is compiled synchronously into one statement with its audit rows: what it needs is read first.
      if (write) await scope.enforcement.prepareWrite(scope, this.modelClass() as unknown as typeof Model, this.knex())
      // An upsert that meets a row outside the scope fails after its statement ran: it needs a transaction to undo.
      const upsert = write && this.isInsert() && this.has('merge')
      const needsRls = scope.rlsSql !== undefined && !scope.inTransaction
      if (!upsert && !needsRls) return await objection.call(this)
      const rlsSql = needsRls ? scope.rlsSql : undefined
      // In a transaction already, a savepoint; otherwise a transaction that carries the scope's settings.
      return await this.knex().transaction(async (trx) => {
        if (rlsSql !== undefined) await trx.raw(rlsSql)
        const inner = this.clone()
          .transacting(trx)
          .context({ ...(this.context() as object), [SCOPE_KEY]: { ...scope, inTransaction: true } })
        return await objection.call(inner)
      })
    } catch (error) {
      throw unbound(error, this.modelClass().name) ?? toDataError(error)
    }
  }
}

/**
 * objection's error for a query of a model class bound to no knex (`User.query()` on the imported class) as a
 * DataError that says what to do.
 */
function unbound(error: unknown, model: string): DataError | undefined {
  const message = (error as { message?: unknown } | null)?.message
  if (typeof message !== 'string' || !message.startsWith('no database connection available for a query')) return
  return new DataError(
    'DATA_ERROR',
    `${model} is not bound to a database: query it through db.model(${model}).query() (unscoped), or through ` +
      `db.scope(actor).repo(${model}) for a user.`,
    500,
    { cause: error },
  )
}
