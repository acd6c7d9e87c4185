import type { Knex } from 'knex'
import type { ScopeContext } from '../access/enforce.js'
import { modelAccess, quoteIdentifier } from '../access/model-access.js'
import type { BaseModel } from '../models/base-model.js'
import { auditInsertSql, auditShape, diffSql, snapshotSql, type ColumnValue } from './recorder.js'

/** The part of an objection query builder an audited write reads. */
export interface AuditedBuilder {
  modelClass(): unknown
  isInsert(): boolean
  isUpdate(): boolean
  isDelete(): boolean
  toKnexQuery(): Knex.QueryBuilder
}

interface KnexInternals {
  _statements: { grouping: string }[]
  _single: { table?: unknown }
}

const fromJsonb: ColumnValue = (column) => `(old.row -> '${column.replace(/'/g, "''")}')`

/**
 * Runs a scoped objection write (`repo.query().patch(…)`, `.delete()`, `.insert(…)`) with its audit rows, in the
 * transaction `trx`: for updates and deletes, the rows the write will touch are read and locked first (the same
 * where clauses, scope included), as jsonb; after the write, one audit row per changed or deleted row is written
 * by one INSERT that compares the kept values with the table. Inserts are audited from the rows they created.
 *
 * @internal
 */
export async function auditedBuilderWrite<R>(
  builder: AuditedBuilder,
  trx: Knex.Transaction,
  scope: ScopeContext,
  write: () => Promise<R>,
): Promise<R> {
  const model = builder.modelClass() as typeof BaseModel
  const access = modelAccess(model)
  const shape = await auditShape(trx, model, access)
  const table = access.tableSql
  if (builder.isInsert()) {
    const result = await write()
    const rows = (Array.isArray(result) ? result : [result]) as ({ id?: unknown } | undefined)[]
    const ids = rows.map((row) => row?.id).filter((id): id is string => typeof id === 'string')
    if (ids.length > 0) {
      const audit = auditInsertSql(
        shape,
        scope.audit,
        'create',
        snapshotSql(shape, (column) => `created.${quoteIdentifier(column)}`, 'to'),
        `${table} as created`,
        'created.id',
      )
      await trx.raw(`${audit.sql} and created.id = any(?::uuid[])`, [...audit.bindings, ids] as Knex.RawBinding[])
    }
    return result
  }

  // The rows the write is about to touch, locked, as jsonb text (no number loses precision on the way).
  const built = builder.toKnexQuery() as unknown as KnexInternals
  const select = trx
    .queryBuilder()
    .from(access.table)
    .select(trx.raw(`to_jsonb(${table})::text as row`))
    .forNoKeyUpdate()
  ;(select as unknown as KnexInternals)._statements.push(...built._statements.filter((s) => s.grouping === 'where'))
  let before: { row: string }[]
  try {
    before = (await select) as { row: string }[]
  } catch (selectError) {
    // The write would fail on the same where clauses, but objection checks its input first: let a refused patch
    // (ValidationError, ForbiddenError) win, as it does without auditing. Any SQL it sends now fails with 25P02.
    try {
      await write()
    } catch (writeError) {
      const { code, nativeError } = writeError as { code?: unknown; nativeError?: { code?: unknown } }
      if (code !== '25P02' && nativeError?.code !== '25P02') throw writeError
    }
    throw selectError
  }
  const result = await write()
  if (before.length === 0) return result
  const old = `unnest(?::text[]) as old_text(text), lateral (select old_text.text::jsonb as row) old`
  const columns = shape.columns.map((c) => c.column)
  const audit = builder.isDelete()
    ? auditInsertSql(shape, scope.audit, 'delete', snapshotSql(shape, fromJsonb, 'from'), old, `(old.row ->> 'id')`)
    : auditInsertSql(
        shape,
        scope.audit,
        'update',
        diffSql(
          shape,
          columns,
          fromJsonb,
          (column) => `coalesce(to_jsonb(changed.${quoteIdentifier(column)}), 'null'::jsonb)`,
        ),
        `${old} join ${table} as changed on changed.id = (old.row ->> 'id')::uuid`,
        'changed.id',
      )
  const gone = builder.isDelete()
    ? ` and not exists (select from ${table} as kept where kept.id = (old.row ->> 'id')::uuid)`
    : ''
  await trx.raw(`${audit.sql}${gone}`, [...audit.bindings, before.map((b) => b.row)] as Knex.RawBinding[])
  return result
}
