import type { Model } from 'objection'
import { quoteIdentifier } from '../internal/identifiers.js'
import { ForbiddenError } from '../errors/index.js'
import { accessLevel, type AccessAction, type AccessLevel } from '../models/policy.js'
import type { ScopeContext } from './enforce.js'
import { modelAccess } from './model-access.js'

/**
 * The rows one scope may reach with one action on one model, compiled once: the one place the scope's row
 * condition is written. Every path ANDs it with its own conditions, outside anything the caller wrote: repository
 * reads and counts, both page kinds, `query()`, single and bulk writes, upserts. Its `level` goes into the keys of
 * cached statements, so a statement compiled for one kind of scope is never run for another (a statement with a
 * table alias, from `query()`, is never cached).
 *
 * @internal
 */
export interface RowScope {
  /** `'own'`: the actor's rows; `'all'`: every row. */
  readonly level: 'own' | 'all'
  /** `"droplets"."user_id" = ?` for `'own'`; `''` for `'all'`. */
  readonly sql: string
  /** The actor's id for `'own'`; none for `'all'`. */
  readonly bindings: readonly unknown[]
}

/**
 * The access level of a scope for an action on a model, or a ForbiddenError when it has none.
 *
 * @internal
 */
export function requireAccess(scope: ScopeContext, modelClass: typeof Model, action: AccessAction): AccessLevel {
  const access = modelAccess(modelClass)
  const level = accessLevel(access.policy, scope.roles, scope.role, action)
  if (level === 'none') throw new ForbiddenError(action, access.name)
  return level
}

const ALL: RowScope = Object.freeze({ level: 'all', sql: '', bindings: Object.freeze([]) })

/**
 * The row scope of `context` for `action` on `modelClass`, or a ForbiddenError when it has no access. `table` is
 * the name the statement gives the model's table (an alias in `query()`); the table itself by default.
 *
 * @internal
 */
export function rowScope(
  context: ScopeContext,
  modelClass: typeof Model,
  action: AccessAction,
  table?: string,
): RowScope {
  if (requireAccess(context, modelClass, action) === 'all') return ALL
  const access = modelAccess(modelClass)
  const owner =
    table === undefined ? access.ownerSql! : `${quoteIdentifier(table)}.${quoteIdentifier(access.ownerColumn!)}`
  return { level: 'own', sql: `${owner} = ?`, bindings: [context.actorId ?? null] }
}

/**
 * ` where a and b` from the conditions that are not empty (the row scope first), or `''` when none is.
 *
 * @internal
 */
export function whereClause(...conditions: readonly string[]): string {
  const present = conditions.filter((c) => c !== '')
  return present.length > 0 ? ` where ${present.join(' and ')}` : ''
}
