import { quoteIdentifier } from '../internal/identifiers.js'
import { isStorableText } from '../internal/text.js'
import { BoundedMap } from '../internal/bounded-map.js'
import type { Knex } from 'knex'
import type { ReadConsistency, ReplicaSet } from '../db/replicas.js'
import type { ReadCache } from '../db/cache.js'
import type { Model, PartialModelObject } from 'objection'
import { toDataError } from '../errors/driver-errors.js'
import {
  ForbiddenError,
  InvalidCursorError,
  NotFoundError,
  ValidationError,
  UnavailableError,
} from '../errors/index.js'
import type { BaseModel } from '../models/base-model.js'
import { requireAccess, type ScopeContext } from './enforce.js'
import { SCOPE_ENFORCEMENT } from './enforcement.js'
import { SCOPE_KEY } from '../models/scope-port.js'
import { displayKey, type Filter, type FilterWalk } from './filter-compiler.js'
import { compileSort, modelAccess, type CompiledSort, type ModelAccess } from './model-access.js'
import {
  deleteStatement,
  insertColumns,
  insertStatement,
  patchColumns,
  shapeOf,
  updateStatementHead,
  type WriteTarget,
} from './writes.js'
import type { AuditShape } from '../audit/recorder.js'
import type { CursorCodec } from '../pagination/cursor-codec.js'
import type { BulkOptions, BulkResult } from '../bulk/bulk.js'
import { bulkCreate } from '../bulk/bulk-create.js'
import { bulkUpdateByFilter, bulkUpdateByIds, bulkUpdateEach, bulkUpdateStream } from '../bulk/bulk-update.js'
import { keyColumn, keysetCondition, keysetOrder, keySelect } from '../pagination/keyset.js'
import { chooseOffsetTotal } from '../pagination/offset-total.js'
import {
  PAGE_SIZE,
  type KeysetPage,
  type KeysetPageRequest,
  type OffsetPage,
  type OffsetPageRequest,
} from '../pagination/page.js'
import { scopedTransactionSql } from './row-level-security.js'
import { SYSTEM_ROLE, type Actor, type RolePermissions } from '../models/policy.js'
import { AUDIT_TABLE, auditStamp } from '../audit/recorder.js'
import { recordAuditEvent, type AuditEvent, type ScopeAudit } from '../audit/audit.js'
import { AuditLog } from '../models/audit-log.js'

/**
 * Request metadata that travels with a scope into its audit rows.
 *
 * @example
 * ```ts
 * const scope = db.scope(user, { ip: req.ip, userAgent: req.get('user-agent'), requestId: req.id })
 * ```
 */
export interface RequestMeta {
  readonly ip?: string
  readonly userAgent?: string
  readonly requestId?: string
}

/**
 * Options of {@link ScopedRepository.list}.
 *
 * @example
 * ```ts
 * const options: ListOptions = { filter: { status: 'active' }, sort: ['-createdAt'], limit: 20 }
 * ```
 */
export interface ListOptions {
  /** Which rows, on the model's `filterable` properties. ANDed with the scope: it can never widen it. */
  readonly filter?: Filter
  /** Properties from the model's `sortable`, `-` for descending. The id is always the last tie-breaker. */
  readonly sort?: readonly string[]
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
export interface ScopedRepository<M extends BaseModel> {
  /** The row, or undefined when it does not exist or is outside the scope. */
  findById(id: string): Promise<M | undefined>
  /** The row, or a {@link NotFoundError} when it does not exist or is outside the scope. */
  getById(id: string): Promise<M>
  /** One page of rows by number: items, total (own rows: counted; whole table: estimated unless asked), pages. */
  list(options: ListOptions & { readonly page: OffsetPageRequest }): Promise<OffsetPage<M>>
  /** One page of rows after or before a cursor: items and signed cursors to go on. */
  list(options: ListOptions & { readonly page: KeysetPageRequest }): Promise<KeysetPage<M>>
  /** Rows matching the filter within the scope, sorted and limited. */
  list(options?: ListOptions): Promise<M[]>
  /** How many rows match the filter within the scope. */
  count(filter?: Filter): Promise<number>
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
    selector: { readonly filter: Filter },
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

/** Shared by every scope of one database. @internal */
export interface ScopeEnvironment {
  readonly knex: Knex
  readonly roles: Readonly<Record<string, RolePermissions>>
  /** Whether scoped transactions carry row-level security settings. */
  readonly rls: boolean
  /** Signs and checks pagination cursors. */
  readonly cursors: CursorCodec
  bind<C extends typeof Model>(modelClass: C): C
  /** Read routing over replicas, when the database has any. */
  readonly replicas?: ReplicaSet | undefined
  /** The Redis read cache, when configured. */
  readonly cache?: ReadCache | undefined
}

/**
 * Options of a scope: where its reads go (see {@link ReadConsistency}). Default `'session'` for user scopes,
 * `'primary'` for `db.system()`.
 *
 * @example
 * ```ts
 * const reporting = db.scope(admin, { requestId }, { consistency: 'replica' })
 * ```
 */
export interface ScopeOptions {
  readonly consistency?: ReadConsistency
}

/** The part of a pg client this module uses directly. */
interface PgConnection {
  query(sql: string): Promise<unknown>
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** Compiled statements per model, keyed by their shape: bounded in entries and bytes, least recently used out first. */
const statementCache = new WeakMap<ModelAccess, BoundedMap<string, string>>()

function cachedSql(access: ModelAccess, key: string, build: () => string): string {
  let byKey = statementCache.get(access)
  if (byKey === undefined) {
    byKey = new BoundedMap<string, string>({ maxEntries: 2_000, maxBytes: 2 * 1024 * 1024 })
    statementCache.set(access, byKey)
  }
  let sql = byKey.get(key)
  if (sql === undefined) {
    sql = build()
    byKey.set(key, sql)
  }
  return sql
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

/** A row count (`limit`, `page.size`): 20 by default, 1 to 100. */
function checkSize(size: unknown, field: string): number {
  if (size === undefined) return PAGE_SIZE.default
  if (typeof size !== 'number' || !Number.isInteger(size) || size < 1 || size > PAGE_SIZE.max) {
    throw new ValidationError(`${field} must be an integer from 1 to ${PAGE_SIZE.max}.`, [
      { field, message: `must be an integer from 1 to ${PAGE_SIZE.max}`, keyword: 'range' },
    ])
  }
  return size
}

function checkPageKeys(request: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (typeof request !== 'object' || request === null || Array.isArray(request)) {
    throw new ValidationError('page must be an object.', [{ field: 'page', message: 'must be an object' }])
  }
  for (const key of Object.keys(request)) {
    if (!allowed.includes(key)) {
      const field = `page.${displayKey(key)}`
      throw new ValidationError(`${field} is not a page option.`, [{ field, message: 'is not a page option' }])
    }
  }
  return request as Record<string, unknown>
}

/** The deepest offset a page may ask for; deeper pages should use cursors. */
const MAX_OFFSET = 10_000_000

function checkOffsetRequest(request: unknown): { number: number; size: number; exactTotal: boolean } {
  const page = checkPageKeys(request, ['number', 'size', 'exactTotal'])
  const size = checkSize(page.size, 'page.size')
  const number = page.number
  if (typeof number !== 'number' || !Number.isInteger(number) || number < 1 || (number - 1) * size > MAX_OFFSET) {
    throw new ValidationError('page.number must be a whole number from 1 (and not absurdly deep).', [
      { field: 'page.number', message: `must be an integer from 1 to ${Math.floor(MAX_OFFSET / size) + 1}` },
    ])
  }
  if (page.exactTotal !== undefined && typeof page.exactTotal !== 'boolean') {
    throw new ValidationError('page.exactTotal must be true or false.', [
      { field: 'page.exactTotal', message: 'must be true or false' },
    ])
  }
  return { number, size, exactTotal: page.exactTotal === true }
}

function checkKeysetRequest(request: unknown): { size: number; after?: string; before?: string } {
  const page = checkPageKeys(request, ['size', 'after', 'before'])
  const size = checkSize(page.size, 'page.size')
  if (page.after !== undefined && page.before !== undefined) {
    throw new ValidationError('page takes after or before, not both.', [
      { field: 'page', message: 'takes after or before, not both' },
    ])
  }
  for (const key of ['after', 'before'] as const) {
    if (page[key] !== undefined && typeof page[key] !== 'string') throw new InvalidCursorError()
  }
  return { size, after: page.after as string | undefined, before: page.before as string | undefined }
}

function checkLimit(limit: unknown): number {
  return checkSize(limit, 'limit')
}

class Repository<M extends BaseModel> implements ScopedRepository<M> {
  readonly #model: typeof BaseModel
  readonly #access: ModelAccess
  readonly #context: ScopeContext
  readonly #runner: Knex | Knex.Transaction
  readonly #cursors: CursorCodec

  constructor(model: typeof BaseModel, context: ScopeContext, runner: Knex | Knex.Transaction, cursors: CursorCodec) {
    this.#model = model
    this.#cursors = cursors
    this.#access = modelAccess(model)
    this.#context = context
    this.#runner = runner
  }

  /** The scope condition and its binding for reading, as SQL: `'"droplets"."user_id" = ?'` or `''`. */
  #readScope(): { own: boolean; bindings: unknown[] } {
    const level = requireAccess(this.#context, this.#model, 'read')
    return level === 'own' ? { own: true, bindings: [this.#context.actorId] } : { own: false, bindings: [] }
  }

  /**
   * The scope's read-through cache for this model, when there is one: not inside a transaction (it must see its own
   * uncommitted writes), and not for the audit log (every audited write appends to it).
   */
  #cached():
    | (<T>(
        kind: 'row' | 'count',
        parts: readonly unknown[],
        load: () => Promise<{ value: T; cacheable: boolean }>,
      ) => Promise<T>)
    | undefined {
    const cache = this.#context.cache
    const table = this.#model.tableName
    if (cache === undefined || this.#context.inTransaction || table === AUDIT_TABLE) return undefined
    return (kind, parts, load) => cache.cache.readThrough(kind, table, cache.actor, parts, load)
  }

  /** Where this call's reads go: a replica by the scope's consistency, or the scope's own runner. */
  #reader(): Knex | Knex.Transaction {
    return (this.#context.inTransaction ? undefined : this.#context.reader?.()) ?? this.#runner
  }

  async #rows(sql: string, bindings: readonly unknown[], runner = this.#runner): Promise<M[]> {
    const result = await this.#raw<Record<string, unknown>>(sql, bindings, runner)
    const model = this.#model
    return result.rows.map((row) => model.fromDatabaseJson(row) as M)
  }

  /**
   * Runs one read. With row-level security outside a transaction, it runs in a transaction of its own that opens
   * with one message (BEGIN, the scoped role and the actor settings), then the query, then COMMIT.
   */
  async #raw<R>(sql: string, bindings: readonly unknown[], runner = this.#runner): Promise<{ rows: R[] }> {
    if (runner === this.#runner) return this.#rawOn<R>(runner, sql, bindings)
    try {
      return await this.#rawOn<R>(runner, sql, bindings)
    } catch (error) {
      // A replica that fails on the connection is taken out of rotation, and the read goes to the primary.
      if (!(error instanceof UnavailableError)) throw error
      this.#context.readerFailed?.(runner as Knex, error)
      return this.#rawOn<R>(this.#runner, sql, bindings)
    }
  }

  async #rawOn<R>(runner: Knex | Knex.Transaction, sql: string, bindings: readonly unknown[]): Promise<{ rows: R[] }> {
    const context = this.#context
    try {
      if (context.rlsSql === undefined || context.inTransaction) {
        return await runner.raw<{ rows: R[] }>(sql, bindings as Knex.RawBinding[])
      }
      const knex = runner as Knex
      const client = knex.client as unknown as {
        acquireConnection(): Promise<PgConnection>
        releaseConnection(connection: PgConnection): Promise<void>
      }
      const connection = await client.acquireConnection()
      try {
        // BEGIN, the scoped role and the actor settings go as one simple-protocol message straight on the
        // connection; the query itself goes through knex (its events, its error handling) on the same connection:
        // knex's runner uses a builder's `_connection` when one is set.
        await connection.query(`begin; ${context.rlsSql}`)
        const result = await Object.assign(knex.raw<{ rows: R[] }>(sql, bindings as Knex.RawBinding[]), {
          _connection: connection,
        })
        await connection.query('commit')
        return result
      } catch (error) {
        await connection.query('rollback').catch(() => undefined)
        throw error
      } finally {
        await client.releaseConnection(connection)
      }
    } catch (error) {
      throw toDataError(error)
    }
  }

  async findById(id: string): Promise<M | undefined> {
    const scope = this.#readScope()
    if (typeof id !== 'string' || !UUID.test(id)) return undefined
    const a = this.#access
    const sql = cachedSql(a, `byId|${scope.own}`, () =>
      scope.own
        ? `select ${a.tableSql}.* from ${a.tableSql} where ${a.ownerSql} = ? and ${a.idSql} = ? limit 1`
        : `select ${a.tableSql}.* from ${a.tableSql} where ${a.idSql} = ? limit 1`,
    )
    const reader = this.#reader()
    const load = async (): Promise<{ value: Record<string, unknown> | null; cacheable: boolean }> => {
      const result = await this.#raw<Record<string, unknown>>(sql, [...scope.bindings, id], reader)
      return { value: result.rows[0] ?? null, cacheable: reader === this.#runner }
    }
    const cached = this.#cached()
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
    const scope = this.#readScope()
    const a = this.#access
    const walked = a.filters.walk(filter)
    const order = compileSort(a, sort)
    const conditions = (): string[] =>
      [scope.own ? `${a.ownerSql} = ?` : '', a.filters.sql(walked.shape)].filter((c) => c !== '')
    if (page !== undefined) {
      if (limit !== undefined) {
        throw new ValidationError('Use page.size, not limit, with page.', [
          { field: 'limit', message: 'not with page' },
        ])
      }
      return typeof page === 'object' && page !== null && 'number' in page
        ? this.#offsetPage(page, scope, walked, order, conditions)
        : this.#keysetPage(page, scope, walked, order, conditions)
    }
    const rowLimit = checkLimit(limit)
    const sql = cachedSql(a, `list|${scope.own}|${walked.shape}|${order.key}`, () => {
      const where = conditions()
      return `select ${a.tableSql}.* from ${a.tableSql}${where.length > 0 ? ` where ${where.join(' and ')}` : ''} order by ${order.sql} limit ?`
    })
    return this.#rows(sql, [...scope.bindings, ...walked.bindings, rowLimit], this.#reader())
  }

  async #offsetPage(
    request: unknown,
    scope: { own: boolean; bindings: unknown[] },
    walked: FilterWalk,
    order: CompiledSort,
    conditions: () => string[],
  ): Promise<OffsetPage<M>> {
    const { number, size, exactTotal } = checkOffsetRequest(request)
    const a = this.#access
    const offset = (number - 1) * size
    const sql = cachedSql(a, `offset|${scope.own}|${walked.shape}|${order.key}`, () => {
      const where = conditions()
      return `select ${a.tableSql}.* from ${a.tableSql}${where.length > 0 ? ` where ${where.join(' and ')}` : ''} order by ${order.sql} limit ? offset ?`
    })
    const reader = this.#reader()
    const bindings = [...scope.bindings, ...walked.bindings]
    const rows = await this.#rows(sql, [...bindings, size + 1, offset], reader)
    const hasNextPage = rows.length > size
    const items = rows.slice(0, size)
    const from = (): string => {
      const where = conditions()
      return `from ${a.tableSql}${where.length > 0 ? ` where ${where.join(' and ')}` : ''}`
    }
    // Estimates only for scopes that see the whole table: the planner estimates from statistics over every row, so
    // for a scope limited to its own rows an estimate would tell it about other tenants' rows. Such a scope gets a
    // count of its own rows instead (capped unless it asks for an exact total).
    const { total, totalExact, totalCapped } = await chooseOffsetTotal(
      { offset, shown: items.length, hasNextPage },
      { exactTotal, estimateAllowed: !scope.own },
      {
        count: () => this.#count(scope, walked, reader),
        countUpTo: async (limit) => {
          const countSql = cachedSql(a, `countUpTo|${scope.own}|${walked.shape}`, () => {
            return `select count(*)::int8 as count from (select 1 ${from()} limit ?) as counted`
          })
          const result = await this.#raw<{ count: string }>(countSql, [...bindings, limit], reader)
          return Number(result.rows[0]?.count ?? 0)
        },
        estimate: async () => {
          const estimateSql = cachedSql(a, `estimate|${scope.own}|${walked.shape}`, () => {
            return `explain (format json) select 1 ${from()}`
          })
          const plan = await this.#raw<{ 'QUERY PLAN': [{ Plan: { 'Plan Rows': number } }] }>(
            estimateSql,
            bindings,
            reader,
          )
          return plan.rows[0]?.['QUERY PLAN'][0].Plan['Plan Rows'] ?? 0
        },
      },
    )
    return {
      items,
      page: number,
      size,
      total,
      totalExact,
      totalCapped,
      totalPages: Math.ceil(total / size),
      hasNextPage,
    }
  }

  async #keysetPage(
    request: unknown,
    scope: { own: boolean; bindings: unknown[] },
    walked: FilterWalk,
    order: CompiledSort,
    conditions: () => string[],
  ): Promise<KeysetPage<M>> {
    const { size, after, before } = checkKeysetRequest(request)
    const a = this.#access
    const context = this.#context
    const binding = {
      model: a.name,
      sort: order.key,
      filter: `${walked.shape}|${JSON.stringify(walked.bindings)}`,
      actor: `${context.role}:${context.actorId ?? ''}`,
    }
    const backward = before !== undefined
    const cursor = before ?? after
    const codec = this.#cursors
    let values: (string | null)[] | undefined
    if (cursor !== undefined) {
      const decoded = codec.decode(cursor, binding)
      if (decoded.length !== order.keys.length || !decoded.every((v) => v === null || typeof v === 'string')) {
        throw new InvalidCursorError()
      }
      values = decoded
    }
    const condition = values === undefined ? undefined : keysetCondition(order.keys, values, backward)
    const nulls = values === undefined ? 'first' : values.map((v) => (v === null ? 'n' : 'v')).join('')
    const sql = cachedSql(a, `keyset|${scope.own}|${walked.shape}|${order.key}|${backward}|${nulls}`, () => {
      const where = [...conditions(), ...(condition ? [condition.sql] : [])]
      return (
        `select ${a.tableSql}.*, ${keySelect(order.keys)} from ${a.tableSql}` +
        `${where.length > 0 ? ` where ${where.join(' and ')}` : ''} order by ${keysetOrder(order.keys, backward)} limit ?`
      )
    })
    const result = await this.#raw<Record<string, unknown>>(
      sql,
      [...scope.bindings, ...walked.bindings, ...(condition?.bindings ?? []), size + 1],
      this.#reader(),
    )
    const more = result.rows.length > size
    const rows = result.rows.slice(0, size)
    if (backward) rows.reverse()
    const model = this.#model
    const keyColumns = order.keys.map((_, i) => keyColumn(i))
    // Selected as ::text, so strings or NULLs. Only the first and last rows get cursors.
    const cursorOf = (row: Record<string, unknown> | undefined): string | null =>
      row === undefined
        ? null
        : codec.encode(
            binding,
            keyColumns.map((column) => (row[column] as string | null | undefined) ?? null),
          )
    const startCursor = cursorOf(rows[0])
    const endCursor = rows.length > 1 ? cursorOf(rows[rows.length - 1]) : startCursor
    // BaseModel leaves the key columns out of the models.
    const items = rows.map((row) => model.fromDatabaseJson(row) as M)
    return {
      items,
      pageInfo: {
        hasNextPage: backward ? true : more,
        hasPreviousPage: backward ? more : after !== undefined,
        startCursor,
        endCursor,
      },
    }
  }

  async count(filter?: Filter): Promise<number> {
    const scope = this.#readScope()
    return this.#count(scope, this.#access.filters.walk(filter), this.#reader())
  }

  async #count(
    scope: { own: boolean; bindings: unknown[] },
    walked: FilterWalk,
    reader: Knex | Knex.Transaction,
  ): Promise<number> {
    const a = this.#access
    const sql = cachedSql(a, `count|${scope.own}|${walked.shape}`, () => {
      const conditions = [scope.own ? `${a.ownerSql} = ?` : '', a.filters.sql(walked.shape)].filter((c) => c !== '')
      const where = conditions.length > 0 ? ` where ${conditions.join(' and ')}` : ''
      return `select count(*)::int8 as count from ${a.tableSql}${where}`
    })
    const load = async (): Promise<{ value: number; cacheable: boolean }> => {
      const result = await this.#raw<{ count: string }>(sql, [...scope.bindings, ...walked.bindings], reader)
      return { value: Number(result.rows[0]?.count ?? 0), cacheable: reader === this.#runner }
    }
    const cached = this.#cached()
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
    const target = this.#bulkTarget()
    const json = insertColumns(target, row)
    const statement = insertStatement(target, await this.#shape(target), [json])
    const rows = await this.#wrote(this.#rows(statement.sql, statement.bindings))
    return rows[0]!
  }

  async update(id: string, patch: PartialModelObject<M>): Promise<M> {
    const level = requireAccess(this.#context, this.#model, 'update')
    if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) {
      throw new ValidationError('update needs a patch object.', [{ field: 'patch', message: 'must be an object' }])
    }
    if (typeof id !== 'string' || !UUID.test(id)) throw new NotFoundError(this.#access.name)
    const target = this.#bulkTarget()
    const { columns, values } = patchColumns(target, patch, 'single', id.toLowerCase())
    const a = this.#access
    const own = level === 'own'
    const head = updateStatementHead(target, await this.#shape(target), {
      columns,
      set: columns.map((column) => `${quoteIdentifier(column)} = ?`).join(', '),
      setBindings: values,
      lockedFrom: `from ${a.tableSql} where ${a.idSql} = ?${own ? ` and ${a.ownerSql} = ?` : ''}`,
      lockedBindings: own ? [id, this.#context.actorId] : [id],
      returnAll: true,
    })
    const rows = await this.#wrote(this.#rows(`${head.sql}select * from changed`, head.bindings))
    if (rows.length === 0) throw new NotFoundError(this.#access.name, id)
    return rows[0]!
  }

  async delete(id: string): Promise<void> {
    const level = requireAccess(this.#context, this.#model, 'delete')
    if (typeof id !== 'string' || !UUID.test(id)) throw new NotFoundError(this.#access.name)
    const target = this.#bulkTarget()
    const statement = deleteStatement(target, await this.#shape(target), id, level === 'own')
    const result = await this.#wrote(this.#raw<{ count: number }>(statement.sql, statement.bindings))
    if ((result.rows[0]?.count ?? 0) === 0) throw new NotFoundError(this.#access.name, id)
  }

  /** The model's audit shape (read from the catalog once), or undefined when the model is not audited. */
  async #shape(target: WriteTarget): Promise<AuditShape | undefined> {
    try {
      return await shapeOf(target)
    } catch (error) {
      throw toDataError(error)
    }
  }

  bulkUpdate(ids: readonly string[], patch: PartialModelObject<M>, options?: BulkOptions): Promise<BulkResult>
  bulkUpdate(
    ids: AsyncIterable<string>,
    patch: PartialModelObject<M>,
    options?: BulkOptions,
  ): Promise<{ updated: number; notFound: number }>
  bulkUpdate(
    selector: { readonly filter: Filter },
    patch: PartialModelObject<M>,
    options?: BulkOptions,
  ): Promise<{ updated: number }>
  async bulkUpdate(
    selector: readonly string[] | AsyncIterable<string> | { readonly filter: Filter },
    patch: PartialModelObject<M>,
    options?: BulkOptions,
  ): Promise<BulkResult | { updated: number } | { updated: number; notFound: number }> {
    if (Array.isArray(selector)) return this.#wrote(bulkUpdateByIds(this.#bulkTarget(), selector, patch, options))
    if (typeof selector === 'object' && selector !== null && Symbol.asyncIterator in selector) {
      return this.#wrote(bulkUpdateStream(this.#bulkTarget(), selector, patch, options))
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
      bulkUpdateByFilter(this.#bulkTarget(), walked, this.#access.filters.sql(walked.shape), patch, options),
    )
  }

  bulkUpdateEach(
    rows: readonly ({ id: string } & PartialModelObject<M>)[],
    options?: BulkOptions,
  ): Promise<BulkResult> {
    return this.#wrote(bulkUpdateEach(this.#bulkTarget(), rows, options))
  }

  bulkCreate(rows: readonly PartialModelObject<M>[], options?: BulkOptions): Promise<M[]> {
    return this.#wrote(bulkCreate<M>(this.#bulkTarget(), rows, options))
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

  #bulkTarget(): WriteTarget {
    return { model: this.#model, access: this.#access, context: this.#context, runner: this.#runner }
  }

  query(): M['QueryBuilderType'] {
    return this.#model.query(this.#runner).context({ [SCOPE_KEY]: this.#context })
  }
}

/**
 * Who is acting, for one request or job: every repository obtained from it sees only what its actor may see.
 * Get one with `db.scope(actor, meta)` (a user) or `db.system(reason)` (jobs; sees everything). A scope is cheap:
 * make one per request, never share it between requests.
 *
 * @example
 * ```ts
 * app.get('/droplets', async (req, res) => {
 *   const scope = db.scope(req.user, { ip: req.ip, requestId: req.id })
 *   res.json(await scope.repo(Droplet).list({ filter: { status: 'active' } }))
 * })
 * ```
 */
export class Scope {
  /** The acting user, or undefined for `db.system()`. */
  readonly actor: Actor | undefined
  /** The actor's role, or `'system'`. */
  readonly role: string
  /** Why a system scope exists (for the audit trail); undefined for user scopes. */
  readonly reason: string | undefined
  readonly meta: RequestMeta
  /** Custom audit events, written with this scope's actor and metadata (in its transaction, if it has one). */
  readonly audit: ScopeAudit
  /**
   * Raw SQL inside `scope.transaction()`: the transaction itself. With `rls: true` the database still limits it
   * to the actor's rows (row-level security); without it, raw SQL is not scoped. Outside a transaction this is the
   * plain, unscoped knex.
   */
  readonly knex: Knex | Knex.Transaction
  readonly #env: ScopeEnvironment
  readonly #context: ScopeContext
  readonly #trx: Knex.Transaction | undefined
  readonly #repos = new Map<typeof Model, ScopedRepository<BaseModel>>()
  readonly #options: ScopeOptions
  /** Tables written in this scope's transaction (shared with nested ones), passed on when the outermost ends. */
  readonly #tablesWritten: Set<string>

  /** @internal */
  constructor(
    env: ScopeEnvironment,
    actor: Actor | undefined,
    reason: string | undefined,
    meta: RequestMeta,
    trx?: Knex.Transaction,
    options: ScopeOptions = {},
    tablesWritten: Set<string> = new Set(),
  ) {
    this.actor = actor
    this.role = actor === undefined ? SYSTEM_ROLE : actor.role
    this.reason = reason
    this.meta = meta
    this.#env = env
    this.#trx = trx
    this.knex = trx ?? env.knex
    this.#options = options
    this.#tablesWritten = tablesWritten
    const replicas = env.replicas
    const cache = env.cache
    const consistency = options.consistency ?? (actor === undefined ? 'primary' : 'session')
    const actorKey = actor?.id ?? SYSTEM_ROLE
    this.#context = Object.freeze({
      role: this.role,
      actorId: actor?.id,
      roles: env.roles,
      rlsSql: env.rls && actor !== undefined ? scopedTransactionSql(actor.id, actor.role, false) : undefined,
      inTransaction: trx !== undefined,
      enforcement: SCOPE_ENFORCEMENT,
      audit: auditStamp(actor?.id, this.role, meta as Readonly<Record<string, string>>, reason),
      ...(replicas === undefined
        ? {}
        : {
            reader: () => replicas.readerFor(actorKey, consistency),
            readerFailed: (reader: Knex, error: unknown) => replicas.markDown(reader, error),
          }),
      ...(replicas === undefined && cache === undefined
        ? {}
        : {
            wrote: (table: string) => {
              if (trx !== undefined) tablesWritten.add(table)
              else settleWrites(env, actorKey, [table])
            },
          }),
      ...(cache === undefined ? {} : { cache: { cache, actor: `${this.role}:${actorKey}` } }),
    })
    const context = this.#context
    const run = async (sql: string, bindings: readonly unknown[]): Promise<{ rows: Record<string, unknown>[] }> => {
      try {
        if (trx !== undefined) return await trx.raw(sql, bindings as Knex.RawBinding[])
        const rlsSql = context.rlsSql
        if (rlsSql === undefined) return await env.knex.raw(sql, bindings as Knex.RawBinding[])
        return await env.knex.transaction(async (t) => {
          await t.raw(rlsSql)
          return t.raw<{ rows: Record<string, unknown>[] }>(sql, bindings as Knex.RawBinding[])
        })
      } catch (error) {
        throw toDataError(error)
      }
    }
    const BoundAuditLog = env.bind(AuditLog)
    this.audit = Object.freeze({
      record: (action: string, event?: AuditEvent) =>
        recordAuditEvent(run, BoundAuditLog, context.audit, action, event),
    })
  }

  /**
   * The repository of a model within this scope.
   *
   * @example
   * ```ts
   * const droplet = await scope.repo(Droplet).getById(id)
   * ```
   */
  repo<C extends typeof BaseModel>(modelClass: C): ScopedRepository<InstanceType<C>> {
    let repo = this.#repos.get(modelClass)
    if (repo === undefined) {
      repo = new Repository(this.#env.bind(modelClass), this.#context, this.#trx ?? this.#env.knex, this.#env.cursors)
      this.#repos.set(modelClass, repo)
    }
    return repo as unknown as ScopedRepository<InstanceType<C>>
  }

  /**
   * Runs `work` in one transaction with a scope of the same actor: everything commits together or nothing does.
   * Nested calls use a savepoint.
   *
   * @example
   * ```ts
   * await scope.transaction(async (tx) => {
   *   const droplet = await tx.repo(Droplet).create({ name: 'web-1', region: 'nyc3', size: 's-1vcpu-2gb' })
   *   await tx.repo(Droplet).update(droplet.id, { status: 'active' })
   * })
   * ```
   */
  async transaction<T>(work: (tx: Scope) => Promise<T>): Promise<T> {
    const runner = this.#trx ?? this.#env.knex
    const rlsSql = this.#trx === undefined ? this.#context.rlsSql : undefined
    try {
      return await runner.transaction(async (trx) => {
        if (rlsSql !== undefined) await trx.raw(rlsSql)
        return work(new Scope(this.#env, this.actor, this.reason, this.meta, trx, this.#options, this.#tablesWritten))
      })
    } catch (error) {
      throw toDataError(error)
    } finally {
      // The outermost transaction has ended: what it wrote (if it committed) is what the actor reads next.
      if (this.#trx === undefined) {
        settleWrites(this.#env, this.actor?.id ?? SYSTEM_ROLE, [...this.#tablesWritten])
        this.#tablesWritten.clear()
      }
    }
  }
}

/**
 * Checks an actor and makes its scope: a UUID id, a role name, not inactive, never the system role.
 *
 * @internal
 */
export function createScope(env: ScopeEnvironment, actor: unknown, meta: unknown, options?: unknown): Scope {
  if (typeof actor !== 'object' || actor === null) {
    throw new ValidationError('An actor must be an object with id and role.', [
      { field: 'actor', message: 'is required' },
    ])
  }
  const { id, role, isActive } = actor as Partial<Actor>
  if (typeof id !== 'string' || !UUID.test(id)) {
    throw new ValidationError('actor.id must be a UUID.', [{ field: 'actor.id', message: 'must be a UUID' }])
  }
  if (typeof role !== 'string' || !/^[a-z][a-z0-9_-]{0,31}$/.test(role) || role === SYSTEM_ROLE) {
    throw new ValidationError('actor.role must be a role name.', [
      { field: 'actor.role', message: 'must be a role name' },
    ])
  }
  if (isActive === false) throw new ForbiddenError('act as', 'an inactive user')
  return new Scope(
    env,
    Object.freeze({ id: id.toLowerCase(), role }),
    undefined,
    checkMeta(meta),
    undefined,
    checkOptions(options),
  )
}

/** @internal */
export function createSystemScope(env: ScopeEnvironment, reason: unknown, options?: unknown): Scope {
  if (typeof reason !== 'string' || reason.trim().length === 0 || reason.length > 500) {
    throw new ValidationError('db.system() needs a reason of 1 to 500 characters.', [
      { field: 'reason', message: 'must be a non-empty string' },
    ])
  }
  return new Scope(env, undefined, reason, {}, undefined, checkOptions(options))
}

/**
 * Writes that have settled outside a transaction (or with the outermost one): the cache drops the tables' values, and
 * the actor's reads need what it wrote. A transaction with no noted write still counts for read-your-writes: raw SQL
 * in it (`tx.knex`) may have written.
 */
function settleWrites(env: ScopeEnvironment, actor: string, tables: readonly string[]): void {
  if (tables.length > 0) env.cache?.invalidate(tables)
  env.replicas?.noteWrite(actor)
}

function checkOptions(options: unknown): ScopeOptions {
  if (options === undefined) return {}
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new ValidationError('Scope options must be an object.', [{ field: 'options', message: 'must be an object' }])
  }
  for (const key of Object.keys(options)) {
    if (key !== 'consistency') {
      throw new ValidationError(`${key} is not a scope option.`, [{ field: key, message: 'is not a scope option' }])
    }
  }
  const { consistency } = options as { consistency?: unknown }
  if (
    consistency !== undefined &&
    consistency !== 'session' &&
    consistency !== 'primary' &&
    consistency !== 'replica'
  ) {
    throw new ValidationError("consistency must be 'session', 'primary' or 'replica'.", [
      { field: 'consistency', message: "must be 'session', 'primary' or 'replica'" },
    ])
  }
  return Object.freeze(consistency === undefined ? {} : { consistency })
}

function checkMeta(meta: unknown): RequestMeta {
  if (meta === undefined) return {}
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) {
    throw new ValidationError('Request metadata must be an object.', [{ field: 'meta', message: 'must be an object' }])
  }
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(meta)) {
    if (value === undefined) continue
    // A NUL or a lone surrogate cannot be stored in the audit row's jsonb: refuse it here, naming the field.
    if (typeof value !== 'string' || value.length > 1_000 || !isStorableText(value)) {
      throw new ValidationError(`meta.${key} must be a string of at most 1000 characters.`, [
        { field: `meta.${key}`, message: 'must be a short string' },
      ])
    }
    // An own property whatever the key (`__proto__` included), never a change of the object's prototype.
    Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true })
  }
  return Object.freeze(out)
}
