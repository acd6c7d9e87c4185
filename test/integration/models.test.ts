import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BaseModel, ConflictError, DataError, Droplet, User, ValidationError, type Database } from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'

let db: Database
let cleanup: () => Promise<void>

async function newUser(name: string): Promise<User> {
  return db
    .model(User)
    .query()
    .insertAndFetch({ email: `${name}@example.com`, username: name, passwordHash: 'x' })
}

/** A host model without a JSON schema: nothing is validated in JavaScript, so the database's constraints answer. */
class LooseDroplet extends BaseModel {
  static override tableName = 'droplets'
  declare userId: string
  declare name: string
  declare region: string
  declare size: string
  declare status: string
}

beforeAll(async () => {
  ;({ db, cleanup } = await openTestDatabase())
})
afterAll(async () => {
  await cleanup()
})

describe('models', () => {
  it('makes UUIDv7 ids in the application and keeps createdAt / updatedAt', async () => {
    const before = Date.now()
    const user = await newUser('ada')
    expect(user.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(user.role).toBe('user')
    expect(user.isActive).toBe(true)
    expect(user.preferences).toEqual({})
    expect(user.createdAt).toBeInstanceOf(Date)
    expect(user.createdAt.getTime()).toBeGreaterThanOrEqual(before - 5)
    expect(user.updatedAt.getTime()).toBe(user.createdAt.getTime())

    await new Promise((resolve) => setTimeout(resolve, 15))
    await db
      .model(User)
      .query()
      .findById(user.id)
      .patch({ preferences: { theme: 'dark' } })
    const again = await db.model(User).query().findById(user.id).throwIfNotFound()
    expect(again.preferences).toEqual({ theme: 'dark' })
    expect(again.updatedAt.getTime()).toBeGreaterThan(user.updatedAt.getTime())
    expect(again.createdAt.getTime()).toBe(user.createdAt.getTime())
  })

  it('maps snake_case columns to camelCase properties', async () => {
    const user = await newUser('grace')
    const row = await db.knex('users').where('id', user.id).first()
    expect(row).toHaveProperty('password_hash', 'x')
    expect(row).toHaveProperty('is_active', true)
    expect(user).toHaveProperty('passwordHash', 'x')
  })

  it('never puts passwordHash in toJSON', async () => {
    const user = await newUser('linus')
    expect(user.passwordHash).toBe('x')
    expect(JSON.stringify(user)).not.toContain('passwordHash')
    expect(user.toJSON()).not.toHaveProperty('passwordHash')
  })

  it('rejects invalid droplets with a ValidationError listing each field, and writes nothing', async () => {
    const owner = await newUser('barbara')
    const error = await db
      .model(Droplet)
      .query()
      .insert({ userId: owner.id, name: '', region: 'NYC 3', size: 'Big!', status: 'running' } as never)
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ValidationError)
    const fields = (error as ValidationError).details.map((d) => d.field).sort()
    expect(fields).toEqual(['name', 'region', 'size', 'status'])
    expect((error as ValidationError).message).not.toContain('NYC 3')
    expect(await db.model(Droplet).query().where('user_id', owner.id).resultSize()).toBe(0)
  })

  it('validates names of 1..255 characters, ip addresses, and patches', async () => {
    const owner = await newUser('ken')
    const ok = await db
      .model(Droplet)
      .query()
      .insertAndFetch({
        userId: owner.id,
        name: 'x'.repeat(255),
        region: 'nyc3',
        size: 's-1vcpu-2gb',
        ipAddress: '2001:db8::1',
      })
    expect(ok.status).toBe('building')
    expect(ok.ipAddress).toBe('2001:db8::1')
    await expect(
      db
        .model(Droplet)
        .query()
        .insert({ userId: owner.id, name: 'x'.repeat(256), region: 'nyc3', size: 's' }),
    ).rejects.toMatchObject({ details: [{ field: 'name', keyword: 'maxLength' }] })
    await expect(
      db
        .model(Droplet)
        .query()
        .insert({ userId: owner.id, name: 'a', region: 'nyc3', size: 's', ipAddress: '999.1.1.1' }),
    ).rejects.toBeInstanceOf(ValidationError)
    await expect(
      db
        .model(Droplet)
        .query()
        .findById(ok.id)
        .patch({ status: 'exploded' } as never),
    ).rejects.toBeInstanceOf(ValidationError)
    await expect(
      db
        .model(Droplet)
        .query()
        .findById(ok.id)
        .patch({ unknownField: 1 } as never),
    ).rejects.toMatchObject({
      details: [{ keyword: 'additionalProperties' }],
    })
    const unchanged = await db.model(Droplet).query().findById(ok.id)
    expect(unchanged?.status).toBe('building')
  })

  it('validates users: email format, username pattern', async () => {
    await expect(
      db.model(User).query().insert({ email: 'not-an-email', username: 'a b', passwordHash: 'x' }),
    ).rejects.toMatchObject({ details: [{ field: 'email' }, { field: 'username' }] })
  })

  it('turns a case-insensitive duplicate email or username into a ConflictError naming constraint and column', async () => {
    await newUser('margaret')
    const error = await db
      .model(User)
      .query()
      .insert({ email: 'MARGARET@example.com', username: 'other', passwordHash: 'x' })
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConflictError)
    expect(error).toMatchObject({
      kind: 'unique',
      table: 'users',
      constraint: 'users_email_unique',
      columns: ['email'],
    })
    expect((error as ConflictError).message).not.toContain('margaret')
    expect(JSON.stringify(error)).not.toContain('margaret')
    await expect(
      db.model(User).query().insert({ email: 'other@example.com', username: 'Margaret', passwordHash: 'x' }),
    ).rejects.toMatchObject({ constraint: 'users_username_unique', httpStatus: 409 })
  })

  it('turns foreign-key violations into ConflictErrors, both ways', async () => {
    await expect(
      db
        .model(Droplet)
        .query()
        .insert({ userId: '01900000-0000-7000-8000-000000000000', name: 'a', region: 'nyc3', size: 's' }),
    ).rejects.toMatchObject({ name: 'ConflictError', kind: 'foreign-key', table: 'droplets', columns: ['user_id'] })
    const owner = await newUser('dennis')
    await db.model(Droplet).query().insert({ userId: owner.id, name: 'keep', region: 'nyc3', size: 's' })
    await expect(db.model(User).query().deleteById(owner.id)).rejects.toMatchObject({
      kind: 'foreign-key',
      table: 'users',
      columns: ['id'],
      message: expect.stringMatching(/^The users row is still referenced from droplets \(/),
    })
  })

  it('turns CHECK and NOT NULL violations into ValidationErrors naming the field', async () => {
    const owner = await newUser('edsger')
    await expect(
      db
        .model(LooseDroplet)
        .query()
        .insert({ userId: owner.id, name: 'a', region: 'nyc3', size: 's', status: 'on fire' }),
    ).rejects.toMatchObject({
      name: 'ValidationError',
      constraint: 'droplets_status_check',
      details: [{ field: 'status', keyword: 'check' }],
    })
    await expect(
      db.model(LooseDroplet).query().insert({ userId: owner.id, region: 'nyc3', size: 's' }),
    ).rejects.toMatchObject({
      name: 'ValidationError',
      details: [{ field: 'name', keyword: 'not-null' }],
    })
    await expect(
      db.model(LooseDroplet).query().insert({ userId: 'not-a-uuid', name: 'a', region: 'nyc3', size: 's' }),
    ).rejects.toBeInstanceOf(ValidationError)
  })

  it('eager-loads owner and droplets with withGraphFetched', async () => {
    const owner = await newUser('alan')
    await db
      .model(Droplet)
      .query()
      .insert([
        { userId: owner.id, name: 'one', region: 'nyc3', size: 's' },
        { userId: owner.id, name: 'two', region: 'ams3', size: 's' },
      ])
    const withDroplets = await db.model(User).query().findById(owner.id).withGraphFetched('droplets').throwIfNotFound()
    expect(withDroplets.droplets?.map((d) => d.name).sort()).toEqual(['one', 'two'])
    expect(withDroplets.droplets?.[0]).toBeInstanceOf(Droplet)
    const droplets = await db.model(Droplet).query().where('user_id', owner.id).withGraphFetched('owner')
    expect(droplets.map((d) => d.owner?.username)).toEqual(['alan', 'alan'])
    expect(JSON.stringify(droplets)).not.toContain('passwordHash')
  })

  it('binds models per database: unbound models have no connection', async () => {
    const other = await openTestDatabase()
    try {
      const here = await newUser('bjarne')
      expect(db.model(User)).not.toBe(other.db.model(User))
      expect(db.model(User)).toBe(db.model(User))
      expect(await other.db.model(User).query().findById(here.id)).toBeUndefined()
      expect(await db.model(User).query().findById(here.id)).toBeDefined()
      // A DataError that says what to do, not objection's bare "no database connection available".
      await expect(User.query().findById(here.id)).rejects.toThrow(
        /^User is not bound to a database: query it through db\.model\(User\)\.query\(\)/,
      )
      await expect(User.query().findById(here.id)).rejects.toBeInstanceOf(DataError)
    } finally {
      await other.cleanup()
    }
  })
})
