import { quoteIdentifier } from '../internal/identifiers.js'
import type { Knex } from 'knex'
import { requireAccess } from '../access/enforce.js'
import type { FilterWalk } from '../access/filter-compiler.js'
import { patchColumns, shapeOf, updateStatementHead, type WriteTarget } from '../access/writes.js'
import { auditShape } from '../audit/recorder.js'
import { namesEncrypted } from '../crypto/columns.js'
import { toDataError } from '../errors/driver-errors.js'
import { ValidationError } from '../errors/index.js'
import { checkBulkOptions, chunks, type BulkOptions, type BulkResult } from './bulk.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** What a bulk operation works on. @internal */
export type BulkTarget = WriteTarget

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
  const shape = await shapeOf(target).catch((error: unknown) => {
    throw toDataError(error)
  })
  const set = columns.map((column) => `${quoteIdentifier(column)} = ?`).join(', ')
  const lockedFrom = `from ${a.tableSql} where ${a.idSql} = any(?::uuid[])${own ? ` and ${a.ownerSql} = ?` : ''}`
  const missing: string[] = []
  await inTransactions(
    target,
    transaction,
    chunks(sorted, chunkSize),
    async (trx, batch) => {
      const head = updateStatementHead(target, shape, {
        columns,
        set,
        setBindings: values,
        lockedFrom,
        lockedBindings: own ? [batch, target.context.actorId] : [batch],
      })
      // Only the ids that were not updated come back: none, usually.
      const result = await trx.raw<{ rows: { missing: string[] }[] }>(
        `${head.sql}select array(select unnest(?::uuid[]) except select id from changed)::text[] as missing`,
        [...head.bindings, batch] as Knex.RawBinding[],
      )
      const gone = result.rows[0]?.missing ?? []
      missing.push(...gone)
      return batch.length - gone.length
    },
    onProgress,
    sorted.length,
  )
  const skipped = new Set(missing)
  notFound.push(...[...skipped].sort())
  return { updated: skipped.size === 0 ? sorted : sorted.filter((id) => !skipped.has(id)), notFound }
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
  const shape = await shapeOf(target).catch((error: unknown) => {
    throw toDataError(error)
  })
  const set = columns.map((column) => `${quoteIdentifier(column)} = ?`).join(', ')
  const where = [own ? `${a.ownerSql} = ?` : '', filterSql, `${a.idSql} > ?`].filter((c) => c !== '').join(' and ')
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
      const head = updateStatementHead(target, shape, {
        columns,
        set,
        setBindings: values,
        lockedFrom: `from ${a.tableSql} where ${where}`,
        lockedBindings: [...(own ? [target.context.actorId] : []), ...walked.bindings, last, chunkSize],
        limited: true,
      })
      const result = await trx.raw<{ rows: { count: number; last: string | null }[] }>(
        `${head.sql}select (select count(*) from changed)::int as count, ` +
          `(select id::text from changed order by id desc limit 1) as last`,
        head.bindings as Knex.RawBinding[],
      )
      const count = result.rows[0]?.count ?? 0
      if (count < chunkSize) finished = true
      const next = result.rows[0]?.last
      if (next !== null && next !== undefined) last = next
      updated += count
      return count
    },
    onProgress,
    undefined,
  )
  return { updated }
}

/** Rows of `bulkUpdateEach` that change the same columns: one statement shape. */
interface RowGroup {
  readonly columns: string[]
  readonly rows: { id: string; values: unknown[] }[]
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
  const groups = new Map<string, RowGroup>()
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
    // Rows with the same patch (a status for thousands of rows) are validated once; a patch of an encrypted property
    // is encrypted for its own row.
    let checked: { columns: string[]; values: unknown[] } | undefined
    if (namesEncrypted(target.model, patch)) {
      checked = patchColumns(target, patch, 'bulk', key)
    } else {
      const patchKey = JSON.stringify(patch)
      checked = validated.get(patchKey)
      if (checked === undefined) {
        checked = patchColumns(target, patch)
        validated.set(patchKey, checked)
      }
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
  const shape = await auditShape(target.runner, target.model, target.access).catch((error: unknown) => {
    throw toDataError(error)
  })
  const types = shape.types
  const audited = target.model.audited ? shape : undefined
  const a = target.access
  const own = level === 'own'
  const batches: { group: RowGroup; rows: { id: string; values: unknown[] }[]; casts: string[] }[] = []
  for (const group of groups.values()) {
    const casts = group.columns.map((column) => {
      const type = types.get(column)
      if (type === undefined)
        throw new ValidationError(`Unknown column ${column}.`, [{ field: column, message: 'is not a column' }])
      return `?::${type}[]`
    })
    const sorted = [...group.rows].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0))
    for (const batch of chunks(sorted, chunkSize)) batches.push({ group, rows: batch, casts })
  }
  const updated: string[] = []
  await inTransactions(
    target,
    transaction,
    batches,
    async (trx, batch) => {
      const { columns } = batch.group
      const names = columns.map((_, c) => `c${c}`)
      const arrays = columns.map((_, c) => batch.rows.map((row) => row.values[c]))
      const ids = batch.rows.map((row) => row.id)
      const head = updateStatementHead(target, audited, {
        columns,
        input: {
          sql: `select * from unnest(?::uuid[], ${batch.casts.join(', ')}) as i(id, ${names.join(', ')})`,
          bindings: [ids, ...arrays],
        },
        set: columns.map((column, c) => `${quoteIdentifier(column)} = input.${names[c]}`).join(', '),
        setBindings: [],
        lockedFrom: `from ${a.tableSql} join input on ${a.idSql} = input.id${own ? ` where ${a.ownerSql} = ?` : ''}`,
        lockedBindings: own ? [target.context.actorId] : [],
      })
      const result = await trx.raw<{ rows: { missing: string[] }[] }>(
        `${head.sql}select array(select id from input except select id from changed)::text[] as missing`,
        head.bindings as Knex.RawBinding[],
      )
      const gone = new Set(result.rows[0]?.missing ?? [])
      for (const id of ids) if (!gone.has(id)) updated.push(id)
      return ids.length - gone.size
    },
    onProgress,
    seen.size,
  )
  const done = new Set(updated)
  for (const id of seen) if (!done.has(id)) notFound.push(id)
  return { updated: updated.sort(), notFound }
}
