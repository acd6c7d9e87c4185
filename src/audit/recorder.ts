import { quoteIdentifier } from '../internal/identifiers.js'
import type { Knex } from 'knex'
import type { ModelAccess } from '../access/model-access.js'
import { encryptedProperties } from '../crypto/columns.js'
import type { BaseModel } from '../models/base-model.js'

/**
 * Who acts, as audit rows record it: the actor's id (null for `db.system()`), its role (`'system'` for system
 * scopes) and the request metadata (for system scopes, the reason) as JSON text.
 *
 * @internal
 */
export interface AuditStamp {
  readonly actorId: string | null
  readonly actorRole: string
  readonly metadata: string
}

/** The table audit rows go to. @internal */
export const AUDIT_TABLE = 'audit_logs'

/** What a secret field's change looks like in an audit row: changed, never its value. @internal */
export const REDACTED = Object.freeze({ redacted: true })

const REDACTED_SQL = `'{"redacted": true}'::jsonb`

/** Columns every row has and no audit diff repeats: the id is the entity id, the timestamps are noise. */
const KEY_COLUMNS = new Set(['id', 'created_at', 'updated_at'])

interface AuditColumn {
  readonly column: string
  readonly property: string
  readonly secret: boolean
}

/**
 * How one model's rows are audited: its entity type (`droplet`), its columns with their property names, and which
 * are secret (the model's `secretFields`), in table order.
 *
 * @internal
 */
export interface AuditShape {
  readonly entityType: string
  readonly columns: readonly AuditColumn[]
  readonly types: ReadonlyMap<string, string>
}

const shapes = new WeakMap<ModelAccess, Promise<AuditShape>>()
const resolved = new WeakMap<ModelAccess, AuditShape>()

/**
 * The audit shape of a model when {@link auditShape} has read it already, for code that must be synchronous (a
 * query being compiled); undefined otherwise.
 *
 * @internal
 */
export function resolvedAuditShape(access: ModelAccess): AuditShape | undefined {
  return resolved.get(access)
}

/** `AuditLog` → `audit_log`, `Droplet` → `droplet`. */
export function entityTypeOf(model: { readonly name: string }): string {
  return model.name
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/([A-Z])([A-Z][a-z])/g, '$1_$2')
    .toLowerCase()
}

/**
 * The audit shape of a model, read once from the catalog (column order and types) and the model (property names,
 * secret fields).
 *
 * @internal
 */
export function auditShape(
  runner: Knex | Knex.Transaction,
  model: typeof BaseModel,
  access: ModelAccess,
): Promise<AuditShape> {
  let shape = shapes.get(access)
  if (shape === undefined) {
    shape = runner
      .raw<{ rows: { name: string; type: string }[] }>(
        `select attname as name, format_type(atttypid, atttypmod) as type from pg_attribute
         where attrelid = ?::regclass and attnum > 0 and not attisdropped order by attnum`,
        [access.table],
      )
      .then((result) => {
        const secret = new Set(model.secretFields)
        const mappers = model.columnNameMappers as { parse?: (json: object) => object } | undefined
        // Encrypted properties: the envelope column is the property, always redacted; the blind index is left out.
        const encrypted = model.encrypted === undefined ? [] : encryptedProperties(model)
        const ciphertexts = new Map(encrypted.map((e) => [e.ciphertextColumn, e.property]))
        const blindIndexes = new Set(encrypted.map((e) => e.blindIndexColumn))
        const columns = result.rows
          .filter((row) => !KEY_COLUMNS.has(row.name) && !blindIndexes.has(row.name))
          .map((row) => {
            const property = ciphertexts.get(row.name)
            if (property !== undefined) return Object.freeze({ column: row.name, property, secret: true })
            const parsed = mappers?.parse === undefined ? undefined : mappers.parse({ [row.name]: null })
            const name = parsed === undefined ? row.name : (Object.keys(parsed)[0] ?? row.name)
            return Object.freeze({ column: row.name, property: name, secret: secret.has(name) })
          })
        const shape: AuditShape = Object.freeze({
          entityType: entityTypeOf(model),
          columns: Object.freeze(columns),
          types: new Map(result.rows.map((row) => [row.name, row.type])),
        })
        resolved.set(access, shape)
        return shape
      })
    shapes.set(access, shape)
    shape.catch(() => shapes.delete(access))
  }
  return shape
}

const literal = (text: string): string => `'${text.replace(/'/g, "''")}'`

/** `jsonb_build_object` takes at most 100 arguments: build wide objects in pieces joined with `||`. */
function jsonbObject(pairs: readonly (readonly [string, string])[]): string {
  if (pairs.length === 0) return `'{}'::jsonb`
  const pieces: string[] = []
  for (let i = 0; i < pairs.length; i += 40) {
    const args = pairs.slice(i, i + 40).flatMap(([key, value]) => [literal(key), value])
    pieces.push(`jsonb_build_object(${args.join(', ')})`)
  }
  return pieces.length === 1 ? pieces[0]! : `(${pieces.join(' || ')})`
}

/** How to read a column of a row in SQL: `locked."status"`, or `(o.row -> 'status')` for rows held as jsonb. */
export type ColumnValue = (column: string) => string

/** Columns of a table alias: `alias."column"`. @internal */
export const aliasColumns =
  (alias: string): ColumnValue =>
  (column) =>
    `${alias}.${quoteIdentifier(column)}`

/**
 * Every non-key column of a row as `{ property: { to: value } }` (inserts) or `{ property: { from: value } }`
 * (deletes), secret fields redacted.
 *
 * @internal
 */
export function snapshotSql(shape: AuditShape, value: ColumnValue, side: 'from' | 'to'): string {
  const plain = jsonbObject(
    shape.columns
      .filter((c) => !c.secret)
      .map(({ column, property }) => [property, `jsonb_build_object('${side}', ${value(column)})`]),
  )
  // A secret is recorded as present (redacted), or left out when the row has none.
  const secrets = shape.columns
    .filter((c) => c.secret)
    .map(
      ({ column, property }) =>
        `(case when coalesce(to_jsonb(${value(column)}), 'null'::jsonb) = 'null'::jsonb then '{}'::jsonb ` +
        `else jsonb_build_object(${literal(property)}, ${REDACTED_SQL}) end)`,
    )
  return [plain, ...secrets].join(' || ')
}

/**
 * The columns among `columns` whose value differs between two rows, as `{ property: { from, to } }`, secret
 * fields as `{ property: { redacted: true } }`; `'{}'` when nothing changed. Both sides must be of the same type
 * (both columns, or both jsonb).
 *
 * @internal
 */
export function diffSql(
  shape: AuditShape,
  columns: readonly string[],
  before: ColumnValue,
  after: ColumnValue,
): string {
  const parts: string[] = []
  for (const name of columns) {
    const audited = shape.columns.find((c) => c.column === name)
    if (audited === undefined) continue
    const [from, to] = [before(name), after(name)]
    const value = audited.secret ? REDACTED_SQL : `jsonb_build_object('from', ${from}, 'to', ${to})`
    parts.push(
      `case when ${from} is distinct from ${to} ` +
        `then jsonb_build_object(${literal(audited.property)}, ${value}) else '{}'::jsonb end`,
    )
  }
  return parts.length === 0 ? `'{}'::jsonb` : parts.join(' || ')
}

/**
 * An INSERT of one audit row per row of `from` (a CTE of changed rows), for a data-modifying CTE, with its bindings
 * (actor id, role, action, entity type, metadata). Rows whose `changes` are empty are skipped.
 *
 * @internal
 */
export function auditInsertSql(
  shape: AuditShape,
  stamp: AuditStamp,
  action: string,
  changes: string,
  from: string,
  idAlias: string,
): { sql: string; bindings: unknown[] } {
  return {
    sql:
      `insert into ${quoteIdentifier(AUDIT_TABLE)} ` +
      `(actor_id, actor_role, action, entity_type, entity_id, changes, metadata, created_at) ` +
      `select ?::uuid, ?, ?, ?, ${idAlias}::text, audit_changes.changes, ?::jsonb, clock_timestamp() ` +
      `from ${from}, lateral (select ${changes} as changes) audit_changes where audit_changes.changes <> '{}'::jsonb`,
    bindings: [stamp.actorId, stamp.actorRole, `${shape.entityType}.${action}`, shape.entityType, stamp.metadata],
  }
}

/** One audit row written on its own (custom events, logins, purges, rotations). @internal */
export interface AuditRow {
  readonly actorId: string | null
  readonly actorRole: string | null
  readonly action: string
  readonly entityType?: string | null
  readonly entityId?: string | null
  readonly changes?: object
  readonly metadata?: object
}

/** The row a stamp writes for `action`: its actor and role, its metadata with `metadata` merged over it. @internal */
export function stampedRow(
  stamp: AuditStamp,
  action: string,
  details: Omit<AuditRow, 'actorId' | 'actorRole' | 'action'> = {},
): AuditRow {
  const metadata = { ...(JSON.parse(stamp.metadata) as object), ...details.metadata }
  return { ...details, actorId: stamp.actorId, actorRole: stamp.actorRole, action, metadata }
}

/** The INSERT of one audit row, returning it. @internal */
export function auditRowInsert(row: AuditRow): { sql: string; bindings: unknown[] } {
  return {
    sql:
      `insert into ${quoteIdentifier(AUDIT_TABLE)} ` +
      `(actor_id, actor_role, action, entity_type, entity_id, changes, metadata, created_at) ` +
      `values (?::uuid, ?, ?, ?, ?, ?::jsonb, ?::jsonb, clock_timestamp()) returning *`,
    bindings: [
      row.actorId,
      row.actorRole,
      row.action,
      row.entityType ?? null,
      row.entityId ?? null,
      JSON.stringify(row.changes ?? {}),
      JSON.stringify(row.metadata ?? {}),
    ],
  }
}

/**
 * The stamp of a scope: its actor, role and request metadata (for system scopes, the reason).
 *
 * @internal
 */
export function auditStamp(
  actorId: string | undefined,
  role: string,
  meta: Readonly<Record<string, string>>,
  reason: string | undefined,
): AuditStamp {
  const metadata: Record<string, string> = { ...meta }
  if (reason !== undefined) metadata.reason = reason
  return Object.freeze({ actorId: actorId ?? null, actorRole: role, metadata: JSON.stringify(metadata) })
}
