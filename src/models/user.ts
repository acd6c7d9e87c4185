import type { JSONSchema, Pojo, RelationMappings } from 'objection'
import { definePolicy, ownedBy, type Policy } from './policy.js'
import { BaseModel } from './base-model.js'
import { Droplet } from './droplet.js'

/**
 * A WinCloud account. `email` and `username` are unique regardless of case. `passwordHash` is never part of
 * `toJSON()`, so it cannot end up in an API response or a log line by accident.
 *
 * @example
 * ```ts
 * import { User } from '@wincloud/data'
 * import { hashPassword } from '@wincloud/data/passwords'
 *
 * const alice = await db.model(User).query().insertAndFetch({
 *   email: 'alice@example.com',
 *   username: 'alice',
 *   passwordHash: await hashPassword(password),
 * })
 * const withDroplets = await db.model(User).query().findById(alice.id).withGraphFetched('droplets')
 * ```
 */
export class User extends BaseModel {
  static override tableName = 'users'

  static override jsonSchema: JSONSchema = {
    type: 'object',
    required: ['email', 'username', 'passwordHash'],
    additionalProperties: false,
    properties: {
      ...BaseModel.baseProperties,
      email: { type: 'string', format: 'email', maxLength: 254 },
      username: { type: 'string', pattern: '^[A-Za-z0-9_.-]{3,32}$' },
      passwordHash: { type: 'string', minLength: 1, maxLength: 1024 },
      role: { type: 'string', pattern: '^[a-z][a-z0-9_-]{0,31}$', default: 'user' },
      isActive: { type: 'boolean', default: true },
      preferences: { type: 'object', default: {} },
      apiToken: { anyOf: [{ type: 'null' }, { type: 'string', minLength: 1, maxLength: 4096 }] },
    },
  }

  /** The cloud API token, encrypted at rest (`api_token_ciphertext`), with a blind index for lookups by value. */
  static override encrypted = {
    apiToken: { blindIndex: true },
  } as const

  /**
   * A user reads and updates their own row, but never its role, active flag, password hash or API token; admins do
   * everything.
   */
  static override policy: Policy = definePolicy({
    owner: ownedBy('id'),
    roles: { user: { read: 'own', update: 'own' } },
    restrictedFields: ['role', 'isActive', 'passwordHash', 'apiToken'],
  })

  /** The password hash never reaches an audit row: a change to it is recorded as redacted. */
  static override secretFields: readonly string[] = ['passwordHash']

  static override filterable = {
    id: 'uuid',
    email: 'string',
    username: 'string',
    role: 'string',
    isActive: 'boolean',
    createdAt: 'timestamp',
  } as const

  static override sortable = ['createdAt', 'email', 'username'] as const

  static override relationMappings = (): RelationMappings => ({
    droplets: {
      relation: BaseModel.HasManyRelation,
      modelClass: Droplet,
      join: { from: 'users.id', to: 'droplets.user_id' },
    },
  })

  declare email: string
  declare username: string
  declare passwordHash: string
  declare role: string
  declare isActive: boolean
  declare preferences: Record<string, unknown>
  /** Decrypted on first read; never part of `toJSON()`. Needs `encryption` in the configuration. */
  declare apiToken: string | null | undefined
  declare droplets?: Droplet[]

  override $formatJson(json: Pojo): Pojo {
    const formatted = super.$formatJson(json)
    delete formatted.passwordHash
    return formatted
  }
}
