import type { Knex } from 'knex'
import { checkScopedWrite, requireAccess, type ScopeContext } from '../access/enforce.js'
import type { ModelAccess } from '../access/model-access.js'
import { quoteIdentifier } from '../access/model-access.js'
import type { FilterWalk } from '../access/filter-compiler.js'
import { toDataError } from '../db/driver-errors.js'
import { ValidationError } from '../errors.js'
import type { BaseModel } from '../models/base-model.js'
import { checkBulkOptions, chunks, type BulkOptions, type BulkResult } from './bulk.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** What a bulk operation works on. @internal */
export interface BulkTarget {
  readonly model: typeof BaseModel
  readonly access: ModelAccess
  readonly context: ScopeContext
  /** The knex (or the transaction the scope already runs in). */
  readonly runner: Knex | Knex.Transaction
}

/**
 * Checks a patch once, as a scoped update of the model would: JSON schema (patch mode), owner and restricted
 * fields, immutable id; then returns its columns and values for SQL, `updated_at` included.
 */
function patchColumns(target: BulkTarget, patch: unknown): { columns: string[]; values: unknown[] } {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch) || Object.keys(patch).length === 0) {
    throw new ValidationError('A bulk patch must be a non-empty object.', [{ field: 'patch', message: 'is required' }])
  }
  const model = target.model.fromJson(patch, { patch: true }) as BaseModel & Record<string, unknown>
  checkScopedWrite(model, target.context, 'update')
  model.updatedAt = new Date()
  const json = model.$formatDatabaseJson(model.$toDatabaseJson()) as Record<string, unknown>
  const columns = Object.keys(json)
  return { columns, values: columns.map((column) => json[column]) }
}

/** Runs `work` once per chunk, in one transaction or one per chunk, with the scope's RLS settings. @internal */
export async function inTransactions<T>(
  target: BulkTarget,
  mode: 'all' | 'chunk',
  batches: Iterable<T>,
  work: (trx: Knex.Transaction, batch: T) => Promise<number>,
  onProgress: BulkOptions['onProgress'],
  total: number | undefined,
): Promise<void> {
  const { context, runner } = target
  const begin = async (trx: Knex.Transaction): Promise<void> => {
    if (context.rlsSql !== undefined && !context.inTransaction) await trx.raw(context.rlsSql)
  }
  let chunk = 0
  let done = 0
  const step = async (trx: Knex.Transaction, batch: T): Promise<void> => {
    done += await work(trx, batch)
    chunk += 1
    onProgress?.({ chunk, done, total })
  }
  try {
    if (mode === 'all') {
      await runner.transaction(async (trx) => {
        await begin(trx)
        for (const batch of batches) await step(trx, batch)
      })
    } else {
      for (const batch of batches) {
        await runner.transaction(async (trx) => {
          await begin(trx)
          await step(trx, batch)
        })
      }
    }
  } catch (error) {
    throw toDataError(error)
  }
}

/**
 * One patch for many rows by id, one statement per chunk. Each chunk first locks its rows in id order (so
 * concurrent bulk calls over overlapping ids cannot deadlock), with the lock the UPDATE takes anyway (FOR NO KEY
 * UPDATE, which does not block inserts that reference the rows), then updates them; the scope is part of the
 * same statement. Ids outside the scope, missing, or malformed are reported as not found and never touched.
 *
 * @internal
 */
export async function bulkUpdateByIds(
  target: BulkTarget,
  ids: readonly unknown[],
  patch: unknown,
  options?: BulkOptions,
): Promise<BulkResult> {
  const level = requireAccess(target.context, target.model, 'update')
  const { chunkSize, transaction, onProgress } = checkBulkOptions(options)
  const { columns, values } = patchColumns(target, patch)
  const wanted = new Set<string>()
  const notFound: string[] = []
  for (const id of ids) {
    if (typeof id === 'string' && UUID.test(id)) wanted.add(id.toLowerCase())
    else notFound.push(String(id))
  }
  const sorted = [...wanted].sort()
  const a = target.access
  const own = level === 'own'
  const set = columns.map((column) => `${quoteIdentifier(column)} = ?`).join(', ')
  const sql =
    `with locked as (select ${a.idSql} as id from ${a.tableSql} where ${a.idSql} = any(?::uuid[])` +
    `${own ? ` and ${a.ownerSql} = ?` : ''} order by ${a.idSql} for no key update) ` +
    `update ${a.tableSql} set ${set} from locked where ${a.idSql} = locked.id returning ${a.idSql}::text as id`
  const updated: string[] = []
  await inTransactions(
    target,
    transaction,
    chunks(sorted, chunkSize),
    async (trx, batch) => {
      const bindings = [batch, ...(own ? [target.context.actorId] : []), ...values] as Knex.RawBinding[]
      const result = await trx.raw<{ rows: { id: string }[] }>(sql, bindings)
      for (const row of result.rows) updated.push(row.id)
      return result.rows.length
    },
    onProgress,
    sorted.length,
  )
  const done = new Set(updated)
  for (const id of sorted) if (!done.has(id)) notFound.push(id)
  return { updated: updated.sort(), notFound }
}

/**
 * One patch for ids that arrive as a stream (an async iterable, e.g. read from a file or a cursor), for jobs too
 * large to hold in memory: each chunk is collected, sorted, locked in id order, updated and committed before the
 * next is read, so memory stays flat whatever the count. Only counts are returned. Each chunk is its own
 * transaction (a stream cannot be sorted as a whole, so one transaction over all chunks could deadlock with a
 * concurrent job); `transaction: 'all'` is refused. Ids are expected to be unique: a duplicate in another chunk is
 * counted again.
 *
 * @internal
 */
export async function bulkUpdateStream(
  target: BulkTarget,
  ids: AsyncIterable<unknown> | Iterable<unknown>,
  patch: unknown,
  options?: BulkOptions,
): Promise<{ updated: number; notFound: number }> {
  requireAccess(target.context, target.model, 'update')
  const checked = checkBulkOptions(
    options === undefined ? { transaction: 'chunk' } : { transaction: 'chunk', ...options },
  )
  if (checked.transaction !== 'chunk') {
    throw new ValidationError("A stream of ids is updated chunk by chunk: transaction must be 'chunk'.", [
      { field: 'transaction', message: "must be 'chunk' for a stream of ids" },
    ])
  }
  patchColumns(target, patch)
  let updated = 0
  let notFound = 0
  let chunk = 0
  let batch: unknown[] = []
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return
    const ids = batch
    batch = []
    const result = await bulkUpdateByIds(target, ids, patch, { chunkSize: checked.chunkSize })
    updated += result.updated.length
    notFound += result.notFound.length
    chunk += 1
    checked.onProgress?.({ chunk, done: updated, total: undefined })
  }
  for await (const id of ids) {
    batch.push(id)
    if (batch.length >= checked.chunkSize) await flush()
  }
  await flush()
  return { updated, notFound }
}

/**
 * One patch for every row in the scope that matches a filter, in chunks walked by id (each chunk locks its rows
 * in id order and updates them in one statement). Returns how many rows changed.
 *
 * @internal
 */
export async function bulkUpdateByFilter(
  target: BulkTarget,
  walked: FilterWalk,
  filterSql: string,
  patch: unknown,
  options?: BulkOptions,
): Promise<{ updated: number }> {
  const level = requireAccess(target.context, target.model, 'update')
  const { chunkSize, transaction, onProgress } = checkBulkOptions(options)
  const { columns, values } = patchColumns(target, patch)
  const a = target.access
  const own = level === 'own'
  const set = columns.map((column) => `${quoteIdentifier(column)} = ?`).join(', ')
  const where = [own ? `${a.ownerSql} = ?` : '', filterSql, `${a.idSql} > ?`].filter((c) => c !== '').join(' and ')
  const sql =
    `with locked as (select ${a.idSql} as id from ${a.tableSql} where ${where} order by ${a.idSql} limit ? for no key update) ` +
    `update ${a.tableSql} set ${set} from locked where ${a.idSql} = locked.id returning ${a.idSql}::text as id`
  let updated = 0
  let last = '00000000-0000-0000-0000-000000000000'
  let finished = false
  function* batches(): Generator<number> {
    while (!finished) yield 0
  }
  await inTransactions(
    target,
    transaction,
    batches(),
    async (trx) => {
      const bindings = [
        ...(own ? [target.context.actorId] : []),
        ...walked.bindings,
        last,
        chunkSize,
        ...values,
      ] as Knex.RawBinding[]
      const result = await trx.raw<{ rows: { id: string }[] }>(sql, bindings)
      const ids = result.rows.map((row) => row.id).sort()
      if (ids.length < chunkSize) finished = true
      if (ids.length > 0) last = ids[ids.length - 1]!
      updated += ids.length
      return ids.length
    },
    onProgress,
    undefined,
  )
  return { updated }
}

const columnTypes = new WeakMap<ModelAccess, Promise<Map<string, string>>>()

async function typesOf(target: BulkTarget): Promise<Map<string, string>> {
  let types = columnTypes.get(target.access)
  if (types === undefined) {
    types = target.runner
      .raw<{ rows: { name: string; type: string }[] }>(
        `select attname as name, format_type(atttypid, atttypmod) as type from pg_attribute
         where attrelid = ?::regclass and attnum > 0 and not attisdropped`,
        [target.access.table],
      )
      .then((result) => new Map(result.rows.map((row) => [row.name, row.type])))
    columnTypes.set(target.access, types)
    types.catch(() => columnTypes.delete(target.access))
  }
  return types
}

/**
 * A different patch per row (`[{ id, ...fields }]`), one statement per chunk and shape through `unnest`: each row
 * is validated like a scoped update; rows outside the scope are not found and never touched; rows are locked in
 * id order.
 *
 * @internal
 */
export async function bulkUpdateEach(
  target: BulkTarget,
  rows: readonly unknown[],
  options?: BulkOptions,
): Promise<BulkResult> {
  const level = requireAccess(target.context, target.model, 'update')
  const { chunkSize, transaction, onProgress } = checkBulkOptions(options)
  if (!Array.isArray(rows)) {
    throw new ValidationError('bulkUpdateEach needs a list of rows.', [{ field: 'rows', message: 'must be a list' }])
  }
  const notFound: string[] = []
  // Group rows by the set of columns they change: one statement shape per group.
  const groups = new Map<string, { columns: string[]; rows: { id: string; values: unknown[] }[] }>()
  const seen = new Set<string>()
  const validated = new Map<string, { columns: string[]; values: unknown[] }>()
  const now = new Date()
  for (const [i, row] of rows.entries()) {
    if (typeof row !== 'object' || row === null || Array.isArray(row)) {
      throw new ValidationError(`rows[${i}] must be an object with an id.`, [
        { field: `rows[${i}]`, message: 'must be an object' },
      ])
    }
    const { id, ...patch } = row as Record<string, unknown>
    if (typeof id !== 'string' || !UUID.test(id)) {
      notFound.push(String(id))
      continue
    }
    const key = id.toLowerCase()
    if (seen.has(key)) {
      throw new ValidationError(`rows[${i}] repeats an id.`, [{ field: `rows[${i}].id`, message: 'repeats an id' }])
    }
    seen.add(key)
    // Rows with the same patch (a status for thousands of rows) are validated once.
    const patchKey = JSON.stringify(patch)
    let checked = validated.get(patchKey)
    if (checked === undefined) {
      checked = patchColumns(target, patch)
      validated.set(patchKey, checked)
    }
    const { columns, values } = checked
    const shape = columns.join(',')
    let group = groups.get(shape)
    if (group === undefined) {
      group = { columns, rows: [] }
      groups.set(shape, group)
    }
    group.rows.push({ id: key, values: values.map((v, c) => (columns[c] === 'updated_at' ? now : v)) })
  }
  const types = await typesOf(target)
  const a = target.access
  const own = level === 'own'
  const batches: { sql: string; rows: { id: string; values: unknown[] }[]; columns: string[] }[] = []
  for (const group of groups.values()) {
    const inputColumns = group.columns.map((column, c) => `c${c}`)
    const casts = group.columns.map((column) => {
      const type = types.get(column)
      if (type === undefined)
        throw new ValidationError(`Unknown column ${column}.`, [{ field: column, message: 'is not a column' }])
      return `?::${type}[]`
    })
    const set = group.columns.map((column, c) => `${quoteIdentifier(column)} = input.${inputColumns[c]}`).join(', ')
    const sql =
      `with input as (select * from unnest(?::uuid[], ${casts.join(', ')}) as i(id, ${inputColumns.join(', ')})), ` +
      `locked as (select ${a.idSql} as id from ${a.tableSql} join input on ${a.idSql} = input.id` +
      `${own ? ` where ${a.ownerSql} = ?` : ''} order by ${a.idSql} for no key update) ` +
      `update ${a.tableSql} set ${set} from input, locked where ${a.idSql} = input.id and ${a.idSql} = locked.id ` +
      `returning ${a.idSql}::text as id`
    const sorted = [...group.rows].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0))
    for (const batch of chunks(sorted, chunkSize)) batches.push({ sql, rows: batch, columns: group.columns })
  }
  const updated: string[] = []
  await inTransactions(
    target,
    transaction,
    batches,
    async (trx, batch) => {
      const arrays = batch.columns.map((_, c) => batch.rows.map((row) => row.values[c]))
      const bindings = [batch.rows.map((row) => row.id), ...arrays, ...(own ? [target.context.actorId] : [])]
      const result = await trx.raw<{ rows: { id: string }[] }>(batch.sql, bindings as Knex.RawBinding[])
      for (const row of result.rows) updated.push(row.id)
      return result.rows.length
    },
    onProgress,
    seen.size,
  )
  const done = new Set(updated)
  for (const id of seen) if (!done.has(id)) notFound.push(id)
  return { updated: updated.sort(), notFound }
}
