import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  AuditLog,
  Droplet,
  ForbiddenError,
  NotFoundError,
  User,
  ValidationError,
  type Database,
} from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'

let db: Database
let cleanup: () => Promise<void>
let alice: User
let bob: User
let admin: User
let aliceDroplets: Droplet[]
let bobDroplets: Droplet[]

async function makeUser(name: string, role = 'user'): Promise<User> {
  return db
    .model(User)
    .query()
    .insertAndFetch({ email: `${name}@example.com`, username: name, passwordHash: 'x', role })
}

beforeAll(async () => {
  ;({ db, cleanup } = await openTestDatabase({ roles: { support: { read: 'all' } } }))
  alice = await makeUser('alice')
  bob = await makeUser('bob')
  admin = await makeUser('root', 'admin')
  const insert = (user: User, names: string[]) =>
    db
      .model(Droplet)
      .query()
      .insert(
        names.map((name, i) => ({
          userId: user.id,
          name,
          region: i % 2 ? 'ams3' : 'nyc3',
          size: 's-1vcpu-2gb',
          status: (['active', 'stopped', 'building'] as const)[i % 3],
        })),
      )
      .returning('*')
  aliceDroplets = await insert(alice, ['a-web', 'a-sql', 'a-rdp'])
  bobDroplets = await insert(bob, ['b-web', 'b-sql'])
})
afterAll(async () => {
  await cleanup()
})

const ids = (rows: { id: string }[]) => rows.map((r) => r.id).sort()

describe('scoped repositories', () => {
  it('gives a user their own rows and an admin every row', async () => {
    expect(ids(await db.scope(alice).repo(Droplet).list())).toEqual(ids(aliceDroplets))
    expect(ids(await db.scope(bob).repo(Droplet).list())).toEqual(ids(bobDroplets))
    expect(ids(await db.scope(admin).repo(Droplet).list())).toEqual(ids([...aliceDroplets, ...bobDroplets]))
    expect(await db.scope(alice).repo(Droplet).count()).toBe(3)
    expect(await db.scope(admin).repo(Droplet).count({ status: 'active' })).toBe(2)
    expect(ids(await db.system('test').repo(Droplet).list())).toHaveLength(5)
  })

  it('answers someone else’s row as not found, for reads, updates and deletes alike', async () => {
    const scope = db.scope(alice)
    const theirs = bobDroplets[0]!.id
    expect(await scope.repo(Droplet).findById(theirs)).toBeUndefined()
    await expect(scope.repo(Droplet).getById(theirs)).rejects.toBeInstanceOf(NotFoundError)
    await expect(scope.repo(Droplet).update(theirs, { status: 'stopped' })).rejects.toBeInstanceOf(NotFoundError)
    await expect(scope.repo(Droplet).delete(theirs)).rejects.toBeInstanceOf(NotFoundError)
    const unchanged = await db.model(Droplet).query().findById(theirs)
    expect(unchanged?.status).toBe(bobDroplets[0]!.status)
    expect(await scope.repo(Droplet).findById('not-a-uuid')).toBeUndefined()
  })

  it('makes a user’s create always their own, and refuses creating for someone else', async () => {
    const scope = db.scope(bob)
    const created = await scope.repo(Droplet).create({ name: 'b-new', region: 'fra1', size: 's-1vcpu-2gb' })
    expect(created.userId).toBe(bob.id)
    expect(created.status).toBe('building')
    await expect(
      scope.repo(Droplet).create({ userId: alice.id, name: 'sneaky', region: 'fra1', size: 's' }),
    ).rejects.toBeInstanceOf(ForbiddenError)
    await expect(scope.repo(Droplet).update(created.id, { userId: alice.id })).rejects.toBeInstanceOf(ForbiddenError)
    const forAlice = await db
      .scope(admin)
      .repo(Droplet)
      .create({ userId: alice.id, name: 'gift', region: 'fra1', size: 's' })
    expect(forAlice.userId).toBe(alice.id)
    await db.scope(admin).repo(Droplet).delete(forAlice.id)
    await scope.repo(Droplet).delete(created.id)
    expect(await db.model(Droplet).query().where('name', 'sneaky').resultSize()).toBe(0)
  })

  it('updates within the scope, validating the patch and bumping updatedAt', async () => {
    const scope = db.scope(alice)
    const target = aliceDroplets[2]!
    const updated = await scope.repo(Droplet).update(target.id, { status: 'active' })
    expect(updated.status).toBe('active')
    expect(updated.updatedAt.getTime()).toBeGreaterThan(target.updatedAt.getTime())
    await expect(scope.repo(Droplet).update(target.id, { status: 'melting' } as never)).rejects.toBeInstanceOf(
      ValidationError,
    )
    await scope.repo(Droplet).update(target.id, { status: 'building' })
  })

  it('lets a user read and edit their own User row but not its role or others', async () => {
    const scope = db.scope(alice)
    expect(ids(await scope.repo(User).list())).toEqual([alice.id])
    const me = await scope.repo(User).update(alice.id, { preferences: { theme: 'dark' } })
    expect(me.preferences).toEqual({ theme: 'dark' })
    await expect(scope.repo(User).update(alice.id, { role: 'admin' })).rejects.toBeInstanceOf(ForbiddenError)
    await expect(scope.repo(User).update(bob.id, { preferences: {} })).rejects.toBeInstanceOf(NotFoundError)
    await expect(
      scope.repo(User).create({ email: 'x@example.com', username: 'xx1', passwordHash: 'x' }),
    ).rejects.toBeInstanceOf(ForbiddenError)
    expect((await db.model(User).query().findById(alice.id))?.role).toBe('user')
  })

  it('supports host roles from config: support reads everything and writes nothing', async () => {
    const support = db.scope({ id: admin.id, role: 'support' })
    expect(await support.repo(Droplet).count()).toBe(5)
    await expect(support.repo(Droplet).update(aliceDroplets[0]!.id, { status: 'stopped' })).rejects.toBeInstanceOf(
      ForbiddenError,
    )
    await expect(support.repo(Droplet).query().patch({ status: 'error' })).rejects.toBeInstanceOf(ForbiddenError)
  })

  it('denies by default: unknown roles and models without a policy', async () => {
    const stranger = db.scope({ id: alice.id, role: 'auditor' })
    await expect(stranger.repo(Droplet).list()).rejects.toBeInstanceOf(ForbiddenError)
    await expect(db.scope(alice).repo(AuditLog).create({ action: 'x.y' })).rejects.toBeInstanceOf(ForbiddenError)
  })

  it('refuses inactive users and malformed actors', () => {
    expect(() => db.scope({ ...alice.toJSON(), id: alice.id, role: 'user', isActive: false })).toThrow(ForbiddenError)
    expect(() => db.scope({ id: 'nope', role: 'user' })).toThrow(ValidationError)
    expect(() => db.scope({ id: alice.id, role: 'system' })).toThrow(ValidationError)
    expect(() => db.system('')).toThrow(ValidationError)
  })

  it('keeps the scope outside any filter: or-clauses never widen it', async () => {
    const scope = db.scope(alice)
    const rows = await scope.repo(Droplet).list({ filter: { or: [{ userId: bob.id }, { status: 'active' }] } })
    expect(rows.every((r) => r.userId === alice.id)).toBe(true)
    const viaQuery = await scope.repo(Droplet).query().where('user_id', bob.id).orWhere('status', 'active')
    expect(viaQuery.every((r) => r.userId === alice.id)).toBe(true)
    const sql = scope
      .repo(Droplet)
      .query()
      .where('user_id', bob.id)
      .orWhere('status', 'active')
      .toKnexQuery()
      .toSQL().sql
    expect(sql).toMatch(/where \("user_id" = \? or "status" = \?\) and "droplets"."user_id" = \?$/)
  })

  it('scopes query() writes and refuses joins', async () => {
    const scope = db.scope(alice)
    const patched = await scope.repo(Droplet).query().patch({ region: 'sgp1' }).where('region', 'nyc3')
    expect(patched).toBe(2)
    expect(await db.model(Droplet).query().where('region', 'sgp1').whereNot('user_id', alice.id).resultSize()).toBe(0)
    await expect(scope.repo(Droplet).query().joinRelated('owner')).rejects.toBeInstanceOf(ValidationError)
    expect(await scope.repo(Droplet).query().delete().where('user_id', bob.id)).toBe(0)
    expect(await db.model(Droplet).query().where('user_id', bob.id).resultSize()).toBe(2)
  })

  it('applies the related model’s policy when eager loading', async () => {
    const scope = db.scope(alice)
    const withOwner = await scope.repo(Droplet).query().withGraphFetched('owner')
    expect(withOwner.map((d) => d.owner?.id)).toEqual(withOwner.map(() => alice.id))
    // An admin loading users with droplets sees all; a user loading their own user sees only their droplets.
    const me = await scope.repo(User).query().withGraphFetched('droplets').first()
    expect(ids(me!.droplets!)).toEqual(ids(aliceDroplets))
  })

  it('runs a scope transaction all or nothing', async () => {
    const scope = db.scope(alice)
    await expect(
      scope.transaction(async (tx) => {
        await tx.repo(Droplet).create({ name: 'in-tx', region: 'nyc3', size: 's' })
        throw new Error('boom')
      }),
    ).rejects.toThrow('boom')
    expect(await db.model(Droplet).query().where('name', 'in-tx').resultSize()).toBe(0)
    const made = await scope.transaction(async (tx) =>
      tx.repo(Droplet).create({ name: 'kept', region: 'nyc3', size: 's' }),
    )
    expect(await scope.repo(Droplet).findById(made.id)).toBeDefined()
    await scope.repo(Droplet).delete(made.id)
  })
})
