import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createDatabase, Droplet, User, type Database } from '../../src/index.js'
import { adminQuery, createTestDatabase, openTestDatabase, type TestDatabase } from '../helpers/database.js'

interface World {
  db: Database
  alice: User
  bob: User
  admin: User
}

async function populate(db: Database): Promise<World> {
  const make = (name: string, role = 'user') =>
    db
      .model(User)
      .query()
      .insertAndFetch({ email: `${name}@example.com`, username: name, passwordHash: 'x', role })
  const alice = await make('alice')
  const bob = await make('bob')
  const admin = await make('root', 'admin')
  for (const [owner, names] of [
    [alice, ['a1', 'a2', 'a3']],
    [bob, ['b1', 'b2']],
  ] as const) {
    await db
      .model(Droplet)
      .query()
      .insert(names.map((name) => ({ userId: owner.id, name, region: 'nyc3', size: 's' })))
  }
  return { db, alice, bob, admin }
}

/** Raw SQL inside a scoped transaction: what the database itself lets the actor see and do. */
async function rawChecks({ db, alice, bob, admin }: World): Promise<void> {
  const names = (rows: { name: string }[]) => rows.map((r) => r.name).sort()
  await db
    .scope(alice)
    .transaction(async (tx) => {
      const droplets = await tx.knex.raw<{ rows: { name: string }[] }>('select name from droplets')
      expect(names(droplets.rows)).toEqual(['a1', 'a2', 'a3'])
      const users = await tx.knex.raw<{ rows: { id: string }[] }>('select id from users')
      expect(users.rows.map((u) => u.id)).toEqual([alice.id])
      const updated = await tx.knex.raw<{ rowCount: number }>(`update droplets set status = 'error'`)
      expect(updated.rowCount).toBe(3)
      const deleted = await tx.knex.raw<{ rowCount: number }>(`delete from droplets where user_id = ?`, [bob.id])
      expect(deleted.rowCount).toBe(0)
      const { rows } = await tx.knex.raw<{ rows: { user: string; bypass: boolean }[] }>(
        `select current_user as "user", (select rolbypassrls or rolsuper from pg_roles where rolname = current_user) as bypass`,
      )
      expect(rows[0]).toEqual({ user: 'wincloud_scoped', bypass: false })
      throw new Error('roll back')
    })
    .catch((error: unknown) => {
      if (!(error instanceof Error) || error.message !== 'roll back') throw error
    })
  // Writing a row for someone else is refused by the database too.
  await expect(
    db
      .scope(alice)
      .transaction((tx) =>
        tx.knex.raw(
          `insert into droplets (id, user_id, name, region, size) values (gen_random_uuid(), ?, 'evil', 'nyc3', 's')`,
          [bob.id],
        ),
      ),
  ).rejects.toMatchObject({ name: 'ForbiddenError', cause: { message: expect.stringMatching(/row-level security/) } })
  await db.scope(admin).transaction(async (tx) => {
    const all = await tx.knex.raw<{ rows: { name: string }[] }>('select name from droplets')
    expect(all.rows).toHaveLength(5)
  })
  expect(await db.model(Droplet).query().where('status', 'error').resultSize()).toBe(0)
  expect(await db.model(Droplet).query().where('name', 'evil').resultSize()).toBe(0)
}

describe('row-level security (rls: true)', () => {
  let world: World
  let cleanup: () => Promise<void>

  beforeAll(async () => {
    const opened = await openTestDatabase({ rls: true })
    cleanup = opened.cleanup
    world = await populate(opened.db)
  })
  afterAll(async () => {
    await cleanup()
  })

  it('installs policies on the library tables', async () => {
    const { rows } = await world.db.knex.raw<{ rows: { tablename: string; policyname: string }[] }>(
      `select tablename, policyname from pg_policies order by tablename, policyname`,
    )
    expect(rows.filter((r) => r.tablename === 'droplets').map((r) => r.policyname)).toEqual([
      'wincloud_delete',
      'wincloud_insert',
      'wincloud_select',
      'wincloud_update',
    ])
  })

  it('holds below the library for raw SQL when the login role is a superuser', async () => {
    const { rows } = await world.db.knex.raw<{ rows: { rolsuper: boolean }[] }>(
      'select rolsuper from pg_roles where rolname = current_user',
    )
    expect(rows[0]?.rolsuper).toBe(true)
    await rawChecks(world)
  })

  it('keeps every repository call working, scoped as without RLS', async () => {
    const { db, alice, bob, admin } = world
    expect(await db.scope(alice).repo(Droplet).count()).toBe(3)
    expect(await db.scope(admin).repo(Droplet).count()).toBe(5)
    expect(
      await db
        .scope(bob)
        .repo(Droplet)
        .list({ filter: { name: { in: ['a1', 'b1'] } } }),
    ).toHaveLength(1)
    const made = await db.scope(bob).repo(Droplet).create({ name: 'b3', region: 'ams3', size: 's' })
    expect(made.userId).toBe(bob.id)
    await db.scope(bob).repo(Droplet).update(made.id, { status: 'active' })
    const withOwner = await db.scope(bob).repo(Droplet).query().withGraphFetched('owner')
    expect(withOwner.map((d) => d.owner?.id)).toEqual(withOwner.map(() => bob.id))
    await db.scope(bob).repo(Droplet).delete(made.id)
  })

  it('leaves unscoped paths alone: system scopes, model classes, migrations', async () => {
    const { db } = world
    expect(await db.system('rls test').repo(Droplet).count()).toBe(5)
    expect(await db.model(Droplet).query().resultSize()).toBe(5)
    expect(await db.migrate.latest()).toMatchObject({ migrations: [] })
    expect(await db.migrate.status()).toMatchObject({ pending: [] })
  })
})

describe('row-level security when the login role owns the tables', () => {
  let testDb: TestDatabase
  let world: World
  let role: string

  beforeAll(async () => {
    testDb = await createTestDatabase()
    role = `owner_${randomBytes(4).toString('hex')}`
    const password = randomBytes(12).toString('hex')
    await adminQuery(`create role ${role} login createrole password '${password}'`)
    await adminQuery(`alter database "${testDb.name}" owner to ${role}`)
    const url = new URL(testDb.url)
    url.username = role
    url.password = password
    const db = await createDatabase({ connection: url.toString(), rls: true })
    await db.migrate.latest()
    world = await populate(db)
  })
  afterAll(async () => {
    await world?.db.close()
    await testDb.drop()
    await adminQuery(`drop role if exists ${role}`)
  })

  it('holds for raw SQL in a scoped transaction', async () => {
    const { rows } = await world.db.knex.raw<{ rows: { owner: string; rolsuper: boolean }[] }>(
      `select tableowner as owner, (select rolsuper from pg_roles where rolname = current_user) as rolsuper
       from pg_tables where tablename = 'droplets'`,
    )
    expect(rows[0]).toEqual({ owner: role, rolsuper: false })
    await rawChecks(world)
  })
})
