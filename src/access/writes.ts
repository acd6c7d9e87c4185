import { quoteIdentifier } from '../internal/identifiers.js'
import type { Knex } from 'knex'
import type { QueryContext } from 'objection'
import { aliasColumns, auditInsertSql, auditShape, diffSql, snapshotSql, type AuditShape } from '../audit/recorder.js'
import { setRowIdHint } from '../crypto/columns.js'
import { toDataError } from '../errors/driver-errors.js'
import { ValidationError } from '../errors/index.js'
import type { BaseModel } from '../models/base-model.js'
import type { ScopeContext } from './enforce.js'
import { SCOPE_KEY } from '../models/scope-port.js'
import { type ModelAccess } from './model-access.js'
import { whereClause, type RowScope } from './row-scope.js'

/**
 * What a scoped write works on: the model, its access metadata, the scope, and the knex (or the transaction the
 * scope already runs in).
 *
 * @internal
 */
export interface WriteTarget {
  readonly model: typeof BaseModel
  readonly access: ModelAccess
  readonly context: ScopeContext
  readonly runner: Knex | Knex.Transaction
}

/**
 * What an audited statement is built for: the model's table (access metadata) and who acts (the scope's audit
 * stamp). A {@link WriteTarget} is one; so is what a scoped `query()` write is compiled for.
 *
 * @internal
 */
export interface StatementTable {
  readonly access: ModelAccess
  readonly context: Pick<ScopeContext, 'audit'>
}

/** A statement and its bindings. @internal */
export interface Statement {
  readonly sql: string
  readonly bindings: unknown[]
}

const contextOf = (target: WriteTarget): QueryContext =>
  ({ [SCOPE_KEY]: { ...target.context, inTransaction: true } }) as unknown as QueryContext

/**
 * Checks a patch once, as a scoped update of the model would: JSON schema (patch mode), the model's
 * `$beforeUpdate` (owner and restricted fields, immutable id, `updatedAt` bumped); then returns its columns and
 * values for SQL.
 *
 * @internal
 */
export function patchColumns(
  target: WriteTarget,
  patch: unknown,
  what: 'bulk' | 'single' = 'bulk',
  rowId?: string,
): { columns: string[]; values: unknown[] } {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) {
    throw new ValidationError('A patch must be an object.', [{ field: 'patch', message: 'must be an object' }])
  }
  // An empty patch touches a single row (updatedAt); for many rows it is almost certainly a mistake.
  if (what === 'bulk' && Object.keys(patch).length === 0) {
    throw new ValidationError('A bulk patch must be a non-empty object.', [{ field: 'patch', message: 'is required' }])
  }
  const model = target.model.fromJson(patch, { patch: true })
  model.$beforeUpdate({ patch: true }, contextOf(target))
  // Encrypted values are bound to their row: the patch model learns which one (it has no id of its own).
  if (rowId !== undefined) setRowIdHint(model, rowId)
  const json = model.$toDatabaseJson() as Record<string, unknown>
  const columns = Object.keys(json)
  return { columns, values: columns.map((column) => json[column]) }
}

/**
 * Checks one row to insert as a scoped create would (JSON schema, `$beforeInsert`: owner, restricted fields, id
 * and timestamps) and returns its columns and values.
 *
 * @internal
 */
export function insertColumns(target: WriteTarget, row: unknown, index?: number): Record<string, unknown> {
  if (typeof row !== 'object' || row === null || Array.isArray(row)) {
    const field = index === undefined ? 'data' : `rows[${index}]`
    throw new ValidationError(`${field} must be an object.`, [{ field, message: 'must be an object' }])
  }
  const model = target.model.fromJson(row)
  model.$beforeInsert(contextOf(target))
  return model.$toDatabaseJson()
}

/**
 * The shape of the target's table (its column types, what an audit row needs), read from the catalog once per
 * model; a driver error as a DataError.
 *
 * @internal
 */
export async function tableShape(target: WriteTarget): Promise<AuditShape> {
  try {
    return await auditShape(target.runner, target.model, target.access)
  } catch (error) {
    throw toDataError(error)
  }
}

/** The audit shape of the target's model, or undefined when the model is not audited. @internal */
export async function shapeOf(target: WriteTarget): Promise<AuditShape | undefined> {
  return target.model.audited ? tableShape(target) : undefined
}

/**
 * `with locked as (…), changed as (update …)[, audit as (insert …)] ` — the head of every audited update: the rows
 * are locked in id order (so concurrent bulk calls cannot deadlock) with the lock the UPDATE takes anyway, their
 * old values kept for the audit diff; then updated; then one audit row per changed row, all in one statement.
 * `lockedFrom` selects the rows (with its bindings); `input` names a CTE of per-row values (`bulkUpdateEach`) or is
 * undefined; `returnAll` makes `changed` return whole rows instead of the id and the patched columns.
 *
 * @internal
 */
export function updateStatementHead(
  target: StatementTable,
  shape: AuditShape | undefined,
  options: {
    readonly columns: readonly string[]
    readonly set: string
    readonly setBindings: readonly unknown[]
    readonly lockedFrom: string
    readonly lockedBindings: readonly unknown[]
    readonly input?: { readonly sql: string; readonly bindings: readonly unknown[] }
    readonly returnAll?: boolean
    /** Lock at most this many rows (the last locked binding is the limit). */
    readonly limited?: boolean
    /**
     * Update the locked rows by `id in (select id from locked)` instead of joining them: for SET expressions written
     * for a plain UPDATE, whose unqualified column names would be ambiguous next to `locked`'s.
     */
    readonly unjoined?: boolean
  },
): Statement {
  const a = target.access
  const t = a.tableSql
  const audited = options.columns.filter((c) => c !== 'updated_at')
  const old = audited.map((c) => `${t}.${quoteIdentifier(c)}`)
  const returned = options.returnAll
    ? `${t}.*`
    : [`${a.idSql} as id`, ...options.columns.map((c) => `${t}.${quoteIdentifier(c)}`)].join(', ')
  const parts: string[] = []
  const bindings: unknown[] = []
  if (options.input !== undefined) {
    parts.push(`input as (${options.input.sql})`)
    bindings.push(...options.input.bindings)
  }
  parts.push(
    `locked as (select ${[`${a.idSql} as id`, ...old].join(', ')} ${options.lockedFrom} order by ${a.idSql}${options.limited ? ' limit ?' : ''} for no key update)`,
  )
  bindings.push(...options.lockedBindings)
  parts.push(
    options.unjoined === true && options.input === undefined
      ? `changed as (update ${t} set ${options.set} where ${a.idSql} in (select id from locked) returning ${returned})`
      : `changed as (update ${t} set ${options.set} from ${options.input !== undefined ? 'input, ' : ''}locked ` +
          `where ${a.idSql} = locked.id${options.input !== undefined ? ` and ${a.idSql} = input.id` : ''} returning ${returned})`,
  )
  bindings.push(...options.setBindings)
  if (shape !== undefined && audited.length > 0) {
    const audit = auditInsertSql(
      shape,
      target.context.audit,
      'update',
      diffSql(shape, audited, aliasColumns('locked'), aliasColumns('changed')),
      'changed join locked on locked.id = changed.id',
      'changed.id',
    )
    parts.push(`audit as (${audit.sql})`)
    bindings.push(...audit.bindings)
  }
  return { sql: `with ${parts.join(', ')} `, bindings }
}

/**
 * One multi-row INSERT returning the inserted rows, and one audit row per inserted row, in one statement. Rows
 * that leave a column out get its default.
 *
 * @internal
 */
export function insertStatement(
  target: WriteTarget,
  shape: AuditShape | undefined,
  rows: readonly Record<string, unknown>[],
): Statement {
  const a = target.access
  const columns = [...new Set(rows.flatMap((row) => Object.keys(row)))]
  const bindings: unknown[] = []
  const values = rows
    .map((row) => {
      const cells = columns.map((column) => {
        if (!(column in row) || row[column] === undefined) return 'default'
        bindings.push(row[column])
        return '?'
      })
      return `(${cells.join(', ')})`
    })
    .join(', ')
  const insert = `insert into ${a.tableSql} (${columns.map(quoteIdentifier).join(', ')}) values ${values} returning ${a.tableSql}.*`
  return withSnapshotAudit(target, shape, { name: 'created', sql: insert, bindings }, 'create', 'select * from created')
}

/**
 * `with <name> as (<statement>), audit as (insert … one row per row of <name>) <tail>`: the audit rows of an INSERT
 * (`{ field: { to } }`) or a DELETE (`{ field: { from } }`) in the same statement; just the statement and the tail
 * for a model that is not audited.
 *
 * @internal
 */
export function withSnapshotAudit(
  target: StatementTable,
  shape: AuditShape | undefined,
  rows: { readonly name: 'created' | 'deleted'; readonly sql: string; readonly bindings: unknown[] },
  action: 'create' | 'delete',
  tail: string,
): Statement {
  if (shape === undefined) return { sql: `with ${rows.name} as (${rows.sql}) ${tail}`, bindings: rows.bindings }
  const side = action === 'create' ? 'to' : 'from'
  const audit = auditInsertSql(
    shape,
    target.context.audit,
    action,
    snapshotSql(shape, aliasColumns(rows.name), side),
    rows.name,
    `${rows.name}.id`,
  )
  return {
    sql: `with ${rows.name} as (${rows.sql}), audit as (${audit.sql}) ${tail}`,
    bindings: [...rows.bindings, ...audit.bindings],
  }
}

/**
 * A DELETE of one row by id within the scope, with its audit row (the deleted values, secrets redacted), returning
 * how many rows went.
 *
 * @internal
 */
export function deleteStatement(
  target: WriteTarget,
  shape: AuditShape | undefined,
  id: string,
  scope: RowScope,
): Statement {
  const a = target.access
  const bindings: unknown[] = [id, ...scope.bindings]
  const sql = `delete from ${a.tableSql}${whereClause(`${a.idSql} = ?`, scope.sql)} returning ${a.tableSql}.*`
  return withSnapshotAudit(
    target,
    shape,
    { name: 'deleted', sql, bindings },
    'delete',
    'select count(*)::int as count from deleted',
  )
}

/**
 * An INSERT with its audit rows in one statement, as a scoped `query().insert(…)` writes it, upserts included:
 * `with [old as (…),] created as (<insert> returning *, inserted?), audit_created as (…)[, audit_updated as (…)] `.
 * For an upsert, the rows it may merge into (those matching `conflict` on the inserted values, within `scope`) are
 * read and locked first in `old` (a row the statement has updated can no longer be locked by it; the insert's
 * DO UPDATE condition must read `old` so that it runs first); inserted rows are audited as `create`, merged ones as
 * `update` from `old`. The caller selects what it returns from `created`.
 *
 * @internal
 */
export function insertWithAudit(
  target: StatementTable,
  shape: AuditShape,
  insert: { readonly sql: string; readonly bindings: readonly unknown[] },
  upsert?: {
    readonly conflict: readonly string[]
    readonly rows: readonly Record<string, unknown>[]
    readonly merged: readonly string[]
    readonly scope: RowScope
  },
): Statement {
  const a = target.access
  const t = a.tableSql
  const parts: string[] = []
  const bindings: unknown[] = []
  if (upsert !== undefined) {
    const tuple = (row: Record<string, unknown>): string =>
      `(${upsert.conflict
        .map((column) => {
          bindings.push(row[column] ?? null)
          return `?::${shape.types.get(column) ?? 'text'}`
        })
        .join(', ')})`
    const matching = `(${upsert.conflict.map((c) => `${t}.${quoteIdentifier(c)}`).join(', ')}) in (values ${upsert.rows.map(tuple).join(', ')})`
    bindings.push(...upsert.scope.bindings)
    parts.push(
      `old as (select ${t}.* from ${t}${whereClause(matching, upsert.scope.sql)} order by ${a.idSql} for no key update)`,
    )
  }
  parts.push(`created as (${insert.sql} returning ${t}.*, (${t}.xmax = 0) as wincloud_inserted)`)
  bindings.push(...insert.bindings)
  const stamp = target.context.audit
  const created = auditInsertSql(
    shape,
    stamp,
    'create',
    snapshotSql(shape, aliasColumns('created'), 'to'),
    'created',
    'created.id',
  )
  parts.push(`audit_created as (${created.sql} and created.wincloud_inserted)`)
  bindings.push(...created.bindings)
  if (upsert !== undefined) {
    const updated = auditInsertSql(
      shape,
      stamp,
      'update',
      diffSql(
        shape,
        upsert.merged.filter((c) => c !== 'updated_at'),
        aliasColumns('old'),
        aliasColumns('created'),
      ),
      'created left join old on old.id = created.id',
      'created.id',
    )
    parts.push(`audit_updated as (${updated.sql} and not created.wincloud_inserted)`)
    bindings.push(...updated.bindings)
  }
  return { sql: `with ${parts.join(', ')} `, bindings }
}
