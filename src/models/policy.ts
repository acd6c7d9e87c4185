import { ForbiddenError, ValidationError } from '../errors/index.js'

/**
 * What an actor does to rows of a model.
 *
 * @example
 * ```ts
 * const action: AccessAction = 'update'
 * ```
 */
export type AccessAction = 'read' | 'create' | 'update' | 'delete'

/**
 * How far an action reaches: every row, the actor's own rows, or none.
 *
 * @example
 * ```ts
 * const supportCanRead: AccessLevel = 'all'
 * ```
 */
export type AccessLevel = 'all' | 'own' | 'none'

/**
 * A role's access per action. Missing actions are `'none'`.
 *
 * @example
 * ```ts
 * const support: RolePermissions = { read: 'all' } // read everything, write nothing
 * ```
 */
export type RolePermissions = Readonly<Partial<Record<AccessAction, AccessLevel>>>

/**
 * Who is acting: a user id and a role name. A {@link User} row is an actor too; an actor whose `isActive` is
 * `false` is refused.
 *
 * @example
 * ```ts
 * const actor: Actor = { id: token.sub, role: token.role }
 * const scope = db.scope(actor, { ip: req.ip })
 * ```
 */
export interface Actor {
  readonly id: string
  readonly role: string
  readonly isActive?: boolean
}

/**
 * Says which property of a model holds the id of the user who owns the row.
 *
 * @example
 * ```ts
 * static override policy = definePolicy({ owner: ownedBy('userId'), roles: { user: { read: 'own' } } })
 * ```
 */
export interface OwnerRule {
  readonly kind: 'owner'
  readonly property: string
}

/**
 * The owner rule of a policy: rows belong to the user whose id is in `property`.
 *
 * @example
 * ```ts
 * import { definePolicy, ownedBy } from '@wincloud/data'
 *
 * const policy = definePolicy({ owner: ownedBy('userId') })
 * ```
 */
export function ownedBy(property: string): OwnerRule {
  if (typeof property !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(property)) {
    throw new ValidationError('ownedBy needs a property name.', [
      { field: 'ownedBy', message: 'must be a property name' },
    ])
  }
  return Object.freeze({ kind: 'owner', property })
}

/**
 * The access rules of one model.
 *
 * @example
 * ```ts
 * const definition: PolicyDefinition = {
 *   owner: ownedBy('userId'),
 *   roles: { user: { read: 'own', create: 'own', update: 'own', delete: 'own' }, support: { read: 'all' } },
 *   restrictedFields: ['status'],
 * }
 * ```
 */
export interface PolicyDefinition {
  /** Which property names the owning user. Without it, `'own'` means no rows. */
  readonly owner?: OwnerRule
  /**
   * Per role, what it may do here; actions left out are `'none'`. A role not named here gets its defaults from
   * the config's `roles`.
   */
  readonly roles?: Readonly<Record<string, RolePermissions>>
  /** Properties only roles with `update: 'all'` (or `create: 'all'`) may write, e.g. a user's own `role`. */
  readonly restrictedFields?: readonly string[]
}

/**
 * A checked, frozen {@link PolicyDefinition}, as a model's `static policy` holds it.
 *
 * @example
 * ```ts
 * class Invoice extends BaseModel {
 *   static override policy: Policy = definePolicy({ owner: ownedBy('userId') })
 * }
 * ```
 */
export interface Policy {
  readonly owner: OwnerRule | undefined
  readonly roles: Readonly<Record<string, RolePermissions>>
  readonly restrictedFields: readonly string[]
}

const ACTIONS: readonly AccessAction[] = ['read', 'create', 'update', 'delete']
const LEVELS: readonly AccessLevel[] = ['all', 'own', 'none']

/** @internal */
export function checkPermissions(value: unknown, field: string): RolePermissions {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ValidationError(`${field} must be an object of actions.`, [{ field, message: 'must be an object' }])
  }
  for (const [action, level] of Object.entries(value)) {
    if (!ACTIONS.includes(action as AccessAction)) {
      throw new ValidationError(`${field}.${action} is not an action (read, create, update, delete).`, [
        { field: `${field}.${action}`, message: 'is not an action' },
      ])
    }
    if (!LEVELS.includes(level as AccessLevel)) {
      throw new ValidationError(`${field}.${action} must be 'all', 'own' or 'none'.`, [
        { field: `${field}.${action}`, message: "must be 'all', 'own' or 'none'" },
      ])
    }
  }
  return Object.freeze(Object.assign(Object.create(null) as Record<string, AccessLevel>, value as RolePermissions))
}

/**
 * The value of a name in a table of roles or actions, found only as an own property: role names come from callers,
 * and `constructor`, `__proto__` or `toString` must not find what every object inherits.
 *
 * @internal
 */
export function ownEntry<T>(table: Readonly<Record<string, T>> | undefined, name: string): T | undefined {
  return table !== undefined && table !== null && Object.hasOwn(table, name) ? table[name] : undefined
}

/**
 * Checks and freezes a model's access rules. A model without a policy is reachable only by admins and
 * `db.system()`.
 *
 * @example
 * ```ts
 * import { BaseModel, definePolicy, ownedBy } from '@wincloud/data'
 *
 * class Invoice extends BaseModel {
 *   static override tableName = 'invoices'
 *   static override policy = definePolicy({
 *     owner: ownedBy('userId'),
 *     roles: { user: { read: 'own' } }, // users read their invoices and write none
 *   })
 * }
 * ```
 */
export function definePolicy(definition: PolicyDefinition): Policy {
  // No prototype: a role is found only if the policy names it (`constructor` is not a role here).
  const roles: Record<string, RolePermissions> = Object.create(null) as Record<string, RolePermissions>
  for (const [role, permissions] of Object.entries(definition.roles ?? {})) {
    roles[role] = checkPermissions(permissions, `policy.roles.${role}`)
  }
  return Object.freeze({
    owner: definition.owner,
    roles: Object.freeze(roles),
    restrictedFields: Object.freeze([...(definition.restrictedFields ?? [])]),
  })
}

/**
 * The default roles: `admin` may do everything to every row, `user` everything to their own rows. Hosts add roles
 * (or change `user`) with the `roles` config field.
 *
 * @example
 * ```ts
 * const db = await createDatabase({ connection, roles: { ...DEFAULT_ROLES, support: { read: 'all' } } })
 * ```
 */
export const DEFAULT_ROLES: Readonly<Record<string, RolePermissions>> = Object.freeze({
  admin: Object.freeze({ read: 'all', create: 'all', update: 'all', delete: 'all' }),
  user: Object.freeze({ read: 'own', create: 'own', update: 'own', delete: 'own' }),
})

/** The role name of `db.system()` scopes. */
export const SYSTEM_ROLE = 'system'

/**
 * The access level of a role for an action on a model: deny by default.
 *
 * @internal
 */
export function accessLevel(
  policy: Policy | undefined,
  roles: Readonly<Record<string, RolePermissions>>,
  role: string,
  action: AccessAction,
): AccessLevel {
  if (role === SYSTEM_ROLE) return 'all'
  if (policy === undefined) return role === 'admin' ? 'all' : 'none'
  // A role the policy names gets exactly what the policy says; others fall back to their configured defaults. Names
  // are looked up as own properties only, and anything but a known level is no access.
  const permissions = ownEntry(policy.roles, role) ?? ownEntry(roles, role)
  const level: unknown = ownEntry(permissions, action)
  if (level === 'all') return 'all'
  return level === 'own' && policy.owner !== undefined ? 'own' : 'none'
}

/**
 * Throws the error for an action a role may not perform on a model at all.
 *
 * @internal
 */
export function forbidden(action: AccessAction, modelName: string): never {
  throw new ForbiddenError(action, modelName)
}
