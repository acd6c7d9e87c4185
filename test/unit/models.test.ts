import { knex as createKnex } from 'knex'
import type { Pojo } from 'objection'
import { afterAll, describe, expect, it } from 'vitest'
import { Droplet, User, ValidationError } from '../../src/index.js'

// Compiles SQL only: no connection is ever made.
const knex = createKnex({ client: 'pg' })
afterAll(async () => {
  await knex.destroy()
})

/** The same models through objection's own $parseDatabaseJson path, to compare the fast path against. */
class ObjectionDroplet extends Droplet {
  override $parseDatabaseJson(json: Pojo): Pojo {
    return super.$parseDatabaseJson(json)
  }
}
class ObjectionUser extends User {
  override $parseDatabaseJson(json: Pojo): Pojo {
    return super.$parseDatabaseJson(json)
  }
}

describe('models without a database', () => {
  it('turn rows into the same models as objection does, key for key', () => {
    const created = new Date('2026-11-25T10:00:00.123Z')
    const droplet = {
      id: '01a21233-143b-7362-b208-a7fc8387e8f8',
      user_id: '01a21233-1405-73d4-acaf-6da954af9e1d',
      name: 'web-1',
      region: 'nyc3',
      size: 's-1vcpu-2gb',
      status: 'active',
      ip_address: '203.0.113.7',
      created_at: created,
      updated_at: created,
      some_extra_column: 1,
    }
    const fast = Droplet.fromDatabaseJson({ ...droplet })
    const slow = ObjectionDroplet.fromDatabaseJson({ ...droplet })
    expect(Object.keys(fast)).toEqual(Object.keys(slow))
    expect({ ...fast }).toEqual({ ...slow })
    expect(fast.userId).toBe(droplet.user_id)
    expect(fast).toBeInstanceOf(Droplet)

    const user = {
      id: droplet.user_id,
      email: 'a@b.c',
      password_hash: 'h',
      is_active: true,
      preferences: '{"theme":"dark"}',
    }
    const fastUser = User.fromDatabaseJson({ ...user })
    const slowUser = ObjectionUser.fromDatabaseJson({ ...user })
    expect({ ...fastUser }).toEqual({ ...slowUser })
    expect(fastUser.preferences).toEqual({ theme: 'dark' })
    expect(fastUser.isActive).toBe(true)
  })

  it('compile queries with snake_case columns', () => {
    const { sql, bindings } = Droplet.query(knex)
      .where('user_id', 'u-1')
      .orderBy('created_at', 'desc')
      .limit(20)
      .toKnexQuery()
      .toSQL()
      .toNative()
    expect(sql).toBe('select "droplets".* from "droplets" where "user_id" = $1 order by "created_at" desc limit $2')
    expect(bindings).toEqual(['u-1', 20])
  })

  it('validate without touching the database', () => {
    expect(() => Droplet.fromJson({ userId: 'x', name: '', region: 'nyc3', size: 's' })).toThrow(ValidationError)
    expect(() => User.fromJson({ email: 'a@b.co', username: 'ok_name', passwordHash: 'h', role: 'Admin!' })).toThrow(
      /role/,
    )
  })
})
