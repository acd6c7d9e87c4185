import { randomBytes, randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { accessLevel, DEFAULT_ROLES, definePolicy, ownedBy, type AccessAction } from '../../src/models/policy.js'
import { parseConfig } from '../../src/db/config.js'
import {
  ConfigError,
  createDatabase,
  decryptValue,
  DecryptionError,
  Droplet,
  encryptValue,
  envelopeKeyId,
  ForbiddenError,
  Keyring,
  User,
  ValidationError,
  type Database,
  type Scope,
} from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'

/**
 * Names an attacker (or a careless host) can pass where the library looks a name up: `constructor`, `__proto__`,
 * `toString`, `hasOwnProperty`, `valueOf`, … Every one exists on every plain object through its prototype; none may
 * be mistaken for a role, a policy entry, a key id or a config option nobody configured.
 */
const NAMES = Object.getOwnPropertyNames(Object.prototype)
const ACTIONS: readonly AccessAction[] = ['read', 'create', 'update', 'delete']
const KEY = (): string => randomBytes(32).toString('base64')

/** An object with `name` as an own property (an object literal's `__proto__: x` would set the prototype instead). */
function own<T>(name: string, value: T): Record<string, T> {
  const object: Record<string, T> = {}
  Object.defineProperty(object, name, { value, enumerable: true, writable: true, configurable: true })
  return object
}

function thrown(fn: () => unknown): unknown {
  try {
    fn()
  } catch (error) {
    return error
  }
  return undefined
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  )
}

it('covers the names of Object.prototype', () => {
  expect(NAMES).toEqual(expect.arrayContaining(['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']))
})

describe('role lookups', () => {
  const policies = [
    definePolicy({}),
    definePolicy({ roles: { user: { read: 'own' } } }),
    User.policy,
    Droplet.policy,
    undefined,
  ]

  it.each(NAMES)('%s as a role nobody configured gets no access to anything', (name) => {
    for (const policy of policies) {
      for (const action of ACTIONS) expect(accessLevel(policy, DEFAULT_ROLES, name, action)).toBe('none')
    }
  })

  it.each(NAMES)('%s in a policy gives that role what it says, and nobody else anything new', (name) => {
    const policy = definePolicy({ owner: ownedBy('userId'), roles: own(name, { read: 'all' }) })
    expect(accessLevel(policy, DEFAULT_ROLES, name, 'read')).toBe('all')
    expect(accessLevel(policy, DEFAULT_ROLES, name, 'create')).toBe('none')
    expect(accessLevel(policy, DEFAULT_ROLES, 'user', 'read')).toBe('own')
    expect(accessLevel(policy, DEFAULT_ROLES, 'support', 'read')).toBe('none')
    expect(accessLevel(policy, DEFAULT_ROLES, 'admin', 'delete')).toBe('all')
  })

  it('an action name never becomes a role by way of a policy prototype', () => {
    const policy = definePolicy({ roles: JSON.parse('{"__proto__": {"read": "all"}}') as Record<string, never> })
    for (const role of ['read', 'create', 'user', 'guest']) expect(accessLevel(policy, {}, role, 'read')).toBe('none')
  })
})

describe('config keys', () => {
  it.each(NAMES)('%s as an option at any level is a ConfigError that calls it unknown', (name) => {
    const places: [string, (value: unknown) => Record<string, unknown>][] = [
      ['', (v) => own(name, v)],
      ['pool.', (v) => ({ pool: own(name, v) })],
      ['connection.', (v) => ({ connection: own(name, v) })],
      ['auth.', (v) => ({ auth: own(name, v) })],
      ['auth.passwordHash.', (v) => ({ auth: { passwordHash: own(name, v) } })],
      ['observability.', (v) => ({ observability: own(name, v) })],
      ['pagination.', (v) => ({ pagination: own(name, v) })],
      ['embedded.', (v) => ({ embedded: own(name, v) })],
      ['cache.', (v) => ({ cache: { redis: 'redis://127.0.0.1:6379', ...own(name, v) } })],
      ['encryption.', (v) => ({ encryption: { keys: { k1: KEY() }, current: 'k1', ...own(name, v) } })],
    ]
    for (const [prefix, config] of places) {
      const error = thrown(() => parseConfig(config(1)))
      expect(error, `${prefix}${name}`).toBeInstanceOf(ConfigError)
      expect((error as ConfigError).field).toBe(`${prefix}${name}`)
      expect((error as ConfigError).message).toMatch(/is not (a known|an encryption) option/)
    }
  })

  it.each(NAMES)('%s as a custom role name is refused or is a role of its own', (name) => {
    let config: ReturnType<typeof parseConfig> | undefined
    const error = thrown(() => (config = parseConfig({ roles: own(name, { read: 'all' }) })))
    if (error !== undefined) {
      expect(error).toBeInstanceOf(ConfigError)
      expect((error as ConfigError).field).toBe(`roles.${name}`)
      return
    }
    expect(Object.keys(config!.roles).sort()).toEqual(['admin', name, 'user'].sort())
    expect(accessLevel(Droplet.policy, config!.roles, name, 'read')).toBe('all')
    expect(accessLevel(Droplet.policy, config!.roles, name, 'create')).toBe('none')
    expect(accessLevel(Droplet.policy, config!.roles, 'user', 'read')).toBe('own')
  })

  it('a JSON config cannot smuggle roles through __proto__', () => {
    const error = thrown(() => parseConfig(JSON.parse('{"roles": {"__proto__": {"read": "all"}}}')))
    expect(error).toBeInstanceOf(ConfigError)
    const config = parseConfig(JSON.parse('{"roles": {"support": {"read": "all"}}}'))
    expect(accessLevel(Droplet.policy, config.roles, 'guest', 'read')).toBe('none')
  })

  it('createDatabase refuses them before it connects', async () => {
    for (const name of NAMES) {
      const error = await rejection(
        createDatabase({ connection: 'postgres://nobody@127.0.0.1:1/none', ...own(name, 1) }),
      )
      expect(error, name).toBeInstanceOf(ConfigError)
    }
  })
})

describe('encryption key ids', () => {
  const place = { table: 'users', column: 'api_token_ciphertext', rowId: randomUUID() }

  it.each(NAMES)('%s is a key id like any other', (name) => {
    const keyring = Keyring.from({ keys: own(name, KEY()), current: name })
    expect(keyring.currentKeyId).toBe(name)
    expect(keyring.keyIds).toEqual([name])
    const envelope = encryptValue(keyring, 'secret', place)
    expect(envelopeKeyId(envelope)).toBe(name)
    expect(decryptValue(keyring, envelope, place)).toBe('secret')
    // Another keyring, whose only key is not this one, cannot find it through a prototype.
    const other = Keyring.from({ keys: { k1: KEY() }, current: 'k1' })
    expect(other.has(name)).toBe(false)
    expect(other.columnKey(name, place.table, place.column)).toBeUndefined()
    expect(thrown(() => decryptValue(other, envelope, place))).toBeInstanceOf(DecryptionError)
  })

  it.each(NAMES)('%s as the current key id without such a key is a ConfigError', (name) => {
    const error = thrown(() => Keyring.from({ keys: { k1: KEY() }, current: name }))
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).field).toBe('encryption.current')
  })
})

for (const rls of [false, true]) {
  describe(`actors whose role is a prototype name (rls: ${rls})`, () => {
    let plain: Database
    let granted: Database
    const cleanups: (() => Promise<void>)[] = []
    const owners = new Map<Database, { user: User; droplet: Droplet }>()

    beforeAll(async () => {
      for (const config of [{ rls }, { rls, roles: { constructor: { read: 'all' as const } } }]) {
        const opened = await openTestDatabase(config)
        cleanups.push(opened.cleanup)
        const system = opened.db.system('test')
        const user = await system
          .repo(User)
          .create({ email: 'owner@example.com', username: 'owner', passwordHash: 'x', role: 'user' })
        const droplet = await system
          .repo(Droplet)
          .create({ userId: user.id, name: 'web', region: 'nyc3', size: 's-1vcpu-2gb', status: 'active' })
        owners.set(opened.db, { user, droplet })
        if (plain === undefined) plain = opened.db
        else granted = opened.db
      }
    })
    afterAll(async () => {
      for (const cleanup of cleanups) await cleanup()
    })

    /** The scope of an actor with this role, or the ValidationError that refuses the role. */
    function scopeOf(db: Database, name: string, id = randomUUID()): Scope | undefined {
      let scope: Scope | undefined
      const error = thrown(() => (scope = db.scope({ id, role: name })))
      if (error !== undefined) {
        expect(error, name).toBeInstanceOf(ValidationError)
        expect((error as ValidationError).message).toBe('actor.role must be a role name.')
      }
      return scope
    }

    it.each(NAMES)('%s gets no access when no role of that name is configured', async (name) => {
      const scope = scopeOf(plain, name)
      if (scope === undefined) return
      const { user, droplet } = owners.get(plain)!
      const attempts: [string, () => Promise<unknown>][] = []
      for (const Model of [Droplet, User]) {
        const repo = scope.repo(Model as typeof Droplet)
        attempts.push(
          [`${Model.name}.list`, () => repo.list()],
          [`${Model.name}.count`, () => repo.count()],
          [`${Model.name}.findById`, () => repo.findById(Model === User ? user.id : droplet.id)],
          [`${Model.name}.update`, () => repo.update(Model === User ? user.id : droplet.id, {})],
          [`${Model.name}.delete`, () => repo.delete(Model === User ? user.id : droplet.id)],
        )
      }
      attempts.push(
        [
          'Droplet.create',
          () => scope.repo(Droplet).create({ name: 'mine', region: 'nyc3', size: 's-1vcpu-2gb', status: 'building' }),
        ],
        ['User.create', () => scope.repo(User).create({ email: 'x@example.com', username: 'xxx', passwordHash: 'x' })],
        ['Droplet.query', async () => await scope.repo(Droplet).query()],
      )
      for (const [what, attempt] of attempts) {
        expect(await rejection(attempt()), `${name}: ${what}`).toBeInstanceOf(ForbiddenError)
      }
      expect(await plain.model(Droplet).query().resultSize()).toBe(1)
      expect(await plain.model(User).query().resultSize()).toBe(1)
    })

    it('a role named constructor, when configured, gets exactly what the config says', async () => {
      const scope = scopeOf(granted, 'constructor')!
      const { droplet } = owners.get(granted)!
      expect((await scope.repo(Droplet).list()).map((d) => d.id)).toEqual([droplet.id])
      for (const attempt of [
        () => scope.repo(Droplet).create({ name: 'mine', region: 'nyc3', size: 's-1vcpu-2gb', status: 'building' }),
        () => scope.repo(Droplet).update(droplet.id, { status: 'stopped' }),
        () => scope.repo(Droplet).delete(droplet.id),
      ]) {
        expect(await rejection(attempt())).toBeInstanceOf(ForbiddenError)
      }
      // The other roles are as they were.
      const user = await granted
        .system('test')
        .repo(User)
        .create({ email: 'plain@example.com', username: 'plain', passwordHash: 'x' })
      expect(await granted.scope(user).repo(Droplet).list()).toEqual([])
    })
  })
}

describe('request metadata', () => {
  it('keeps a __proto__ key as data in the audit row, and refuses values the audit row cannot hold', async () => {
    const { db, cleanup } = await openTestDatabase()
    try {
      const system = db.system('test')
      const user = await system
        .repo(User)
        .create({ email: 'meta@example.com', username: 'meta', passwordHash: 'x', role: 'user' })
      const meta = JSON.parse('{"__proto__": "from-json", "ip": "203.0.113.7"}') as Record<string, string>
      const scope = db.scope(user, meta)
      expect(Object.getPrototypeOf(scope.meta)).toBe(Object.prototype)
      const event = await scope.audit.record('test.meta')
      const { rows } = await db.knex.raw<{ rows: { metadata: Record<string, string> }[] }>(
        'select metadata from audit_logs where id = ?',
        [event.id],
      )
      expect(Object.hasOwn(rows[0]!.metadata, '__proto__')).toBe(true)
      expect(rows[0]!.metadata.ip).toBe('203.0.113.7')
      for (const bad of ['a\0b', '\uD800x']) {
        expect(thrown(() => db.scope(user, { requestId: bad }))).toBeInstanceOf(ValidationError)
      }
    } finally {
      await cleanup()
    }
  })
})
