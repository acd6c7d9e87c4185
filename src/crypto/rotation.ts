import type { Knex } from 'knex'
import { quoteIdentifier } from '../access/model-access.js'
import { auditRowInsert, stampedRow, type AuditStamp } from '../audit/recorder.js'
import { toDataError } from '../db/driver-errors.js'
import { ConfigError, DecryptionError, ValidationError } from '../errors.js'
import { encryptedProperties, readStoredValue } from './columns.js'
import { encryptValue } from './envelope.js'
import type { Keyring } from './keyring.js'

/** A model class with encrypted properties, as rotation reads it. */
interface RotatedModel {
  readonly name: string
  readonly tableName: string
  readonly encrypted?: Readonly<Record<string, unknown>> | undefined
  readonly columnNameMappers?: { format?: (json: object) => object } | undefined
  knex(): Knex | undefined
}

/**
 * Progress of `db.crypto.rotate()`, after each batch.
 *
 * @example
 * ```ts
 * await db.crypto.rotate({ onProgress: (p: RotationProgress) => console.log(`${p.table}.${p.column}: ${p.rotated}`) })
 * ```
 */
export interface RotationProgress {
  readonly table: string
  readonly column: string
  /** Values re-encrypted so far in this run, all columns. */
  readonly rotated: number
}

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
 * `db.crypto`: key rotation and key usage.
 *
 * @example
 * ```ts
 * const { rotated } = await db.crypto.rotate({ batchSize: 500 })
 * console.log(rotated, await db.crypto.keyUsage())
 * ```
 */
export interface DatabaseCrypto {
  /**
   * Re-encrypts, under the current key, every encrypted value that is not under it (older keys, Fernet tokens), in
   * batches of `batchSize` rows (default 500), each batch its own transaction. Resumable: a run that stops (a crash,
   * a throw from `onProgress`) is simply run again, it picks up what is left. No model hook runs and no audit row is
   * written per value; one `crypto.rotate` audit row sums the run up.
   */
  rotate(options?: {
    readonly batchSize?: number
    readonly onProgress?: (progress: RotationProgress) => void
  }): Promise<{ readonly rotated: number }>
  /** How many values each key still protects: when an old key's count is 0 everywhere, it can be retired. */
  keyUsage(): Promise<KeyUsage>
}

function columnsOf(models: readonly RotatedModel[]): { table: string; column: string }[] {
  return models.flatMap((model) =>
    encryptedProperties(model as never).map((e) => ({ table: model.tableName, column: e.ciphertextColumn })),
  )
}

/** @internal */
export function createDatabaseCrypto(
  knex: Knex,
  keyring: Keyring | undefined,
  models: readonly RotatedModel[],
  systemStamp: (reason: string) => AuditStamp,
): DatabaseCrypto {
  const needKeyring = (): Keyring => {
    if (keyring === undefined) throw new ConfigError('encryption', 'is needed to rotate keys.')
    return keyring
  }
  return Object.freeze({
    rotate: async (options: { batchSize?: number; onProgress?: (progress: RotationProgress) => void } = {}) => {
      const ring = needKeyring()
      const batchSize = options.batchSize ?? 500
      if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) {
        throw new ValidationError('batchSize must be an integer from 1 to 10000.', [
          { field: 'batchSize', message: 'must be an integer from 1 to 10000' },
        ])
      }
      const current = `v1.${ring.currentKeyId}.%`
      let rotated = 0
      try {
        for (const { table, column } of columnsOf(models)) {
          const t = quoteIdentifier(table)
          const c = quoteIdentifier(column)
          let after = '00000000-0000-0000-0000-000000000000'
          for (;;) {
            // Values not under the current key, walked by id: a value rotated is never selected again, so a run
            // that stops anywhere is resumed by running it again.
            const done = await knex.transaction(async (trx) => {
              const { rows } = await trx.raw<{ rows: { id: string; value: string }[] }>(
                `select id::text as id, ${c} as value from ${t} where ${c} is not null and ${c} not like ? and id > ?
                 order by id limit ? for no key update`,
                [current, after, batchSize],
              )
              if (rows.length === 0) return true
              const ids: string[] = []
              const values: string[] = []
              for (const row of rows) {
                const place = { table, column, rowId: row.id }
                ids.push(row.id)
                values.push(encryptValue(ring, readStoredValue(ring, row.value, place), place))
              }
              await trx.raw(
                `update ${t} set ${c} = v.value from unnest(?::uuid[], ?::text[]) as v(id, value) where ${t}.id = v.id`,
                [ids, values],
              )
              rotated += rows.length
              after = rows[rows.length - 1]!.id
              options.onProgress?.({ table, column, rotated })
              return rows.length < batchSize
            })
            if (done) break
          }
        }
        const insert = auditRowInsert(
          stampedRow(systemStamp('key rotation'), 'crypto.rotate', {
            metadata: { rotated, currentKey: ring.currentKeyId },
          }),
        )
        await knex.raw(insert.sql, insert.bindings as Knex.RawBinding[])
      } catch (error) {
        if (error instanceof DecryptionError) throw error
        throw toDataError(error)
      }
      return { rotated }
    },
    keyUsage: async () => {
      const columns: { table: string; column: string; keys: Record<string, number> }[] = []
      const total: Record<string, number> = {}
      try {
        for (const { table, column } of columnsOf(models)) {
          const c = quoteIdentifier(column)
          const { rows } = await knex.raw<{ rows: { key: string; count: string }[] }>(
            `select case when ${c} like 'gAAAAA%' then 'fernet' when ${c} like 'v1.%' then split_part(${c}, '.', 2)
                    else 'unknown' end as key, count(*)::text as count
             from ${quoteIdentifier(table)} where ${c} is not null group by 1 order by 1`,
          )
          const keys: Record<string, number> = {}
          for (const row of rows) {
            keys[row.key] = Number(row.count)
            total[row.key] = (total[row.key] ?? 0) + Number(row.count)
          }
          columns.push({ table, column, keys })
        }
      } catch (error) {
        throw toDataError(error)
      }
      return { columns, total }
    },
  })
}
