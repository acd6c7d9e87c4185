import type { JSONSchema, RelationMappings } from 'objection'
import { definePolicy, ownedBy, type Policy } from './policy.js'
import { BaseModel } from './base-model.js'
import { User } from './user.js'

/**
 * The states of a droplet.
 *
 * @example
 * ```ts
 * const stoppable: DropletStatus[] = ['active', 'building']
 * ```
 */
export type DropletStatus = 'building' | 'active' | 'stopped' | 'error' | 'deleted'

/**
 * Every {@link DropletStatus}, in lifecycle order.
 *
 * @example
 * ```ts
 * if (!DROPLET_STATUSES.includes(input as DropletStatus)) throw new Error('unknown status')
 * ```
 */
export const DROPLET_STATUSES: readonly DropletStatus[] = Object.freeze([
  'building',
  'active',
  'stopped',
  'error',
  'deleted',
])

const slug = { type: 'string', minLength: 1, maxLength: 64, pattern: '^[a-z0-9-]+$' } as const

/**
 * A Windows VPS owned by a {@link User}. `name` is 1 to 255 characters; `region` and `size` are slugs
 * (`^[a-z0-9-]+$`); `ipAddress` is an IPv4 or IPv6 address or null.
 *
 * @example
 * ```ts
 * import { Droplet } from '@wincloud/data'
 *
 * const droplet = await db.model(Droplet).query().insertAndFetch({ userId, name: 'web-1', region: 'nyc3', size: 's-2vcpu-4gb' })
 * const withOwner = await db.model(Droplet).query().findById(droplet.id).withGraphFetched('owner')
 * ```
 */
export class Droplet extends BaseModel {
  static override tableName = 'droplets'

  static override jsonSchema: JSONSchema = {
    type: 'object',
    required: ['userId', 'name', 'region', 'size'],
    additionalProperties: false,
    properties: {
      ...BaseModel.baseProperties,
      userId: { type: 'string', format: 'uuid' },
      name: { type: 'string', minLength: 1, maxLength: 255 },
      region: slug,
      size: slug,
      status: { type: 'string', enum: [...DROPLET_STATUSES], default: 'building' },
      ipAddress: {
        anyOf: [{ type: 'null' }, { type: 'string', format: 'ipv4' }, { type: 'string', format: 'ipv6' }],
      },
      adminPassword: { anyOf: [{ type: 'null' }, { type: 'string', minLength: 1, maxLength: 1024 }] },
    },
  }

  /** The Windows administrator password, encrypted at rest (`admin_password_ciphertext`); read it to decrypt it. */
  static override encrypted = { adminPassword: {} } as const

  /** Users reach their own droplets; admins every droplet. */
  static override policy: Policy = definePolicy({ owner: ownedBy('userId') })

  static override filterable = {
    id: 'uuid',
    userId: 'uuid',
    name: 'string',
    region: 'string',
    size: 'string',
    status: { enum: DROPLET_STATUSES },
    ipAddress: 'inet',
    createdAt: 'timestamp',
    updatedAt: 'timestamp',
  } as const

  static override sortable = ['createdAt', 'updatedAt', 'name', 'region', 'size', 'status'] as const

  static override relationMappings = (): RelationMappings => ({
    owner: {
      relation: BaseModel.BelongsToOneRelation,
      modelClass: User,
      join: { from: 'droplets.user_id', to: 'users.id' },
    },
  })

  declare userId: string
  declare name: string
  declare region: string
  declare size: string
  declare status: DropletStatus
  declare ipAddress: string | null
  /** Decrypted on first read; never part of `toJSON()`. Needs `encryption` in the configuration. */
  declare adminPassword: string | null | undefined
  declare owner?: User
}
