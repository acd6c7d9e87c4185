import { quoteIdentifier } from '../internal/identifiers.js'
import { cachedStatement } from '../internal/statement-cache.js'
import { displayKey } from '../internal/text.js'
import { isUuid } from '../internal/uuid.js'
import type { Knex } from 'knex'
import type { PartialModelObject } from 'objection'
import { NotFoundError, ValidationError } from '../errors/index.js'
import type { BaseModel } from '../models/base-model.js'
import { SCOPE_KEY } from '../models/scope-port.js'
import type { BulkOptions, BulkResult } from '../bulk/bulk.js'
import type { CursorCodec } from '../pagination/cursor-codec.js'
import { keysetPage } from '../pagination/keyset-page.js'
import { offsetPage } from '../pagination/offset-page.js'
import type { KeysetPage, KeysetPageRequest, OffsetPage, OffsetPageRequest } from '../pagination/page.js'
import { checkSize } from '../pagination/requests.js'
import type { CompiledSort, PageSource } from '../pagination/source.js'
import { bulkCreate, bulkUpdateByFilter, bulkUpdateByIds, bulkUpdateEach, bulkUpdateStream } from './bulk-writes.js'
import type { ScopeContext } from './enforce.js'
import type { Filter, FilterWalk, SortKey, UntypedFilter } from './filter-compiler.js'
import { compileSort, modelAccess, type ModelAccess } from './model-access.js'
import { StatementRunner } from './statement-runner.js'
import { requireAccess, rowScope, whereClause, type RowScope } from './row-scope.js'
import {
  deleteStatement,
  insertColumns,
  insertStatement,
  patchColumns,
  shapeOf,
  updateStatementHead,
  type WriteTarget,
} from './writes.js'

/** What the list and filter types read from a model class: its static declarations and its instances. */
type ModelClassLike = { readonly prototype: unknown }

/**
 * Options of {@link ScopedRepository.list}, for the model class `C` (typed by its declarations, see {@link Filter}).
 *
 * @example
 * ```ts
 * const options: ListOptions<typeof Droplet> = { filter: { status: 'active' }, sort: ['-createdAt'], limit: 20 }
 * ```
 */
export interface ListOptions<C extends ModelClassLike = ModelClassLike> {
  /** Which rows, on the model's `filterable` properties. ANDed with the scope: it can never widen it. */
  readonly filter?: Filter<C>
  /** Properties from the model's `sortable`, `-` for descending. The id is always the last tie-breaker. */
  readonly sort?: readonly SortKey<C>[]
  /** How many rows, 1 to 100. Default 20. Not with `page`. */
  readonly limit?: number
  /** A page by number (`{ number, size }`) or by cursor (`{ size, after }` / `{ size, before }`). */
  readonly page?: OffsetPageRequest | KeysetPageRequest
}

/**
 * One model's rows as one scope may see and change them. Rows outside the scope do not exist for it: reads
 * miss them, and updates and deletes of them are {@link NotFoundError}s, so existence does not leak.
 *
 * @example
 * ```ts
 * const droplets = scope.repo(Droplet)
 * const mine = await droplets.list({ filter: { status: { in: ['active', 'building'] } }, sort: ['-createdAt'] })
 * const one = await droplets.getById(req.params.id) // NotFoundError when missing or someone else's
 * await droplets.update(one.id, { status: 'stopped' })
 * ```
 */
export interface ScopedRepository<M extends BaseModel, C extends ModelClassLike = ModelClassLike> {
  /** The row, or undefined when it does not exist or is outside the scope. */
  findById(id: string): Promise<M | undefined>
  /** The row, or a {@link NotFoundError} when it does not exist or is outside the scope. */
  getById(id: string): Promise<M>
  /** One page of rows by number: items, total (own rows: counted; whole table: estimated unless asked), pages. */
  list(options: ListOptions<C> & { readonly page: OffsetPageRequest }): Promise<OffsetPage<M>>
  /** One page of rows after or before a cursor: items and signed cursors to go on. */
  list(options: ListOptions<C> & { readonly page: KeysetPageRequest }): Promise<KeysetPage<M>>
  /** Rows matching the filter within the scope, sorted and limited. */
  list(options?: ListOptions<C>): Promise<M[]>
  /** How many rows match the filter within the scope. */
  count(filter?: Filter<C>): Promise<number>
  /** Inserts a row. A scope with `own` create access always owns it; only `all` may set another owner. */
  create(data: PartialModelObject<M>): Promise<M>
  /** Patches a row in the scope and returns it; NotFoundError outside the scope. */
  update(id: string, patch: PartialModelObject<M>): Promise<M>
  /** Deletes a row in the scope; NotFoundError outside the scope. */
  delete(id: string): Promise<void>
  /**
   * One patch for many rows by id: `{ updated, notFound }` (ids outside the scope are not found and untouched).
   * One statement per chunk; rows locked in id order; all chunks in one transaction unless `transaction: 'chunk'`.
   */
  bulkUpdate(ids: readonly string[], patch: PartialModelObject<M>, options?: BulkOptions): Promise<BulkResult>
  /**
   * One patch for ids that arrive as a stream (async iterable): chunk by chunk, each committed before the next is
   * read, so memory stays flat; returns counts.
   */
  bulkUpdate(
    ids: AsyncIterable<string>,
    patch: PartialModelObject<M>,
    options?: BulkOptions,
  ): Promise<{ updated: number; notFound: number }>
  /** One patch for every row in the scope matching a filter: how many rows changed. */
  bulkUpdate(
    selector: { readonly filter: Filter<C> },
    patch: PartialModelObject<M>,
    options?: BulkOptions,
  ): Promise<{ updated: number }>
  /** A different patch per row, `[{ id, ...fields }]`: one statement per chunk and shape. */
  bulkUpdateEach(rows: readonly ({ id: string } & PartialModelObject<M>)[], options?: BulkOptions): Promise<BulkResult>
  /** Inserts many rows, each checked like `create`; returns them. */
  bulkCreate(rows: readonly PartialModelObject<M>[], options?: BulkOptions): Promise<M[]>
  /**
   * An objection query builder already narrowed to the scope for whatever it does (select, patch, delete;
   * related rows fetched with `withGraphFetched` get their own model's policy). Joins, unions and CTEs are
   * refused for scopes limited to their own rows.
   */
  query(): M['QueryBuilderType']
}

function checkListOptions(options: unknown): ListOptions {
  if (options === undefined) return {}
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new ValidationError('List options must be an object.', [{ field: 'options', message: 'must be an object' }])
  }
  for (const key of Object.keys(options)) {
    if (key !== 'filter' && key !== 'sort' && key !== 'limit' && key !== 'page') {
      const field = displayKey(key)
      throw new ValidationError(`Unknown list option ${field}.`, [{ field, message: 'is not a list option' }])
    }
  }
  return options
}

/**
 * A scoped repository: it composes. The row scope (row-scope.ts) says which rows, the filter and sort compilers add
 * the caller's conditions and order, pagination/ takes the pages, bulk-writes.ts and writes.ts build the audited
 * writes, and the statement runner runs it all where the scope's statements go.
 *
 * @internal
 */
export class Repository<M extends BaseModel> implements ScopedRepository<M> {
  readonly #model: typeof BaseModel
  readonly #access: ModelAccess
  readonly #context: ScopeContext
  readonly #runner: Knex | Knex.Transaction
  readonly #cursors: CursorCodec
  readonly #statements: StatementRunner

  constructor(model: typeof BaseModel, context: ScopeContext, runner: Knex | Knex.Transaction, cursors: CursorCodec) {
    this.#model = model
    this.#cursors = cursors
    this.#access = modelAccess(model)
    this.#context = context
    this.#runner = runner
    this.#statements = new StatementRunner(context, runner, model.tableName)
  }

  /** Runs a write (on the primary), or with `reader` a read there, and makes models of the rows. */
  async #rows(sql: string, bindings: readonly unknown[], reader?: Knex | Knex.Transaction): Promise<M[]> {
    const statements = this.#statements
    const result =
      reader === undefined
        ? await statements.run<Record<string, unknown>>(sql, bindings)
        : await statements.read<Record<string, unknown>>(sql, bindings, reader)
    const model = this.#model
    return result.rows.map((row) => model.fromDatabaseJson(row) as M)
  }

  async findById(id: string): Promise<M | undefined> {
    const scope = rowScope(this.#context, this.#model, 'read')
    if (!isUuid(id)) return undefined
    const a = this.#access
    const sql = cachedStatement(
      a,
      `byId|${scope.level}`,
      () => `select ${a.tableSql}.* from ${a.tableSql}${whereClause(scope.sql, `${a.idSql} = ?`)} limit 1`,
    )
    const statements = this.#statements
    const reader = statements.reader()
    const load = async (): Promise<{ value: Record<string, unknown> | null; cacheable: boolean }> => {
      const result = await statements.read<Record<string, unknown>>(sql, [...scope.bindings, id], reader)
      return { value: result.rows[0] ?? null, cacheable: statements.isPrimary(reader) }
    }
    const cached = statements.cached()
    const row = cached === undefined ? (await load()).value : await cached('row', [id.toLowerCase()], load)
    return row === null ? undefined : (this.#model.fromDatabaseJson(row) as M)
  }

  async getById(id: string): Promise<M> {
    const row = await this.findById(id)
    if (row === undefined) throw new NotFoundError(this.#access.name, typeof id === 'string' ? id : undefined)
    return row
  }

  list(options: ListOptions & { readonly page: OffsetPageRequest }): Promise<OffsetPage<M>>
  list(options: ListOptions & { readonly page: KeysetPageRequest }): Promise<KeysetPage<M>>
  list(options?: ListOptions): Promise<M[]>
  async list(options?: ListOptions): Promise<M[] | OffsetPage<M> | KeysetPage<M>> {
    const { filter, sort, limit, page } = checkListOptions(options)
    const scope = rowScope(this.#context, this.#model, 'read')
    const a = this.#access
    const walked = a.filters.walk(filter)
    const order = compileSort(a, sort)
    if (page !== undefined) {
      if (limit !== undefined) {
        throw new ValidationError('Use page.size, not limit, with page.', [
          { field: 'limit', message: 'not with page' },
        ])
      }
      const source = this.#source(scope, walked, order)
      if (typeof page === 'object' && page !== null && 'number' in page) {
        return offsetPage(source, page, {
          estimateAllowed: scope.level === 'all',
          count: () => this.#count(scope, walked, source.reader()),
        })
      }
      const context = this.#context
      return keysetPage(source, page, this.#cursors, {
        model: a.name,
        sort: order.key,
        filter: `${walked.shape}|${JSON.stringify(walked.bindings)}`,
        actor: `${context.role}:${context.actorId ?? ''}`,
      })
    }
    const rowLimit = checkSize(limit, 'limit')
    const sql = cachedStatement(a, `list|${scope.level}|${walked.shape}|${order.key}`, () => {
      const where = whereClause(scope.sql, a.filters.sql(walked.shape))
      return `select ${a.tableSql}.* from ${a.tableSql}${where} order by ${order.sql} limit ?`
    })
    return this.#rows(sql, [...scope.bindings, ...walked.bindings, rowLimit], this.#statements.reader())
  }

  /** The scoped, filtered, sorted read a page is taken from. */
  #source(
    scope: RowScope,
    walked: FilterWalk,
    sort: CompiledSort,
  ): PageSource<M> & { reader: () => Knex | Knex.Transaction } {
    const a = this.#access
    const model = this.#model
    const statements = this.#statements
    // Where the page's reads go: chosen at its first statement (after the request is checked), then kept.
    let chosen: Knex | Knex.Transaction | undefined
    const reader = (): Knex | Knex.Transaction => (chosen ??= statements.reader())
    return {
      table: a.tableSql,
      where: whereClause(scope.sql, a.filters.sql(walked.shape)),
      bindings: [...scope.bindings, ...walked.bindings],
      sort,
      reader,
      run: (sql, bindings) => statements.read(sql, bindings, reader()),
      item: (row) => model.fromDatabaseJson(row) as M,
    }
  }

  async count(filter?: UntypedFilter): Promise<number> {
    const scope = rowScope(this.#context, this.#model, 'read')
    return this.#count(scope, this.#access.filters.walk(filter), this.#statements.reader())
  }

  async #count(scope: RowScope, walked: FilterWalk, reader: Knex | Knex.Transaction): Promise<number> {
    const a = this.#access
    const sql = cachedStatement(a, `count|${scope.level}|${walked.shape}`, () => {
      const where = whereClause(scope.sql, a.filters.sql(walked.shape))
      return `select count(*)::int8 as count from ${a.tableSql}${where}`
    })
    const statements = this.#statements
    const load = async (): Promise<{ value: number; cacheable: boolean }> => {
      const result = await statements.read<{ count: string }>(sql, [...scope.bindings, ...walked.bindings], reader)
      return { value: Number(result.rows[0]?.count ?? 0), cacheable: statements.isPrimary(reader) }
    }
    const cached = statements.cached()
    return cached === undefined ? (await load()).value : cached('count', [walked.shape, walked.bindings], load)
  }

  async create(data: PartialModelObject<M>): Promise<M> {
    const level = requireAccess(this.#context, this.#model, 'create')
    if (typeof data !== 'object' || data === null || Array.isArray(data)) {
      throw new ValidationError('create needs one object.', [{ field: 'data', message: 'must be an object' }])
    }
    const owner = this.#access.ownerProperty
    // The actor owns what it creates: fill the owner in before validation asks for it.
    const row =
      level === 'own' && owner !== undefined && (data as Record<string, unknown>)[owner] === undefined
        ? { ...data, [owner]: this.#context.actorId }
        : data
    const target = this.#target()
    const json = insertColumns(target, row)
    const statement = insertStatement(target, await shapeOf(target), [json])
    const rows = await this.#wrote(this.#rows(statement.sql, statement.bindings))
    return rows[0]!
  }

  async update(id: string, patch: PartialModelObject<M>): Promise<M> {
    const scope = rowScope(this.#context, this.#model, 'update')
    if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) {
      throw new ValidationError('update needs a patch object.', [{ field: 'patch', message: 'must be an object' }])
    }
    if (!isUuid(id)) throw new NotFoundError(this.#access.name)
    const target = this.#target()
    const { columns, values } = patchColumns(target, patch, 'single', id.toLowerCase())
    const a = this.#access
    const head = updateStatementHead(target, await shapeOf(target), {
      columns,
      set: columns.map((column) => `${quoteIdentifier(column)} = ?`).join(', '),
      setBindings: values,
      lockedFrom: `from ${a.tableSql}${whereClause(`${a.idSql} = ?`, scope.sql)}`,
      lockedBindings: [id, ...scope.bindings],
      returnAll: true,
    })
    const rows = await this.#wrote(this.#rows(`${head.sql}select * from changed`, head.bindings))
    if (rows.length === 0) throw new NotFoundError(this.#access.name, id)
    return rows[0]!
  }

  async delete(id: string): Promise<void> {
    const scope = rowScope(this.#context, this.#model, 'delete')
    if (!isUuid(id)) throw new NotFoundError(this.#access.name)
    const target = this.#target()
    const statement = deleteStatement(target, await shapeOf(target), id, scope)
    const result = await this.#wrote(this.#statements.run<{ count: number }>(statement.sql, statement.bindings))
    if ((result.rows[0]?.count ?? 0) === 0) throw new NotFoundError(this.#access.name, id)
  }

  bulkUpdate(ids: readonly string[], patch: PartialModelObject<M>, options?: BulkOptions): Promise<BulkResult>
  bulkUpdate(
    ids: AsyncIterable<string>,
    patch: PartialModelObject<M>,
    options?: BulkOptions,
  ): Promise<{ updated: number; notFound: number }>
  bulkUpdate(
    selector: { readonly filter: UntypedFilter },
    patch: PartialModelObject<M>,
    options?: BulkOptions,
  ): Promise<{ updated: number }>
  async bulkUpdate(
    selector: readonly string[] | AsyncIterable<string> | { readonly filter: UntypedFilter },
    patch: PartialModelObject<M>,
    options?: BulkOptions,
  ): Promise<BulkResult | { updated: number } | { updated: number; notFound: number }> {
    // Access first, whatever the selector: a scope without update access learns nothing from checking its input.
    requireAccess(this.#context, this.#model, 'update')
    if (Array.isArray(selector)) return this.#wrote(bulkUpdateByIds(this.#target(), selector, patch, options))
    if (typeof selector === 'object' && selector !== null && Symbol.asyncIterator in selector) {
      return this.#wrote(bulkUpdateStream(this.#target(), selector, patch, options))
    }
    if (
      typeof selector !== 'object' ||
      selector === null ||
      !('filter' in selector) ||
      Object.keys(selector).length !== 1
    ) {
      throw new ValidationError('bulkUpdate needs a list of ids or { filter }.', [
        { field: 'selector', message: 'must be a list of ids or { filter }' },
      ])
    }
    const walked = this.#access.filters.walk((selector as { filter: unknown }).filter)
    return this.#wrote(
      bulkUpdateByFilter(this.#target(), walked, this.#access.filters.sql(walked.shape), patch, options),
    )
  }

  bulkUpdateEach(
    rows: readonly ({ id: string } & PartialModelObject<M>)[],
    options?: BulkOptions,
  ): Promise<BulkResult> {
    return this.#wrote(bulkUpdateEach(this.#target(), rows, options))
  }

  bulkCreate(rows: readonly PartialModelObject<M>[], options?: BulkOptions): Promise<M[]> {
    return this.#wrote(bulkCreate<M>(this.#target(), rows, options))
  }

  /**
   * Tells the cache and the read router, once a write has settled (committed, or failed after some chunks
   * committed), that the table changed and the actor's next reads need it. Inside a transaction the scope passes it
   * on when the outermost transaction ends.
   */
  async #wrote<T>(write: Promise<T>): Promise<T> {
    try {
      return await write
    } finally {
      this.#context.wrote?.(this.#model.tableName)
    }
  }

  #target(): WriteTarget {
    return { model: this.#model, access: this.#access, context: this.#context, runner: this.#runner }
  }

  query(): M['QueryBuilderType'] {
    return this.#model.query(this.#runner).context({ [SCOPE_KEY]: this.#context })
  }
}
