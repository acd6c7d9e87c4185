import { quoteIdentifier } from '../internal/identifiers.js'
import type { Knex } from 'knex'
import type { Model } from 'objection'
import { AUDIT_TABLE } from '../audit/recorder.js'
import { modelAccess } from './model-access.js'
import { accessLevel, type AccessAction, type RolePermissions } from '../models/policy.js'

/**
 * The PostgreSQL role every scoped transaction switches to when `rls: true`: no login, no BYPASSRLS, not a
 * superuser and not the tables' owner, so the row-level policies hold even when the application connects as a
 * superuser or as the owner.
 *
 * @example
 * ```ts
 * await knex.raw(`grant select on invoices to ${SCOPED_DATABASE_ROLE}`)
 * ```
 */
export const SCOPED_DATABASE_ROLE = 'wincloud_scoped'

/** The transaction-local settings the policies read. */
const ACTOR_SETTING = 'app.actor_id'
const ROLE_SETTING = 'app.role'

// Stricter than isUuid (lower case only): the actor id is written into SQL text, so it must be exactly what the scope
// made of it.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const ROLE = /^[a-z][a-z0-9_-]{0,31}$/

/**
 * The statements that make a transaction scoped: switch to the scoped role and set the actor, transaction-locally
 * (safe behind PgBouncer in transaction mode). Values are checked, not escaped: a UUID and a role name. With
 * `begin`, the whole prefix goes to the server as one message.
 *
 * @internal
 */
export function scopedTransactionSql(actorId: string, role: string, begin: boolean): string {
  if (!UUID.test(actorId) || !ROLE.test(role)) throw new Error('scoped transaction: invalid actor')
  return (
    `${begin ? 'begin; ' : ''}set local role ${SCOPED_DATABASE_ROLE}; ` +
    `select set_config('${ACTOR_SETTING}', '${actorId}', true), set_config('${ROLE_SETTING}', '${role}', true)`
  )
}

const ACTIONS: Record<AccessAction, string> = { read: 'select', create: 'insert', update: 'update', delete: 'delete' }

function literalList(values: readonly string[]): string {
  return `array[${values.map((v) => `'${v}'`).join(', ')}]::text[]`
}

/**
 * The row-level security statements for some models, generated from the same policies and roles the library
 * enforces in SQL it writes itself: enable and force RLS, and one policy per command. A session with no
 * `app.role` setting (unscoped code: migrations, `db.system()`, the host's own queries) sees every row, as it does
 * without RLS; a scoped transaction sees what its role may.
 *
 * @internal
 */
export async function rowLevelSecurityStatements(
  knex: Knex | Knex.Transaction,
  models: readonly (typeof Model)[],
  roles: Readonly<Record<string, RolePermissions>>,
): Promise<string[]> {
  const statements: string[] = [
    // Roles are shared by every database of the cluster: tolerate another database creating it concurrently.
    `do $$ begin
       if not exists (select from pg_roles where rolname = '${SCOPED_DATABASE_ROLE}') then
         begin
           create role ${SCOPED_DATABASE_ROLE} nologin nobypassrls;
         exception when duplicate_object or unique_violation then null;
         end;
       end if;
       if not pg_has_role(current_user, '${SCOPED_DATABASE_ROLE}', 'member') then
         begin
           execute format('grant ${SCOPED_DATABASE_ROLE} to %I', current_user);
         exception when others then
           if not pg_has_role(current_user, '${SCOPED_DATABASE_ROLE}', 'member') then raise; end if;
         end;
       end if;
     end $$`,
    `grant usage on schema public to ${SCOPED_DATABASE_ROLE}`,
  ]
  for (const modelClass of models) {
    const access = modelAccess(modelClass)
    const table = access.tableSql
    const roleNames = [...new Set([...Object.keys(roles), ...Object.keys(access.policy?.roles ?? {}), 'admin'])].filter(
      (r) => ROLE.test(r),
    )
    let ownerCondition = 'false'
    if (access.ownerColumn !== undefined) {
      const { rows } = await knex.raw<{ rows: { type: string }[] }>(
        `select format_type(atttypid, atttypmod) as type from pg_attribute
         where attrelid = ?::regclass and attname = ? and not attisdropped`,
        [access.table, access.ownerColumn],
      )
      const type = rows[0]?.type ?? 'text'
      // Scalar subqueries become init plans: the settings are read once per statement, not once per row.
      ownerCondition = `${quoteIdentifier(access.ownerColumn)} = (select nullif(current_setting('${ACTOR_SETTING}', true), '')::${type})`
    }
    statements.push(
      `grant select, insert, update, delete on ${table} to ${SCOPED_DATABASE_ROLE}`,
      `alter table ${table} enable row level security`,
      `alter table ${table} force row level security`,
    )
    for (const [action, command] of Object.entries(ACTIONS) as [AccessAction, string][]) {
      const all = roleNames.filter((r) => accessLevel(access.policy, roles, r, action) === 'all')
      const own = roleNames.filter((r) => accessLevel(access.policy, roles, r, action) === 'own')
      const role = `(select current_setting('${ROLE_SETTING}', true))`
      const parts = [`(select coalesce(current_setting('${ROLE_SETTING}', true), '')) = ''`]
      if (all.length > 0) parts.push(`${role} = any(${literalList(all)})`)
      if (own.length > 0) parts.push(`(${role} = any(${literalList(own)}) and ${ownerCondition})`)
      // Every scoped actor writes the audit rows of its own changes, and only those: its id and its role.
      if (access.table === AUDIT_TABLE && command === 'insert') {
        parts.push(
          `(actor_id = (select nullif(current_setting('${ACTOR_SETTING}', true), '')::uuid) and actor_role = ${role})`,
        )
      }
      const condition = parts.join(' or ')
      const name = quoteIdentifier(`wincloud_${command}`)
      statements.push(`drop policy if exists ${name} on ${table}`)
      statements.push(
        command === 'insert'
          ? `create policy ${name} on ${table} for insert with check (${condition})`
          : command === 'update'
            ? `create policy ${name} on ${table} for update using (${condition}) with check (${condition})`
            : `create policy ${name} on ${table} for ${command} using (${condition})`,
      )
    }
  }
  return statements
}

/**
 * Installs (or refreshes) row-level security for the models, in one transaction.
 *
 * @internal
 */
export async function installRowLevelSecurity(
  knex: Knex,
  models: readonly (typeof Model)[],
  roles: Readonly<Record<string, RolePermissions>>,
): Promise<void> {
  await knex.transaction(async (trx) => {
    for (const statement of await rowLevelSecurityStatements(trx, models, roles)) await trx.raw(statement)
  })
}
