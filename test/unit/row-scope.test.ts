/**
 * The row scope without a database: which rows a scope may reach with one action on one model (`rowScope`), the
 * access level behind it (`requireAccess`), and the ` where …` the reads build from it (`whereClause`). Contexts are
 * built the way `Scope` builds its frozen one, over the library's models and a small host model.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { ScopeContext } from '../../src/access/enforce.js'
import { SCOPE_ENFORCEMENT } from '../../src/access/enforcement.js'
import { requireAccess, rowScope, whereClause, type RowScope } from '../../src/access/row-scope.js'
import { auditStamp } from '../../src/audit/recorder.js'
import { ForbiddenError } from '../../src/errors/index.js'
import { AuditLog, BaseModel, Droplet, User } from '../../src/models/index.js'
import {
  DEFAULT_ROLES,
  SYSTEM_ROLE,
  definePolicy,
  ownedBy,
  type AccessAction,
  type AccessLevel,
  type Policy,
  type RolePermissions,
} from '../../src/models/policy.js'
import { runs } from '../helpers/property.js'

const ACTOR = '01a21233-1405-73d4-acaf-6da954af9e1d'
const ACTIONS: readonly AccessAction[] = ['read', 'create', 'update', 'delete']

/** A host's model: tickets owned by their reporter; users read and open their own, support reads every one. */
class Ticket extends BaseModel {
  static override tableName = 'support_tickets'
  static override policy: Policy | undefined = definePolicy({
    owner: ownedBy('reporterId'),
    roles: {
      user: { read: 'own', create: 'own' },
      support: { read: 'all', update: 'own' },
    },
  })
}

/** A host's model without a policy: only admins and `db.system()` reach it. */
class Note extends BaseModel {
  static override tableName = 'notes'
}

/** A scope's context as `Scope` freezes it: a user scope when `actorId` is given, a system scope otherwise. */
function contextOf(
  role: string,
  actorId: string | undefined,
  roles: Readonly<Record<string, RolePermissions>> = DEFAULT_ROLES,
): ScopeContext {
  const reason = actorId === undefined ? 'nightly job' : undefined
  return Object.freeze({
    role,
    actorId,
    roles,
    rlsSql: undefined,
    inTransaction: false,
    enforcement: SCOPE_ENFORCEMENT,
    audit: auditStamp(actorId, role, {}, reason),
  })
}

const user = contextOf('user', ACTOR)
const admin = contextOf('admin', ACTOR)
const system = contextOf(SYSTEM_ROLE, undefined)

const ALL: RowScope = { level: 'all', sql: '', bindings: [] }
const own = (sql: string, actorId: string = ACTOR): RowScope => ({ level: 'own', sql, bindings: [actorId] })

/** The ForbiddenError `fn` throws (fails the test when it returns or throws anything else). */
function forbidden(fn: () => unknown): ForbiddenError {
  try {
    fn()
  } catch (error) {
    expect(error).toBeInstanceOf(ForbiddenError)
    return error as ForbiddenError
  }
  throw new Error('access was granted')
}

function expectForbidden(context: ScopeContext, model: typeof BaseModel, action: AccessAction): void {
  const error = forbidden(() => rowScope(context, model, action))
  expect(error.code).toBe('FORBIDDEN')
  expect(error.httpStatus).toBe(403)
  expect(error.action).toBe(action)
  expect(error.resource).toBe(model.name)
  expect(error.message).toBe(`Not allowed: ${action} (${model.name}).`)
  expect(forbidden(() => requireAccess(context, model, action)).message).toBe(error.message)
}

describe('rowScope on the library models', () => {
  it("gives a user its own droplets for every action: the owner column bound to the actor's id", () => {
    for (const action of ACTIONS) {
      expect(rowScope(user, Droplet, action)).toEqual(own('"droplets"."user_id" = ?'))
      expect(requireAccess(user, Droplet, action)).toBe('own')
    }
  })

  it('gives admins and system scopes every droplet: no condition and no bindings', () => {
    for (const action of ACTIONS) {
      for (const context of [admin, system]) {
        const scope = rowScope(context, Droplet, action)
        expect(scope).toEqual(ALL)
        expect(scope.level).toBe('all')
        expect(scope.sql).toBe('')
        expect(scope.bindings).toEqual([])
        expect(requireAccess(context, Droplet, action)).toBe('all')
      }
    }
  })

  it('returns one frozen value for every scope that sees all rows', () => {
    const scope = rowScope(admin, Droplet, 'read')
    expect(Object.isFrozen(scope)).toBe(true)
    expect(Object.isFrozen(scope.bindings)).toBe(true)
    expect(rowScope(system, User, 'delete')).toBe(scope)
  })

  it('qualifies the owner column with the alias a statement gives the table', () => {
    expect(rowScope(user, Droplet, 'read', 'd')).toEqual(own('"d"."user_id" = ?'))
    expect(rowScope(user, Droplet, 'update', 'droplets')).toEqual(own('"droplets"."user_id" = ?'))
    expect(rowScope(user, Droplet, 'read', 'my"alias')).toEqual(own('"my""alias"."user_id" = ?'))
    expect(rowScope(admin, Droplet, 'read', 'd')).toEqual(ALL)
  })

  it("binds each scope's own actor", () => {
    const other = '01a21233-143b-7362-b208-a7fc8387e8f8'
    expect(rowScope(contextOf('user', other), Droplet, 'delete')).toEqual(own('"droplets"."user_id" = ?', other))
  })

  it("gives a user its own user row to read and update, and nothing to create or delete (the model's policy)", () => {
    expect(rowScope(user, User, 'read')).toEqual(own('"users"."id" = ?'))
    expect(rowScope(user, User, 'update', 'u')).toEqual(own('"u"."id" = ?'))
    expectForbidden(user, User, 'create')
    expectForbidden(user, User, 'delete')
    for (const action of ACTIONS) expect(rowScope(admin, User, action)).toEqual(ALL)
  })

  it('lets audit rows be read (users their own, admins all) and written by system scopes only', () => {
    expect(rowScope(user, AuditLog, 'read')).toEqual(own('"audit_logs"."actor_id" = ?'))
    expect(rowScope(admin, AuditLog, 'read')).toEqual(ALL)
    for (const action of ['create', 'update', 'delete'] as const) {
      expectForbidden(user, AuditLog, action)
      // The policy names admin: an admin gets exactly what it says, not the configured defaults.
      expectForbidden(admin, AuditLog, action)
      expect(rowScope(system, AuditLog, action)).toEqual(ALL)
    }
  })
})

describe('rowScope on a host model', () => {
  it("compiles the host model's owner property to its snake_case column", () => {
    expect(rowScope(user, Ticket, 'read')).toEqual(own('"support_tickets"."reporter_id" = ?'))
    expect(rowScope(user, Ticket, 'create', 't')).toEqual(own('"t"."reporter_id" = ?'))
  })

  it('gives each role what the policy names, and nothing it leaves out', () => {
    expectForbidden(user, Ticket, 'update')
    expectForbidden(user, Ticket, 'delete')
    const roles = { ...DEFAULT_ROLES, support: { read: 'all', create: 'all' } } as const
    const support = contextOf('support', ACTOR, roles)
    expect(rowScope(support, Ticket, 'read')).toEqual(ALL)
    expect(rowScope(support, Ticket, 'update')).toEqual(own('"support_tickets"."reporter_id" = ?'))
    // The policy names support: its configured `create: 'all'` does not apply here.
    expectForbidden(support, Ticket, 'create')
    // A role the policy does not name gets its configured defaults.
    expect(rowScope(support, Droplet, 'read')).toEqual(ALL)
    expect(rowScope(support, Droplet, 'create')).toEqual(ALL)
    expectForbidden(support, Droplet, 'update')
  })

  it('refuses a role that neither the policy nor the configuration names', () => {
    for (const role of ['auditor', 'constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      for (const action of ACTIONS) {
        expectForbidden(contextOf(role, ACTOR), Droplet, action)
        expectForbidden(contextOf(role, ACTOR), Ticket, action)
      }
    }
  })

  it("refuses a user whose configured role does not give 'user' access", () => {
    const roles = { admin: DEFAULT_ROLES.admin!, user: { read: 'own' } } as const
    const limited = contextOf('user', ACTOR, roles)
    expect(rowScope(limited, Droplet, 'read')).toEqual(own('"droplets"."user_id" = ?'))
    for (const action of ['create', 'update', 'delete'] as const) expectForbidden(limited, Droplet, action)
    expectForbidden(contextOf('user', ACTOR, { admin: DEFAULT_ROLES.admin! }), Droplet, 'read')
  })

  it("treats 'own' as no access on a model whose policy names no owner", () => {
    class Setting extends BaseModel {
      static override tableName = 'settings'
      static override policy: Policy | undefined = definePolicy({ roles: { user: { read: 'own', update: 'all' } } })
    }
    expectForbidden(user, Setting, 'read')
    expect(rowScope(user, Setting, 'update')).toEqual(ALL)
    expect(rowScope(admin, Setting, 'read')).toEqual(ALL)
  })

  it('lets only admins and system scopes reach a model without a policy', () => {
    const everything = { read: 'all', create: 'all', update: 'all', delete: 'all' } as const
    const roles = { ...DEFAULT_ROLES, superuser: everything, user: everything }
    for (const action of ACTIONS) {
      expect(rowScope(admin, Note, action)).toEqual(ALL)
      expect(rowScope(system, Note, action)).toEqual(ALL)
      expectForbidden(user, Note, action)
      expectForbidden(contextOf('user', ACTOR, roles), Note, action)
      expectForbidden(contextOf('superuser', ACTOR, roles), Note, action)
    }
  })

  it('gives system scopes every row whatever the configured roles say', () => {
    const none = contextOf(SYSTEM_ROLE, undefined, {})
    for (const model of [Droplet, User, AuditLog, Ticket, Note]) {
      for (const action of ACTIONS) expect(rowScope(none, model, action)).toEqual(ALL)
    }
  })
})

describe('whereClause', () => {
  it('is empty when every condition is', () => {
    expect(whereClause()).toBe('')
    expect(whereClause('')).toBe('')
    expect(whereClause('', '', '')).toBe('')
  })

  it('drops empty conditions and joins the rest with and, in order', () => {
    expect(whereClause('"t"."a" = ?')).toBe(' where "t"."a" = ?')
    expect(whereClause('', '"t"."b" = ?')).toBe(' where "t"."b" = ?')
    expect(whereClause('"t"."a" = ?', '', '("t"."b" = ? or "t"."c" = ?)')).toBe(
      ' where "t"."a" = ? and ("t"."b" = ? or "t"."c" = ?)',
    )
    expect(whereClause('x', 'y', 'z')).toBe(' where x and y and z')
  })

  it("puts a scope's condition first and adds nothing for a scope that sees all rows", () => {
    expect(whereClause(rowScope(user, Droplet, 'read').sql, '"droplets"."name" = ?')).toBe(
      ' where "droplets"."user_id" = ? and "droplets"."name" = ?',
    )
    expect(whereClause(rowScope(admin, Droplet, 'read').sql, '"droplets"."name" = ?')).toBe(
      ' where "droplets"."name" = ?',
    )
  })
})

describe('rowScope over arbitrary roles (property)', () => {
  const level = fc.constantFrom<AccessLevel>('all', 'own', 'none')
  const permissions = fc.record(
    { read: level, create: level, update: level, delete: level },
    { requiredKeys: [] },
  ) as fc.Arbitrary<RolePermissions>
  const roleName = fc.constantFrom<string>(
    'admin',
    'user',
    'support',
    'auditor',
    'constructor',
    'toString',
    SYSTEM_ROLE,
  )
  const roleTable = fc
    .array(fc.tuple(roleName, permissions), { maxLength: 5 })
    .map((entries) => Object.fromEntries(entries) as Record<string, RolePermissions>)

  it("never gives 'all' to a role whose permission is 'own', and binds the actor whenever it has a condition", () => {
    fc.assert(
      fc.property(
        roleTable,
        fc.option(roleTable, { nil: undefined }),
        fc.boolean(),
        roleName,
        fc.constantFrom(...ACTIONS),
        fc.uuid(),
        (configured, policyRoles, hasOwner, role, action, actorId) => {
          const policy =
            policyRoles === undefined
              ? undefined
              : definePolicy({ roles: policyRoles, ...(hasOwner ? { owner: ownedBy('ownerId') } : {}) })
          class Thing extends BaseModel {
            static override tableName = 'things'
            static override policy: Policy | undefined = policy
          }
          const context = contextOf(role, actorId, configured)
          // What the role's permissions say: the policy's entry for the role, else the configured one.
          const entry = (table: Record<string, RolePermissions>): RolePermissions | undefined =>
            Object.hasOwn(table, role) ? table[role] : undefined
          const said = policyRoles === undefined ? undefined : (entry(policyRoles) ?? entry(configured))?.[action]
          let scope: RowScope
          try {
            scope = rowScope(context, Thing, action)
          } catch (error) {
            expect(error).toBeInstanceOf(ForbiddenError)
            expect(role).not.toBe(SYSTEM_ROLE)
            expect(said === 'all' || (said === 'own' && hasOwner)).toBe(false)
            if (policy === undefined) expect(role).not.toBe('admin')
            return
          }
          if (said === 'own' && role !== SYSTEM_ROLE) expect(scope.level).toBe('own')
          if (scope.sql !== '') {
            expect(scope).toEqual(own('"things"."owner_id" = ?', actorId))
            expect(said).toBe('own')
            expect(hasOwner).toBe(true)
          } else {
            expect(scope).toEqual(ALL)
            expect(role === SYSTEM_ROLE || said === 'all' || (policy === undefined && role === 'admin')).toBe(true)
          }
        },
      ),
      { numRuns: runs(300) },
    )
  })
})
