import type { Knex } from 'knex'
import type { PartialModelObject } from 'objection'
import { requireAccess } from '../access/enforce.js'
import { insertColumns, insertStatement, shapeOf } from '../access/writes.js'
import { toDataError } from '../errors/driver-errors.js'
import { ValidationError } from '../errors/index.js'
import type { BaseModel } from '../models/base-model.js'
import { checkBulkOptions, chunks, type BulkOptions } from './bulk.js'
import { inTransactions, type BulkTarget } from './bulk-update.js'

/** Bind parameters one insert statement may use, well under PostgreSQL's 65,535. */
const MAX_BINDINGS = 60_000

/**
 * Inserts many rows, validated and checked like scoped creates (a user's rows are always their own), one
 * multi-row INSERT per chunk. Returns the inserted rows.
 *
 * @internal
 */
export async function bulkCreate<M extends BaseModel>(
  target: BulkTarget,
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
  const shape = await shapeOf(target).catch((error: unknown) => {
    throw toDataError(error)
  })
  const width = Math.max(1, ...prepared.map((row) => Object.keys(row).length))
  const size = Math.max(1, Math.min(chunkSize, Math.floor(MAX_BINDINGS / width)))
  const created: M[] = []
  await inTransactions(
    target,
    transaction,
    chunks(prepared, size),
    async (trx, batch) => {
      const statement = insertStatement(target, shape, batch)
      const result = await trx.raw<{ rows: Record<string, unknown>[] }>(
        statement.sql,
        statement.bindings as Knex.RawBinding[],
      )
      for (const row of result.rows) created.push(target.model.fromDatabaseJson(row) as M)
      return result.rows.length
    },
    onProgress,
    prepared.length,
  )
  return created
}
