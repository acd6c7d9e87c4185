import type { JSONSchema, Pojo, QueryContext } from 'objection'
import { scopeOf } from './scope-port.js'
import { ForbiddenError } from '../errors/index.js'
import { definePolicy, ownedBy, type Policy } from './policy.js'
import { BaseModel } from './base-model.js'
import { uuidv7 } from '../internal/uuid.js'

/**
 * One recorded action: who (`actorId`, null for the system), what (`action`, e.g. `droplet.update`), on which
 * entity, which fields changed (`changes: { field: { from, to } }`), request metadata, and when. Audit rows are
 * written, never updated: they have a `createdAt` and no `updatedAt`.
 *
 * @example
 * ```ts
 * import { AuditLog } from '@wincloud/data'
 *
 * const trail = await db.model(AuditLog).query().where({ entity_type: 'droplet', entity_id: id }).orderBy('created_at')
 * ```
 */
export class AuditLog extends BaseModel {
  static override tableName = 'audit_logs'

  /** Audit rows are the trail itself: writing one leaves no further audit row. */
  static override audited = false

  static override jsonSchema: JSONSchema = {
    type: 'object',
    required: ['action'],
    additionalProperties: false,
    properties: {
      id: BaseModel.baseProperties.id,
      createdAt: BaseModel.baseProperties.createdAt,
      actorId: { anyOf: [{ type: 'null' }, { type: 'string', format: 'uuid' }] },
      actorRole: { anyOf: [{ type: 'null' }, { type: 'string', maxLength: 64 }] },
      action: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[a-z][a-z0-9_.-]*$' },
      entityType: { anyOf: [{ type: 'null' }, { type: 'string', maxLength: 64 }] },
      entityId: { anyOf: [{ type: 'null' }, { type: 'string', maxLength: 255 }] },
      changes: { type: 'object', default: {} },
      metadata: { type: 'object', default: {} },
    },
  }

  /** Admins read every entry, users the entries where they are the actor; nobody edits one through a scope. */
  static override policy: Policy = definePolicy({
    owner: ownedBy('actorId'),
    roles: { admin: { read: 'all' }, user: { read: 'own' } },
  })

  static override filterable = {
    actorId: 'uuid',
    action: 'string',
    entityType: 'string',
    entityId: 'string',
    createdAt: 'timestamp',
  } as const

  static override sortable = ['createdAt'] as const

  declare actorId: string | null
  declare actorRole: string | null
  declare action: string
  declare entityType: string | null
  declare entityId: string | null
  declare changes: Record<string, { from?: unknown; to?: unknown }>
  declare metadata: Record<string, unknown>
  /** The row's place in the hash chain (a bigint as a string), or null when the chain was off when it was written. */
  declare chainSeq: string | null
  /** The previous row's hash (hex), or null outside the chain. */
  declare prevHash: string | null
  /** This row's hash (hex) over its canonical encoding and `prevHash`, or null outside the chain. */
  declare rowHash: string | null

  /** The chain's hashes arrive as bytes; they are kept as hex strings, so `toJSON()` shows them readably. */
  override $parseDatabaseJson(json: Pojo): Pojo {
    const parsed = super.$parseDatabaseJson(json)
    for (const key of ['prevHash', 'rowHash']) {
      const value: unknown = parsed[key]
      if (Buffer.isBuffer(value)) parsed[key] = value.toString('hex')
    }
    return parsed
  }

  /** Scopes never write audit rows as rows: the library does, and `scope.audit.record()` for custom events. */
  override $beforeInsert(context: QueryContext): void {
    if (scopeOf(context) !== undefined) throw new ForbiddenError('create', 'AuditLog (use scope.audit.record)')
    if (this.id === undefined || this.id === null) this.id = uuidv7()
    if (this.createdAt === undefined) this.createdAt = new Date()
  }

  override $beforeUpdate(): void {
    // Audit rows have no updatedAt: they are written once and never changed.
  }
}
