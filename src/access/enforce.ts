import type { Knex } from 'knex'
import type { ReadCache } from '../db/cache.js'
import type { Model } from 'objection'
import type { AuditStamp } from '../audit/recorder.js'
import { ForbiddenError, ValidationError } from '../errors/index.js'
import { insertedColumns, internalsOf, mergedColumns } from './knex-internals.js'
import { modelAccess } from './model-access.js'
import { requireAccess, rowScope } from './row-scope.js'
import type { AccessAction, RolePermissions } from '../models/policy.js'
import type { ScopePort, ScopedQueryBuilder } from '../models/scope-port.js'

/**
 * What a query needs to know about the scope it runs in: the port the models see, and what enforcement reads.
 *
 * @internal
 */
export interface ScopeContext extends ScopePort {
  readonly role: string
  /** The acting user's id; undefined for `db.system()`. */
  readonly actorId: string | undefined
  readonly roles: Readonly<Record<string, RolePermissions>>
  /** Who acts, as the scope's audit rows record it. */
  readonly audit: AuditStamp
  /** With replicas: where this scope's next read goes (outside transactions). */
  readonly reader?: (() => Knex) | undefined
  /** With replicas: a replica whose read failed on the connection. */
  readonly readerFailed?: ((reader: Knex, error: unknown) => void) | undefined
  /** With a cache: reads of this scope go through it. */
  readonly cache?: { readonly cache: ReadCache; readonly actor: string } | undefined
}

/**
 * Keeps a scoped upsert (`insert(…).onConflict(…).merge(…)`) inside its scope: the `DO UPDATE` never writes the id
 * or the creation time, and for a scope that sees only its own rows never the owner either, and touches only the
 * scope's own rows (`DO UPDATE … WHERE owner = actor`). A conflict with a row outside the scope then updates
 * nothing; the statement that runs the upsert turns that into a {@link ConflictError}, as a plain insert's unique
 * violation would be. `merge()` with no columns merges every inserted column but those.
 */
function scopeUpsert(knexBuilder: Knex.QueryBuilder, modelClass: typeof Model, scope: ScopeContext): void {
  const access = modelAccess(modelClass)
  const single = internalsOf(knexBuilder)._single
  if (single.merge === undefined) return
  // Merging into an existing row is an update of it: the rows it may merge into are the update's row scope.
  const rows = rowScope(scope, modelClass, 'update')
  const fixed = new Set(['id', 'created_at'])
  if (rows.level === 'own') fixed.add(access.ownerColumn!)
  const refuse = (column: string): never => {
    throw new ValidationError(`An upsert of a ${access.name} cannot change its ${column}.`, [
      { field: 'merge', message: `${column} cannot be merged` },
    ])
  }
  const updates = single.merge.updates
  if (updates === undefined) {
    const merged = insertedColumns(single.insert).filter((column) => !fixed.has(column))
    if (merged.length === 0) {
      throw new ValidationError(`An upsert of a ${access.name} has nothing to merge.`, [
        { field: 'merge', message: 'no column to merge' },
      ])
    }
    single.merge = { updates: merged }
  } else {
    for (const column of mergedColumns(updates)) if (fixed.has(column)) refuse(column)
  }
  if (rows.sql !== '') knexBuilder.whereRaw(rows.sql, rows.bindings as Knex.RawBinding[])
}

/**
 * Narrows a knex query built by objection to the rows the scope may touch with its action: the caller's where
 * clauses are wrapped in parentheses and the owner condition is ANDed outside them, so no `or` can widen the
 * scope. Joins, unions, CTEs and other tables are refused for scopes that see only their own rows.
 *
 * @internal
 */
export function scopeKnexQuery(builder: ScopedQueryBuilder, knexBuilder: Knex.QueryBuilder, scope: ScopeContext): void {
  const modelClass = builder.modelClass() as typeof Model
  const action: AccessAction = builder.isInsert()
    ? 'create'
    : builder.isUpdate()
      ? 'update'
      : builder.isDelete()
        ? 'delete'
        : 'read'
  const level = requireAccess(scope, modelClass, action)
  if (action === 'create') {
    scopeUpsert(knexBuilder, modelClass, scope)
    return
  }
  if (level === 'all') return

  const access = modelAccess(modelClass)
  const internals = internalsOf(knexBuilder)
  const refused = internals._statements.find(
    (s) => s.grouping === 'join' || s.grouping === 'union' || s.grouping === 'with',
  )
  if (refused !== undefined || (internals._single.table !== undefined && internals._single.table !== access.table)) {
    throw new ValidationError(
      `A scoped ${access.name} query may not use ${refused?.grouping ?? 'another table'}; ` +
        'load related rows with withGraphFetched, which applies their own policy.',
      [{ field: 'query', message: 'joins, unions, CTEs and other tables are not allowed in scoped queries' }],
    )
  }
  const wheres = internals._statements.filter((s) => s.grouping === 'where')
  if (wheres.length > 0) {
    internals._statements = internals._statements.filter((s) => s.grouping !== 'where')
    knexBuilder.where(function (this: Knex.QueryBuilder) {
      internalsOf(this)._statements.push(...wheres)
    })
  }
  const rows = rowScope(scope, modelClass, action, builder.tableRefFor(modelClass as never))
  knexBuilder.whereRaw(rows.sql, rows.bindings as Knex.RawBinding[])
}

/**
 * Checks the values a scoped insert or update writes: a scope with `'own'` access creates rows for its actor only
 * (an omitted owner is filled in), never moves a row to another owner, and never writes restricted fields.
 *
 * @internal
 */
export function checkScopedWrite(
  model: Model & Record<string, unknown>,
  scope: ScopeContext,
  action: 'create' | 'update',
): void {
  const modelClass = model.constructor as typeof Model
  const level = requireAccess(scope, modelClass, action)
  const name = modelAccess(modelClass).name
  // Ids never change, and only scopes that see every row choose them: a chosen id that collides would tell a
  // user that someone else's row exists.
  if (action === 'update' && model.id !== undefined) {
    throw new ValidationError(`The id of a ${name} cannot be changed.`, [{ field: 'id', message: 'cannot be changed' }])
  }
  if (level === 'all') return
  if (action === 'create' && model.id !== undefined) throw new ForbiddenError('choose the id of', name)
  for (const field of ['createdAt', 'updatedAt']) {
    if (model[field] !== undefined) throw new ForbiddenError(`set ${field} of`, name)
  }
  const access = modelAccess(modelClass)
  const owner = access.ownerProperty!
  if (action === 'create' && model[owner] === undefined) model[owner] = scope.actorId
  if (model[owner] !== undefined && model[owner] !== scope.actorId) {
    throw new ForbiddenError(action === 'create' ? 'create for another user' : 'change the owner of', access.name)
  }
  const properties = (modelClass.jsonSchema as { properties?: Record<string, { default?: unknown }> } | undefined)
    ?.properties
  for (const field of access.policy?.restrictedFields ?? []) {
    const value = model[field]
    // On create, the schema's default (filled in before this hook runs) is not the caller writing the field.
    const isDefault = action === 'create' && value === properties?.[field]?.default
    if (value !== undefined && !isDefault) throw new ForbiddenError(`set ${field} of`, access.name)
  }
}
