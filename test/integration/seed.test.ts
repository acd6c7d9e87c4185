import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Droplet, User, ValidationError, verifyPassword, type Database } from '../../src/index.js'
import { fastHash, openTestDatabase } from '../helpers/database.js'

let db: Database
let cleanup: () => Promise<void>

beforeAll(async () => {
  ;({ db, cleanup } = await openTestDatabase())
})
afterAll(async () => {
  await cleanup()
})

async function snapshot(): Promise<unknown> {
  const users = await db.model(User).query().orderBy('email')
  const droplets = await db.model(Droplet).query().orderBy('name')
  return {
    users: users.map((u) => [u.id, u.email, u.passwordHash, u.role]),
    droplets: droplets.map((d) => [d.id, d.name]),
  }
}

describe('db.seed.development', () => {
  it('creates an admin with a fresh generated password, sample users and droplets, once', async () => {
    const first = await db.seed.development({ users: 2, dropletsPerUser: 4, passwordHash: fastHash })
    expect(first.admin).toMatchObject({ email: 'admin@wincloud.test', username: 'admin', created: true })
    expect(first.admin.generatedPassword).toMatch(/^[A-Za-z0-9_-]{24}$/)
    expect(first.usersCreated).toBe(2)
    expect(first.dropletsCreated).toBe(8)

    const admin = await db.model(User).query().findById(first.admin.id).throwIfNotFound()
    expect(admin.role).toBe('admin')
    expect(admin.passwordHash).not.toContain(first.admin.generatedPassword)
    expect(await verifyPassword(first.admin.generatedPassword!, admin.passwordHash)).toBe(true)
    for (const user of first.users) {
      const row = await db.model(User).query().findById(user.id).throwIfNotFound()
      expect(await verifyPassword(user.generatedPassword!, row.passwordHash)).toBe(true)
      expect(await db.model(Droplet).query().where('user_id', user.id).resultSize()).toBe(4)
    }

    const before = await snapshot()
    const second = await db.seed.development({ users: 2, dropletsPerUser: 4, passwordHash: fastHash })
    expect(second.admin.created).toBe(false)
    expect(second.admin.generatedPassword).toBeUndefined()
    expect(second.admin.id).toBe(first.admin.id)
    expect(second.usersCreated).toBe(0)
    expect(second.dropletsCreated).toBe(0)
    expect(await snapshot()).toEqual(before)
  })

  it('never uses a constant password: two databases get different ones', async () => {
    const other = await openTestDatabase()
    try {
      const a = await other.db.seed.development({ users: 0, passwordHash: fastHash })
      const b = await db.seed.development({
        adminEmail: 'root@wincloud.test',
        adminUsername: 'root',
        users: 0,
        passwordHash: fastHash,
      })
      expect(a.admin.generatedPassword).toBeDefined()
      expect(b.admin.generatedPassword).toBeDefined()
      expect(a.admin.generatedPassword).not.toBe(b.admin.generatedPassword)
    } finally {
      await other.cleanup()
    }
  })

  it('uses the caller’s admin password and does not return it', async () => {
    const result = await db.seed.development({
      adminEmail: 'ops@wincloud.test',
      adminUsername: 'ops',
      adminPassword: 'chosen by the caller',
      users: 0,
      passwordHash: fastHash,
    })
    expect(result.admin.created).toBe(true)
    expect(result.admin.generatedPassword).toBeUndefined()
    expect(JSON.stringify(result)).not.toContain('chosen by the caller')
    const row = await db.model(User).query().findById(result.admin.id).throwIfNotFound()
    expect(await verifyPassword('chosen by the caller', row.passwordHash)).toBe(true)
  })

  it('rejects bad counts before writing anything', async () => {
    const before = await snapshot()
    await expect(db.seed.development({ users: -1 })).rejects.toBeInstanceOf(ValidationError)
    await expect(db.seed.development({ dropletsPerUser: 1.5 })).rejects.toBeInstanceOf(ValidationError)
    expect(await snapshot()).toEqual(before)
  })
})
