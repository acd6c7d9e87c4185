import { quoteIdentifier } from '../internal/identifiers.js'

/**
 * How many values each key still protects, per table and column: key ids of envelopes, `fernet` for tokens from the
 * Python backend.
 *
 * @example
 * ```ts
 * const usage: KeyUsage = await db.crypto.keyUsage()
 * if ((usage.total['k2025'] ?? 0) === 0) console.log('k2025 can be retired')
 * ```
 */
export interface KeyUsage {
  readonly columns: readonly {
    readonly table: string
    readonly column: string
    readonly keys: Record<string, number>
  }[]
  /** Per key id (and `fernet`), over every column. */
  readonly total: Record<string, number>
}

/**
 * A model class whose encrypted properties `db.crypto` walks: `User`, `Droplet`, or a host's own `BaseModel`
 * subclass with `static encrypted`.
 *
 * @example
 * ```ts
 * const models: readonly EncryptedModel[] = [User, Droplet, Server]
 * ```
 */
export interface EncryptedModel {
  readonly name: string
  readonly tableName: string
  readonly encrypted?: Readonly<Record<string, unknown>> | undefined
}

/**
 * Counts the values of one encrypted column per key id (`fernet` for Fernet tokens): rows `{ key, count }`.
 *
 * @internal
 */
export function keyUsageSql(table: string, column: string): string {
  const c = quoteIdentifier(column)
  return `select case when ${c} like 'gAAAAA%' then 'fernet' when ${c} like 'v1.%' then split_part(${c}, '.', 2)
                 else 'unknown' end as key, count(*)::text as count
          from ${quoteIdentifier(table)} where ${c} is not null group by 1 order by 1`
}
