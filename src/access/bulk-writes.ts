import { randomUUID } from 'node:crypto'
import { quoteIdentifier } from '../internal/identifiers.js'
import type { Knex } from 'knex'
import type { PartialModelObject } from 'objection'
import type { FilterWalk } from './filter-compiler.js'
import {
  insertColumns,
  insertStatement,
  patchColumns,
  shapeOf,
  tableShape,
  updateStatementHead,
  type WriteTarget,
} from './writes.js'
import { requireAccess, rowScope, whereClause } from './row-scope.js'
import { namesEncrypted } from '../crypto/columns.js'
import { ValidationError } from '../errors/index.js'
import type { BaseModel } from '../models/base-model.js'
import { checkBulkOptions, chunks, type BulkOptions, type BulkResult } from '../bulk/bulk.js'
import { inTransactions, planIds, planRowGroups, type BulkRunner, type RowGroup } from '../bulk/plan.js'

/**
 * The bulk writes of a scoped repository: bulk/ plans them (ids in lock order, chunks, transactions), and each
 * chunk is one statement of the audited-write builder (writes.ts) with the scope's row condition (row-scope.ts).
 */

/** A patch that is an object (anything else is refused by `patchColumns`, with its own message). */
const isPatchObject = (patch: unknown): patch is Record<string, unknown> =>
  typeof patch === 'object' && patch !== null && !Array.isArray(patch)

/** Bind parameters one insert statement may use, well under PostgreSQL's 65,535. */
const MAX_BINDINGS = 60_000

const runnerOf = (target: WriteTarget): BulkRunner => ({
  runner: target.runner,
  rlsSql: target.context.rlsSql,
  inTransaction: target.context.inTransaction,
})

/**
 * Inserts many rows, validated and checked like scoped creates (a user's rows are always their own), one
 * multi-row INSERT per chunk. Returns the inserted rows.
 *
 * @internal
 */
export async function bulkCreate<M extends BaseModel>(
  target: WriteTarget,
  rows: readonly PartialModelObject<M>[],
  options?: BulkOptions,
): Promise<M[]> {
  const level = requireAccess(target.context, target.model, 'create')
  const { chunkSize, transaction, onProgress } = checkBulkOptions(options)
  if (!Array.isArray(rows)) {
    throw new ValidationError('bulkCreate needs a list of rows.', [{ field: 'rows', message: 'must be a list' }])
  }
  const owner = target.access.ownerProperty
  const prepared = rows.map((row, i) => {
    if (typeof row !== 'object' || row === null || Array.isArray(row)) {
      throw new ValidationError(`rows[${i}] must be an object.`, [
        { field: `rows[${i}]`, message: 'must be an object' },
      ])
    }
    const record = row as Record<string, unknown>
    // As create(): the actor owns what it creates, filled in before validation asks for it.
    return insertColumns(
      target,
      level === 'own' && owner !== undefined && record[owner] === undefined
        ? { ...record, [owner]: target.context.actorId }
        : record,
      i,
    )
  })
  const shape = await shapeOf(target)
  const width = Math.max(1, ...prepared.map((row) => Object.keys(row).length))
  const size = Math.max(1, Math.min(chunkSize, Math.floor(MAX_BINDINGS / width)))
  const created: M[] = []
  const insert = async (trx: Knex.Transaction, batch: Record<string, unknown>[]): Promise<number> => {
    const statement = insertStatement(target, shape, batch)
    const result = await trx.raw<{ rows: Record<string, unknown>[] }>(
      statement.sql,
      statement.bindings as Knex.RawBinding[],
    )
    for (const row of result.rows) created.push(target.model.fromDatabaseJson(row) as M)
    return result.rows.length
  }
  await inTransactions(runnerOf(target), transaction, chunks(prepared, size), insert, onProgress, prepared.length)
  return created
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
  target: WriteTarget,
  ids: readonly unknown[],
  patch: unknown,
  options?: BulkOptions,
): Promise<BulkResult> {
  // An encrypted value is encrypted for each row, bound to it: the patch becomes one row each, in the statement shape
  // of bulkUpdateEach (chunked, locked in id order, audited).
  if (isPatchObject(patch) && !Object.hasOwn(patch, 'id') && namesEncrypted(target.model, patch)) {
    const { sorted, notFound } = planIds(ids)
    const each = await bulkUpdateEach(
      target,
      sorted.map((id) => ({ ...patch, id })),
      options,
    )
    return { updated: each.updated, notFound: [...notFound, ...each.notFound].sort() }
  }
  const scope = rowScope(target.context, target.model, 'update')
  const { chunkSize, transaction, onProgress } = checkBulkOptions(options)
  const { columns, values } = patchColumns(target, patch)
  const { sorted, notFound } = planIds(ids)
  const a = target.access
  const shape = await shapeOf(target)
  const set = columns.map((column) => `${quoteIdentifier(column)} = ?`).join(', ')
  const lockedFrom = `from ${a.tableSql}${whereClause(`${a.idSql} = any(?::uuid[])`, scope.sql)}`
  const missing: string[] = []
  const update = async (trx: Knex.Transaction, batch: string[]): Promise<number> => {
    const head = updateStatementHead(target, shape, {
      columns,
      set,
      setBindings: values,
      lockedFrom,
      lockedBindings: [batch, ...scope.bindings],
    })
    // Only the ids that were not updated come back: none, usually.
    const result = await trx.raw<{ rows: { missing: string[] }[] }>(
      `${head.sql}select array(select unnest(?::uuid[]) except select id from changed)::text[] as missing`,
      [...head.bindings, batch] as Knex.RawBinding[],
    )
    const gone = result.rows[0]?.missing ?? []
    missing.push(...gone)
    return batch.length - gone.length
  }
  await inTransactions(runnerOf(target), transaction, chunks(sorted, chunkSize), update, onProgress, sorted.length)
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
  target: WriteTarget,
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
  // Checked before the stream is read; an encrypted value is checked as it will be written, for a row of its own.
  const encrypted = isPatchObject(patch) && namesEncrypted(target.model, patch)
  patchColumns(target, patch, 'bulk', encrypted ? randomUUID() : undefined)
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
  target: WriteTarget,
  walked: FilterWalk,
  filterSql: string,
  patch: unknown,
  options?: BulkOptions,
): Promise<{ updated: number }> {
  const scope = rowScope(target.context, target.model, 'update')
  const { chunkSize, transaction, onProgress } = checkBulkOptions(options)
  if (isPatchObject(patch) && namesEncrypted(target.model, patch)) {
    const property = Object.keys(patch).find((key) => namesEncrypted(target.model, { [key]: true })) ?? 'patch'
    throw new ValidationError(
      `${target.model.name}.${property} is encrypted for each row: bulkUpdate it by ids (a list or a stream), not by filter.`,
      [{ field: property, message: 'is encrypted for each row: update by ids' }],
    )
  }
  const { columns, values } = patchColumns(target, patch)
  const a = target.access
  const shape = await shapeOf(target)
  const set = columns.map((column) => `${quoteIdentifier(column)} = ?`).join(', ')
  const where = whereClause(scope.sql, filterSql, `${a.idSql} > ?`)
  let updated = 0
  let last = '00000000-0000-0000-0000-000000000000'
  let finished = false
  function* batches(): Generator<number> {
    while (!finished) yield 0
  }
  const update = async (trx: Knex.Transaction): Promise<number> => {
    const head = updateStatementHead(target, shape, {
      columns,
      set,
      setBindings: values,
      lockedFrom: `from ${a.tableSql}${where}`,
      lockedBindings: [...scope.bindings, ...walked.bindings, last, chunkSize],
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
  }
  await inTransactions(runnerOf(target), transaction, batches(), update, onProgress, undefined)
  return { updated }
}

/**
 * A different patch per row (`[{ id, ...fields }]`), one statement per chunk and shape through `unnest`: each row
 * is validated like a scoped update; rows outside the scope are not found and never touched; rows are locked in
 * id order.
 *
 * @internal
 */
export async function bulkUpdateEach(
  target: WriteTarget,
  rows: readonly unknown[],
  options?: BulkOptions,
): Promise<BulkResult> {
  const scope = rowScope(target.context, target.model, 'update')
  const { chunkSize, transaction, onProgress } = checkBulkOptions(options)
  const { groups, ids, notFound } = planRowGroups(
    rows,
    // A patch of an encrypted property is encrypted for its own row; others are checked once per distinct patch.
    (patch, id) => patchColumns(target, patch, 'bulk', id),
    (patch) => namesEncrypted(target.model, patch),
  )
  const shape = await tableShape(target)
  const audited = target.model.audited ? shape : undefined
  const batches: { group: RowGroup; rows: RowGroup['rows']; casts: string[] }[] = []
  for (const group of groups) {
    const casts = group.columns.map((column) => {
      const type = shape.types.get(column)
      if (type === undefined)
        throw new ValidationError(`Unknown column ${column}.`, [{ field: column, message: 'is not a column' }])
      return `?::${type}[]`
    })
    for (const batch of chunks(group.rows, chunkSize)) batches.push({ group, rows: batch, casts })
  }
  const a = target.access
  const updated: string[] = []
  const update = async (trx: Knex.Transaction, batch: (typeof batches)[number]): Promise<number> => {
    const { columns } = batch.group
    const names = columns.map((_, c) => `c${c}`)
    const arrays = columns.map((_, c) => batch.rows.map((row) => row.values[c]))
    const batchIds = batch.rows.map((row) => row.id)
    const head = updateStatementHead(target, audited, {
      columns,
      input: {
        sql: `select * from unnest(?::uuid[], ${batch.casts.join(', ')}) as i(id, ${names.join(', ')})`,
        bindings: [batchIds, ...arrays],
      },
      set: columns.map((column, c) => `${quoteIdentifier(column)} = input.${names[c]}`).join(', '),
      setBindings: [],
      lockedFrom: `from ${a.tableSql} join input on ${a.idSql} = input.id${whereClause(scope.sql)}`,
      lockedBindings: scope.bindings,
    })
    const result = await trx.raw<{ rows: { missing: string[] }[] }>(
      `${head.sql}select array(select id from input except select id from changed)::text[] as missing`,
      head.bindings as Knex.RawBinding[],
    )
    const gone = new Set(result.rows[0]?.missing ?? [])
    for (const id of batchIds) if (!gone.has(id)) updated.push(id)
    return batchIds.length - gone.size
  }
  await inTransactions(runnerOf(target), transaction, batches, update, onProgress, ids.size)
  const done = new Set(updated)
  for (const id of ids) if (!done.has(id)) notFound.push(id)
  return { updated: updated.sort(), notFound }
}
