import { checkPermissions, DEFAULT_ROLES, SYSTEM_ROLE, type RolePermissions } from '../../models/policy.js'
import { ConfigError, isDataError } from '../../errors/index.js'
import { isPlainObject } from './fields.js'

/**
 * `roles`, merged over `DEFAULT_ROLES`. The result has no prototype: an actor's role is found only if it was
 * configured (`constructor` is not a role here).
 *
 * @internal
 */
export function parseRoles(value: unknown): Readonly<Record<string, RolePermissions>> {
  const roles: Record<string, RolePermissions> = Object.assign(
    Object.create(null) as Record<string, RolePermissions>,
    DEFAULT_ROLES,
  )
  if (value !== undefined) {
    if (!isPlainObject(value)) throw new ConfigError('roles', 'must be an object of role names.')
    for (const [role, permissions] of Object.entries(value)) {
      if (!/^[a-z][a-z0-9_-]{0,31}$/.test(role) || role === SYSTEM_ROLE) {
        throw new ConfigError(`roles.${role}`, 'is not a usable role name (lower-case letters, digits, _ and -).')
      }
      try {
        roles[role] = checkPermissions(permissions, `roles.${role}`)
      } catch (error) {
        if (!isDataError(error)) throw error
        throw new ConfigError(`roles.${role}`, "must map read, create, update, delete to 'all', 'own' or 'none'.")
      }
    }
  }
  return Object.freeze(roles)
}
