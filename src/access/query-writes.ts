import { quoteIdentifier } from '../internal/identifiers.js'
import type { Knex } from 'knex'
import type { ScopeContext } from './enforce.js'
import { rowScope } from './row-scope.js'
import { modelAccess, type ModelAccess } from './model-access.js'
import {
  internalsOf,
  mergedColumns,
  replaceCompilation,
  unqualified,
  withoutReturning,
  type CompiledQuery,
  type KnexInternals,
  type Sql,
} from './knex-internals.js'
import { insertWithAudit, updateStatementHead, withSnapshotAudit } from './writes.js'
import { uniqueConflict } from '../errors/driver-errors.js'
import { ValidationError } from '../errors/index.js'
import type { BaseModel } from '../models/base-model.js'
import { resolvedAuditShape, type AuditShape } from '../audit/recorder.js'

/** The part of an objection query builder a scoped write is compiled from. @internal */
export interface ScopedWriteBuilder {
  modelClass(): unknown
  isInsert(): boolean
  isUpdate(): boolean
  isDelete(): boolean
}

/** `returning` as knex keeps it → a select list over the CTE `from`. */
function returnedColumns(returning: unknown, from: string, columns?: Iterable<string>): string {
  const list = returning === undefined ? [] : Array.isArray(returning) ? (returning as unknown[]) : [returning]
  if (list.length === 0 || list.some((c) => c === '*' || (typeof c === 'string' && c.endsWith('.*')))) {
    // The table's columns by name when the CTE carries more than them (the insert's `wincloud_inserted` flag).
    return columns === undefined ? `${from}.*` : [...columns].map((c) => `${from}.${quoteIdentifier(c)}`).join(', ')
  }
  return list
    .map((c) => {
      const name = String(c)
      return `${from}.${quoteIdentifier(name.slice(name.lastIndexOf('.') + 1))}`
    })
    .join(', ')
}

/**
 * Turns the knex query of a scoped write (`repo.query().patch(…)`, `.update(…)`, `.delete()`, `.insert(…)`, with
 * `onConflict(…).merge()` / `.ignore()`) into one statement that writes and audits: the rows an UPDATE changes are
 * locked and read in a CTE, updated from it, and one audit row per changed row is inserted from the UPDATE's own
 * RETURNING; a DELETE and an INSERT are audited from their RETURNING the same way. No other transaction can come
 * between the write and its audit rows, because they are one statement on one snapshot.
 *
 * An upsert's rows are audited as what happened to each: `create` for inserted rows, `update` (old values from a
 * locking read of the conflicting rows) for merged ones. When a scope that sees only its own rows merges into a row
 * it does not own, the `DO UPDATE` (narrowed by access/enforce.ts) leaves that row alone and returns nothing for
 * it: that is a {@link ConflictError}, as a plain insert's unique violation would be. The caller runs upserts in a
 * transaction or savepoint so that error leaves nothing behind.
 *
 * Called when objection builds the knex query (after scoping), for writes of scoped queries; models that are not
 * audited are left as they are, but for the upsert check.
 *
 * @internal
 */
export function compileScopedWrite(builder: ScopedWriteBuilder, knexBuilder: Knex.QueryBuilder, scope: ScopeContext) {
  const model = builder.modelClass() as typeof BaseModel
  const access = modelAccess(model)
  const internals = internalsOf(knexBuilder)
  const shape = model.audited ? resolvedAuditShape(access) : undefined
  const method = internals._method
  const merge = method === 'insert' && internals._single.merge !== undefined
  if (shape === undefined && !merge) return
  if (shape !== undefined && method !== 'insert' && method !== 'update' && method !== 'del') {
    throw new ValidationError(
      `A scoped ${access.name} write through query() must be an insert, patch, update or delete.`,
      [{ field: 'query', message: `${method} is not audited; use patch with a raw value` }],
    )
  }
  replaceCompilation(knexBuilder, (compile) => {
    const original = compile()
    if (shape === undefined) return { ...original, output: upsertOutput(internals, access, original) }
    if (method === 'insert') return insertStatement(model, internals, access, scope, shape, original, compile)
    if (method === 'update') return updateStatement(internals, access, scope, shape, original)
    return deleteStatement(internals, access, scope, shape, original, compile)
  })
}

/** The number of rows an INSERT is given. */
function insertedRowCount(internals: KnexInternals): number {
  const insert = internals._single.insert
  return Array.isArray(insert) ? insert.length : 1
}

/** A merge that returned fewer rows than it was given met rows outside the scope: a conflict, as a plain insert. */
function upsertOutput(internals: KnexInternals, access: ModelAccess, original: Sql) {
  const expected = insertedRowCount(internals)
  const conflict = conflictColumns(internals) ?? []
  return (response: { rows: Record<string, unknown>[]; rowCount?: number | null }): unknown => {
    const returned = response.rows.length
    if (returned < expected) {
      throw uniqueConflict(access.table, conflict, undefined)
    }
    return original.returning === undefined ? response.rowCount : response.rows
  }
}

/** The conflict target of an upsert as plain column names, or undefined when it is an expression. */
function conflictColumns(internals: KnexInternals): string[] | undefined {
  const target = internals._single.onConflict
  const list = typeof target === 'string' ? [target] : Array.isArray(target) ? (target as unknown[]) : undefined
  if (list === undefined || list.length === 0 || list.some((c) => typeof c !== 'string')) return undefined
  return (list as string[]).map(unqualified)
}

function insertStatement(
  model: typeof BaseModel,
  internals: KnexInternals,
  access: ModelAccess,
  scope: ScopeContext,
  shape: AuditShape,
  original: Sql,
  compile: () => Sql,
): CompiledQuery {
  const merge = internals._single.merge
  // The DO UPDATE's condition reads the `old` CTE (once, at the first conflict), so the conflicting rows are locked
  // and kept before the upsert updates them.
  const base = withoutReturning(
    internals,
    compile,
    merge === undefined ? undefined : internals.client.raw('(select count(*) from old) >= 0'),
  )
  let upsert: Parameters<typeof insertWithAudit>[3]
  if (merge !== undefined) {
    const conflict = conflictColumns(internals)
    if (conflict === undefined) {
      throw new ValidationError(`A scoped upsert of a ${access.name} must name its conflict columns.`, [
        { field: 'onConflict', message: 'must be column names' },
      ])
    }
    const rows = (
      Array.isArray(internals._single.insert) ? internals._single.insert : [internals._single.insert]
    ) as Record<string, unknown>[]
    // Merging into a row is an update of it: the rows it may merge into are those the scope may update.
    upsert = { conflict, rows, merged: mergedColumns(merge.updates), scope: rowScope(scope, model, 'update') }
  }
  const head = insertWithAudit({ access, context: scope }, shape, base, upsert)
  const statement: CompiledQuery = {
    ...original,
    sql: `${head.sql}select ${returnedColumns(original.returning, 'created', shape.types.keys())} from created`,
    bindings: head.bindings as Knex.Sql['bindings'],
  }
  if (merge !== undefined) statement.output = upsertOutput(internals, access, original)
  else statement.output = (response) => response.rows
  return statement
}

function updateStatement(
  internals: KnexInternals,
  access: ModelAccess,
  scope: ScopeContext,
  shape: AuditShape,
  original: Sql,
): CompiledQuery {
  if (internals._single.updateFrom !== undefined) {
    throw new ValidationError(`A scoped ${access.name} update through query() may not use updateFrom.`, [
      { field: 'query', message: 'updateFrom is not allowed in audited scoped writes' },
    ])
  }
  const client = internals.client
  // The SET list, compiled on its own: `update "t" set "a" = ?, "b" = ?`.
  const setBuilder = client
    .queryBuilder()
    .table(access.table)
    .update(internals._single.update ?? {})
  // increment() / decrement() keep their amounts apart from the update data; knex merges them in when compiling.
  internalsOf(setBuilder)._single.counter = internals._single.counter
  const set = setBuilder.toSQL()
  const setAt = set.sql.indexOf(' set ')
  // The where clauses (the caller's, scope included), compiled on a SELECT of the same table.
  const select = client.queryBuilder().from(access.table).select(client.raw('1'))
  internalsOf(select)._statements.push(...internals._statements.filter((s) => s.grouping === 'where'))
  const selected = select.toSQL()
  const fromAt = selected.sql.indexOf(' from ')
  const columns = [
    ...new Set([...Object.keys(internals._single.update ?? {}), ...Object.keys(internals._single.counter ?? {})]),
  ].map(unqualified)
  const head = updateStatementHead({ access, context: scope }, shape, {
    columns,
    set: set.sql.slice(setAt + ' set '.length),
    setBindings: set.bindings,
    lockedFrom: selected.sql.slice(fromAt + 1),
    lockedBindings: selected.bindings,
    returnAll: true,
    unjoined: true,
  })
  return countOrRows(original, head.sql, head.bindings, 'changed')
}

function deleteStatement(
  internals: KnexInternals,
  access: ModelAccess,
  scope: ScopeContext,
  shape: AuditShape,
  original: Sql,
  compile: () => Sql,
): CompiledQuery {
  const base = withoutReturning(internals, compile)
  const statement = withSnapshotAudit(
    { access, context: scope },
    shape,
    { name: 'deleted', sql: `${base.sql} returning ${access.tableSql}.*`, bindings: [...base.bindings] },
    'delete',
    '',
  )
  return countOrRows(original, statement.sql, statement.bindings, 'deleted')
}

/** `<head> select …`: the rows the caller asked for with `returning`, or the number of rows written. */
function countOrRows(original: Sql, head: string, bindings: readonly unknown[], from: string): CompiledQuery {
  const returning = original.returning
  const tail =
    returning === undefined
      ? `select count(*)::int as count from ${from}`
      : `select ${returnedColumns(returning, from)} from ${from}`
  return {
    ...original,
    sql: `${head}${tail}`,
    bindings: bindings as Knex.Sql['bindings'],
    output: (response) => (returning === undefined ? (response.rows[0]?.count ?? 0) : response.rows),
  }
}
