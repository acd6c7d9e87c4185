/**
 * Attack class: rewriting or forging the audit trail from the application.
 *
 * The application logs in as a role that does not own the tables and has exactly the grants docs/audit-log.md
 * lists (plus `wincloud_scoped` with row-level security). With that role, and through the library's API, an
 * attacker who controls the application's SQL or its requests tries to UPDATE, DELETE and TRUNCATE audit rows, to
 * purge them, to disable, drop or replace the triggers and their functions, to move the chain's head, to write
 * rows in someone else's name, and to read other users' rows as a user scope. Each attempt is refused; the audit
 * rows, the chain's head, the triggers and the functions are exactly what they were, read by a superuser.
 * (The hash chain's tamper evidence has its own file.)
 */
import { randomBytes, randomUUID } from 'node:crypto'
import pg from 'pg'
import { afterAll, beforeAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  AuditLog,
  createDatabase,
  Droplet,
  ForbiddenError,
  NotFoundError,
  User,
  ValidationError,
  type Database,
  type Filter,
} from '../../src/index.js'
import { adminQuery, openTestDatabase, createApplicationRole } from '../helpers/database.js'

describe.each([false, true])('the audit tables against the application role (rls: %s)', (rls) => {
  let owner: Database
  let app: Database
  let url: string
  let cleanup: () => Promise<void>
  let role: string
  let alice: User
  let bob: User
  let admin: User
  let client: pg.Client
  let before: string[]

  const direct = async <R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> =>
    (await client.query<R>(sql, params)).rows

  /** The audit rows, the chain's head, the triggers on audit_logs and the audit functions, as text. */
  const state = async (): Promise<string[]> =>
    (
      await direct<{ row: string }>(
        `select 'row ' || a::text as row from audit_logs a
         union all select 'head ' || c::text from wincloud_audit_chain c
         union all select 'trigger ' || tgname || ' ' || tgenabled::text || ' ' || pg_get_triggerdef(oid)
           from pg_trigger where tgrelid = 'audit_logs'::regclass and not tgisinternal
         union all select 'function ' || p.oid::regprocedure::text || ' ' || md5(p.prosrc) || ' ' || p.proowner::regrole::text
           from pg_proc p where p.proname like 'wincloud_audit%'
         union all select 'table ' || relname || ' ' || relrowsecurity::text || ' ' || relforcerowsecurity::text || ' '
           || relowner::regrole::text from pg_class where relname = 'audit_logs'
         union all select 'policy ' || policyname || ' ' || coalesce(qual, '') || ' ' || coalesce(with_check, '')
           from pg_policies where tablename = 'audit_logs'
         order by row`,
      )
    ).map((r) => r.row)

  /** A statement the application role runs on its own connection: refused by PostgreSQL with SQLSTATE 42501. */
  const refusedSql = async (sql: string, bindings: readonly unknown[] = []): Promise<void> => {
    await expect(app.knex.raw(sql, bindings as never[]), sql).rejects.toMatchObject({ code: '42501' })
  }

  beforeAll(async () => {
    ;({ db: owner, url, cleanup } = await openTestDatabase({ rls }))
    client = new pg.Client({ connectionString: url })
    await client.connect()
    const created = await createApplicationRole(url, { rls: rls })
    role = created.role
    const appUrl = created.url
    app = await createDatabase({ connection: appUrl, rls })

    const make = (name: string, userRole = 'user') =>
      owner
        .model(User)
        .query()
        .insertAndFetch({ email: `${name}@example.com`, username: name, passwordHash: 'x', role: userRole })
    alice = await make('alice')
    bob = await make('bob')
    admin = await make('root', 'admin')
    await owner.audit.enableHashChain()
    // History written by the application, as it would be.
    for (const user of [alice, bob]) {
      const d = await app
        .scope(user, { requestId: `r-${user.username}` })
        .repo(Droplet)
        .create({
          name: `${user.username}-1`,
          region: 'nyc3',
          size: 's',
        })
      await app.scope(user).repo(Droplet).update(d.id, { status: 'active' })
      await app.scope(user).audit.record('droplet.reboot', { entityType: 'droplet', entityId: d.id })
    }
    await app.scope(admin).audit.record('admin.note')
  })
  afterAll(async () => {
    await app?.close()
    await client?.end()
    await cleanup()
    await adminQuery(`drop role if exists ${role}`)
  })
  beforeEach(async () => {
    before = await state()
    expect(before.filter((r) => r.startsWith('row ')).length).toBeGreaterThanOrEqual(7)
  })
  afterEach(async () => {
    // The checks below leave no trace: not even a row of their own.
    expect(await state()).toEqual(before)
  })

  it('the application role owns nothing and has only the documented grants', async () => {
    const rows = await direct<{ owner: boolean; superuser: boolean; bypass: boolean }>(
      `select pg_has_role($1, relowner, 'member') as owner, r.rolsuper as superuser, r.rolbypassrls as bypass
       from pg_class, pg_roles r where relname = 'audit_logs' and r.rolname = $1`,
      [role],
    )
    expect(rows).toEqual([{ owner: false, superuser: false, bypass: false }])
    const grants = await direct<{ privilege: string }>(
      `select privilege_type as privilege from information_schema.role_table_grants
       where grantee = $1 and table_name = 'audit_logs' order by 1`,
      [role],
    )
    expect(grants.map((g) => g.privilege)).toEqual(['INSERT', 'SELECT'])
  })

  it('refuses UPDATE, DELETE and TRUNCATE of audit rows', async () => {
    const id = (await direct<{ id: string }>('select id::text as id from audit_logs limit 1'))[0]!.id
    await refusedSql(`update audit_logs set action = 'forged.entry'`)
    await refusedSql(`update audit_logs set metadata = '{}' where id = ?`, [id])
    await refusedSql('delete from audit_logs')
    await refusedSql('delete from audit_logs where id = ?', [id])
    await refusedSql('truncate audit_logs')
    await expect(
      app.knex.transaction(async (trx) => {
        await trx.raw(`set local wincloud.audit_purge = 'on'`)
        await trx.raw('delete from audit_logs where id = ?', [id])
      }),
    ).rejects.toMatchObject({ code: '42501' })
    // Through the library's unscoped handle too: a ForbiddenError, the driver's refusal as its cause.
    for (const attempt of [
      () => app.model(AuditLog).query().patch({ action: 'forged.entry' }),
      () => app.model(AuditLog).query().delete(),
      () => app.model(AuditLog).query().deleteById(id),
    ]) {
      await expect(attempt()).rejects.toBeInstanceOf(ForbiddenError)
    }
    // And through every scope's repository, admins' included.
    for (const scope of [app.scope(alice), app.scope(admin), app.system('cleanup')]) {
      const repo = scope.repo(AuditLog)
      await expect(repo.update(id, { action: 'forged.entry' })).rejects.toBeInstanceOf(ForbiddenError)
      await expect(repo.delete(id)).rejects.toBeInstanceOf(ForbiddenError)
      await expect(repo.bulkUpdate([id], { action: 'forged.entry' })).rejects.toBeInstanceOf(ForbiddenError)
      await expect(repo.query().patch({ action: 'forged.entry' })).rejects.toBeInstanceOf(ForbiddenError)
      await expect(repo.query().delete()).rejects.toBeInstanceOf(ForbiddenError)
    }
  })

  it('refuses purging, through the library and through the SQL function', async () => {
    const future = new Date(Date.now() + 3_600_000)
    await expect(app.audit.purge({ before: future, reason: 'cover my tracks' })).rejects.toBeInstanceOf(ForbiddenError)
    await refusedSql("select * from wincloud_audit_purge(now() + interval '1 hour')")
    await expect(
      app.knex.transaction(async (trx) => {
        await trx.raw(`set local wincloud.audit_purge = 'on'`)
        await trx.raw(`select * from wincloud_audit_purge(now() + interval '1 hour')`)
      }),
    ).rejects.toMatchObject({ code: '42501' })
  })

  it('refuses disabling, dropping or replacing the triggers, their functions and the chain head', async () => {
    for (const sql of [
      'alter table audit_logs disable trigger all',
      'alter table audit_logs disable trigger wincloud_audit_logs_append_only',
      'alter table audit_logs disable trigger wincloud_audit_logs_no_truncate',
      'alter table audit_logs disable trigger wincloud_audit_logs_chain_row',
      'drop trigger wincloud_audit_logs_append_only on audit_logs',
      'drop trigger wincloud_audit_logs_chain_head on audit_logs',
      `create or replace trigger wincloud_audit_logs_append_only before insert on audit_logs
         for each row execute function wincloud_audit_canonical()`,
      `create or replace function wincloud_audit_append_only() returns trigger language plpgsql as $$
         begin return coalesce(new, old); end $$`,
      `create or replace function wincloud_audit_purge(cutoff timestamptz)
         returns table (deleted bigint, anchor_seq bigint) language sql as $$ select 0::bigint, 0::bigint $$`,
      'drop function wincloud_audit_append_only() cascade',
      'alter function wincloud_audit_chain_row() owner to current_user',
      'alter table audit_logs owner to current_user',
      'drop table audit_logs',
      'alter table audit_logs rename to audit_logs_old',
      'alter table audit_logs no force row level security',
      'alter table audit_logs disable row level security',
      `update wincloud_audit_chain set last_seq = 0`,
      `update wincloud_audit_chain set anchor_seq = last_seq`,
      `delete from wincloud_audit_chain`,
      'set session_replication_role = replica',
      'create rule forged as on insert to audit_logs do instead nothing',
    ]) {
      await refusedSql(sql)
    }
    if (rls) {
      await refusedSql('drop policy wincloud_insert on audit_logs')
      await refusedSql('alter policy wincloud_insert on audit_logs with check (true)')
    }
    await expect(app.audit.enableHashChain()).rejects.toThrow()
  })

  it('records custom events with the scope’s own actor, and refuses fields that would name another', async () => {
    const scope = app.scope(alice, { requestId: 'forge' })
    for (const event of [
      { actorId: bob.id },
      { actorRole: 'admin' },
      { actor: { id: bob.id, role: 'admin' } },
      { id: randomUUID() },
      { createdAt: new Date(0) },
      { chainSeq: '1' },
      { rowHash: '00' },
      { prevHash: '00' },
      { entityType: 'droplet', actorId: null },
    ]) {
      await expect(scope.audit.record('droplet.reboot', event as never), JSON.stringify(event)).rejects.toBeInstanceOf(
        ValidationError,
      )
    }
    await expect(scope.repo(AuditLog).create({ action: 'forged.entry', actorId: bob.id })).rejects.toBeInstanceOf(
      ForbiddenError,
    )
    await expect(
      scope.repo(AuditLog).query().insert({ action: 'forged.entry', actorId: bob.id }),
    ).rejects.toBeInstanceOf(ForbiddenError)
    await expect(scope.repo(AuditLog).bulkCreate([{ action: 'forged.entry', actorId: bob.id }])).rejects.toBeInstanceOf(
      ForbiddenError,
    )
    // What may be written is stamped with Alice, whatever the metadata says; then rolled back, leaving no trace.
    await scope
      .transaction(async (tx) => {
        const logged = await tx.audit.record('auth.login', {
          entityType: 'user',
          entityId: bob.id,
          metadata: { actorId: bob.id, actorRole: 'admin', reason: 'ok' },
        })
        const rows = await tx.knex.raw<{ rows: { actor: string; role: string }[] }>(
          'select actor_id::text as actor, actor_role as role from audit_logs where id = ?',
          [logged.id],
        )
        expect(rows.rows).toEqual([{ actor: alice.id, role: 'user' }])
        expect(logged).toMatchObject({ actorId: alice.id, actorRole: 'user' })
        throw new Error('roll back')
      })
      .catch((error: unknown) => {
        if (!(error instanceof Error) || error.message !== 'roll back') throw error
      })
  })

  it.runIf(rls)('refuses raw SQL in a user’s transaction that writes in another name or rewrites rows', async () => {
    const insert = `insert into audit_logs (id, actor_id, actor_role, action, created_at)
      values (gen_random_uuid(), ?, ?, 'forged.entry', clock_timestamp())`
    for (const [actorId, actorRole] of [
      [bob.id, 'user'],
      [alice.id, 'admin'],
      [null, 'system'],
      [null, null],
    ] as const) {
      await expect(
        app.scope(alice).transaction((tx) => tx.knex.raw(insert, [actorId, actorRole])),
        `${actorId} ${actorRole}`,
      ).rejects.toBeInstanceOf(ForbiddenError)
    }
    // Updates and deletes see no audit row to change (the policies give users none), so they change nothing;
    // TRUNCATE is not granted to the scoped role at all.
    for (const sql of [
      `update audit_logs set action = 'forged.entry'`,
      `update audit_logs set action = 'forged.entry' where actor_id = ?`,
      'delete from audit_logs',
      'delete from audit_logs where actor_id = ?',
    ]) {
      const result = await app
        .scope(alice)
        .transaction((tx) => tx.knex.raw<{ rowCount: number }>(sql, sql.includes('?') ? [alice.id] : []))
      expect(result.rowCount, sql).toBe(0)
    }
    await expect(app.scope(alice).transaction((tx) => tx.knex.raw('truncate audit_logs'))).rejects.toBeInstanceOf(
      ForbiddenError,
    )
  })

  it('shows a user only the entries where they are the actor', async () => {
    const bobsRows = await direct<{ id: string }>('select id::text as id from audit_logs where actor_id = $1', [bob.id])
    const ownCount = (await direct('select 1 from audit_logs where actor_id = $1', [alice.id])).length
    expect(bobsRows.length).toBeGreaterThan(0)
    const repo = app.scope(alice).repo(AuditLog)
    expect(await repo.count()).toBe(ownCount)
    expect((await repo.list({ limit: 100 })).every((r) => r.actorId === alice.id)).toBe(true)
    for (const { id } of bobsRows) {
      expect(await repo.findById(id)).toBeUndefined()
      await expect(repo.getById(id)).rejects.toBeInstanceOf(NotFoundError)
    }
    const filters: Filter<typeof AuditLog>[] = [
      { actorId: bob.id },
      { or: [{ actorId: bob.id }, { action: 'admin.note' }] },
      { not: { actorId: alice.id } },
      { action: 'admin.note' },
    ]
    for (const filter of filters) {
      expect(await repo.list({ filter }), JSON.stringify(filter)).toEqual([])
      expect(await repo.count(filter), JSON.stringify(filter)).toBe(0)
      expect((await repo.list({ filter, page: { size: 50 } })).items).toEqual([])
      expect((await repo.list({ filter, page: { number: 1, size: 50, exactTotal: true } })).total).toBe(0)
    }
    expect(await repo.query().where('actor_id', bob.id).orWhereNull('actor_id').orWhereRaw('true')).toSatisfy(
      (rows: AuditLog[]) => rows.every((r) => r.actorId === alice.id),
    )
    if (rls) {
      const seen = await app
        .scope(alice)
        .transaction((tx) =>
          tx.knex.raw<{ rows: { actor: string | null }[] }>('select actor_id::text as actor from audit_logs'),
        )
      expect(seen.rows.length).toBe(ownCount)
      expect(seen.rows.every((r) => r.actor === alice.id)).toBe(true)
    }
  })
})

describe('the append-only trigger against a shadowed catalog', () => {
  it('a role with DELETE granted cannot pass its temporary pg_class off as the owner’s purge', async () => {
    const { db, url, cleanup } = await openTestDatabase()
    const role = `del_${randomBytes(5).toString('hex')}`
    const password = randomBytes(12).toString('hex')
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      await db.system('seed').audit.record('test.event')
      await adminQuery(`create role ${role} login password '${password}'`)
      // More than the docs grant: DELETE, and a schema to make temporary tables in is there for every role.
      await client.query(`grant select, delete on audit_logs to ${role}`)
      const connection = new URL(url)
      connection.username = role
      connection.password = password
      const attacker = new pg.Client({ connectionString: connection.toString() })
      await attacker.connect()
      try {
        await attacker.query('set search_path = pg_temp, pg_catalog, public')
        await attacker.query('create temp table pg_class (oid oid, relowner oid)')
        await attacker.query(
          `insert into pg_temp.pg_class select 'public.audit_logs'::regclass, r.oid from pg_catalog.pg_roles r
           where r.rolname = current_user`,
        )
        await attacker.query('begin')
        await attacker.query(`select set_config('wincloud.audit_purge', 'on', true)`)
        await expect(attacker.query('delete from public.audit_logs')).rejects.toMatchObject({ code: '42501' })
        await attacker.query('rollback')
      } finally {
        await attacker.end()
      }
      const { rows } = await client.query<{ n: number }>('select count(*)::int as n from audit_logs')
      expect(rows[0]!.n).toBeGreaterThan(0)
    } finally {
      await client.end()
      await cleanup()
      await adminQuery(`drop role if exists ${role}`)
    }
  })
})
