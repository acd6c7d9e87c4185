import type { Knex } from 'knex'
import { quoteIdentifier } from '../access/model-access.js'
import { auditRowInsert, stampedRow, type AuditStamp } from '../audit/recorder.js'
import { toDataError } from '../db/driver-errors.js'
import { ConfigError, DecryptionError, ValidationError } from '../errors.js'
import { blindIndex } from './blind-index.js'
import { encryptedProperties, readStoredValue, type EncryptedProperty } from './columns.js'
import { encryptValue } from './envelope.js'
import type { Keyring } from './keyring.js'

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
  /** Blind indexes recomputed under `blindIndexKey` so far in this run (only while `previousBlindIndexKeys` are set). */
  readonly reindexed: number
}

/**
 * Progress of `db.crypto.encryptColumn()`, after each batch.
 *
 * @example
 * ```ts
 * const onProgress = (p: EncryptColumnProgress) => console.log(`${p.table}.${p.from}: ${p.encrypted}`)
 * ```
 */
export interface EncryptColumnProgress {
  readonly table: string
  /** The plaintext column being emptied. */
  readonly from: string
  /** Values encrypted so far in this run. */
  readonly encrypted: number
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
 * `db.crypto`: key rotation, key usage, and encrypting a plaintext column in place.
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
   * batches of `batchSize` rows (default 500), each batch its own transaction. While `previousBlindIndexKeys` are
   * configured it also recomputes every blind index under `blindIndexKey`. Resumable: a run that stops (a crash, a
   * throw from `onProgress`) is simply run again, it picks up what is left. No model hook runs and no audit row is
   * written per value; one `crypto.rotate` audit row sums the run up. `models` defaults to `[User, Droplet]`: list
   * yours with them.
   */
  rotate(options?: {
    readonly batchSize?: number
    readonly models?: readonly EncryptedModel[]
    readonly onProgress?: (progress: RotationProgress) => void
  }): Promise<{ readonly rotated: number; readonly reindexed: number }>
  /**
   * How many values each key still protects: when an old key's count is 0 everywhere, it can be retired. `models`
   * defaults to `[User, Droplet]`.
   */
  keyUsage(options?: { readonly models?: readonly EncryptedModel[] }): Promise<KeyUsage>
  /**
   * Moves an existing plaintext column into a model's encrypted property, in batches: each non-null value of `from`
   * is encrypted for its row (with its blind index), and `from` is set to NULL in the same statement. A row whose
   * encrypted property already has a value keeps it (it was written since), and only `from` is emptied.
   * Resumable: only rows whose `from` is not NULL are selected. One `crypto.encrypt_column` audit row sums the run
   * up. When it returns, a migration can drop `from`.
   */
  encryptColumn(
    model: EncryptedModel,
    property: string,
    options: {
      readonly from: string
      readonly batchSize?: number
      readonly onProgress?: (progress: EncryptColumnProgress) => void
    },
  ): Promise<{ readonly encrypted: number }>
}

interface WalkedColumn {
  readonly table: string
  readonly column: string
  readonly property: EncryptedProperty
}

function columnsOf(models: readonly EncryptedModel[]): WalkedColumn[] {
  const list: unknown = models
  const isModel = (m: unknown): boolean =>
    typeof m === 'function' && typeof (m as { tableName?: unknown }).tableName === 'string'
  if (!Array.isArray(list) || !list.every(isModel)) {
    throw new ValidationError('models must be a list of model classes.', [
      { field: 'models', message: 'must be a list of model classes' },
    ])
  }
  return models.flatMap((model) =>
    encryptedProperties(model as never).map((property) => ({
      table: model.tableName,
      column: property.ciphertextColumn,
      property,
    })),
  )
}

function checkBatchSize(batchSize: unknown): number {
  if (typeof batchSize !== 'number' || !Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) {
    throw new ValidationError('batchSize must be an integer from 1 to 10000.', [
      { field: 'batchSize', message: 'must be an integer from 1 to 10000' },
    ])
  }
  return batchSize
}

/** The blind index of a decrypted value under the current blind-index key (null for non-strings). */
function currentIndex(ring: Keyring, walked: WalkedColumn, value: unknown): string | null {
  const { property } = walked
  if (property.blindIndexColumn === undefined || typeof value !== 'string') return null
  return blindIndex(ring, walked.table, property.blindIndexColumn, value, property.blindIndex)
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

/** @internal */
export function createDatabaseCrypto(
  knex: Knex,
  keyring: Keyring | undefined,
  defaultModels: readonly EncryptedModel[],
  systemStamp: (reason: string) => AuditStamp,
): DatabaseCrypto {
  const needKeyring = (what: string): Keyring => {
    if (keyring === undefined) throw new ConfigError('encryption', `is needed to ${what}.`)
    return keyring
  }
  const summarize = async (action: string, reason: string, metadata: Record<string, unknown>): Promise<void> => {
    const insert = auditRowInsert(stampedRow(systemStamp(reason), action, { metadata }))
    await knex.raw(insert.sql, insert.bindings as Knex.RawBinding[])
  }
  const dataErrors = async <T>(work: () => Promise<T>): Promise<T> => {
    try {
      return await work()
    } catch (error) {
      if (error instanceof DecryptionError || error instanceof ValidationError) throw error
      throw toDataError(error)
    }
  }

  const rotate = async (
    options: {
      batchSize?: number
      models?: readonly EncryptedModel[]
      onProgress?: (progress: RotationProgress) => void
    } = {},
  ): Promise<{ rotated: number; reindexed: number }> => {
    const ring = needKeyring('rotate keys')
    const batchSize = checkBatchSize(options.batchSize ?? 500)
    const columns = columnsOf(options.models ?? defaultModels)
    const current = `v1.${ring.currentKeyId}.%`
    let rotated = 0
    let reindexed = 0
    await dataErrors(async () => {
      for (const walked of columns) {
        const { table, column } = walked
        const t = quoteIdentifier(table)
        const c = quoteIdentifier(column)
        const indexColumn = walked.property.blindIndexColumn
        // While an old blind-index key is retired, every value is visited (its index may be stale); otherwise only
        // values not under the current key. Either way the walk is by id, so a run that stops anywhere is resumed
        // by running it again.
        const reindex = indexColumn !== undefined && ring.previousBlindIndexCount > 0
        // A rotated value's index is written too: that fills the ones a value from the Python backend never had.
        const b = indexColumn === undefined ? undefined : quoteIdentifier(indexColumn)
        let after = '00000000-0000-0000-0000-000000000000'
        for (;;) {
          const done = await knex.transaction(async (trx) => {
            const { rows } = await trx.raw<{ rows: { id: string; value: string; bidx: string | null }[] }>(
              `select id::text as id, ${c} as value, ${b ?? 'null'} as bidx from ${t}
               where ${c} is not null ${reindex ? '' : `and ${c} not like ?`} and id > ?
               order by id limit ? for no key update`,
              reindex ? [after, batchSize] : [current, after, batchSize],
            )
            if (rows.length === 0) return true
            const ids: string[] = []
            const values: string[] = []
            const indexes: (string | null)[] = []
            for (const row of rows) {
              const place = { table, column, rowId: row.id }
              const underCurrent = row.value.startsWith(`v1.${ring.currentKeyId}.`)
              if (underCurrent && !reindex) continue
              const plaintext = readStoredValue(ring, row.value, place)
              const index = currentIndex(ring, walked, plaintext)
              if (underCurrent && index === row.bidx) continue
              ids.push(row.id)
              values.push(underCurrent ? row.value : encryptValue(ring, plaintext, place))
              indexes.push(index)
              if (!underCurrent) rotated += 1
              if (b !== undefined && index !== row.bidx) reindexed += 1
            }
            if (ids.length > 0) {
              await trx.raw(
                `update ${t} set ${c} = v.value${b === undefined ? '' : `, ${b} = v.bidx`}
                 from unnest(?::uuid[], ?::text[], ?::text[]) as v(id, value, bidx) where ${t}.id = v.id`,
                [ids, values, indexes] as Knex.RawBinding[],
              )
            }
            after = rows[rows.length - 1]!.id
            options.onProgress?.({ table, column, rotated, reindexed })
            return rows.length < batchSize
          })
          if (done) break
        }
      }
      await summarize('crypto.rotate', 'key rotation', { rotated, reindexed, currentKey: ring.currentKeyId })
    })
    return { rotated, reindexed }
  }

  const keyUsage = async (options: { models?: readonly EncryptedModel[] } = {}): Promise<KeyUsage> => {
    const columns: { table: string; column: string; keys: Record<string, number> }[] = []
    const total: Record<string, number> = {}
    const walked = columnsOf(options.models ?? defaultModels)
    await dataErrors(async () => {
      for (const { table, column } of walked) {
        const { rows } = await knex.raw<{ rows: { key: string; count: string }[] }>(keyUsageSql(table, column))
        const keys: Record<string, number> = {}
        for (const row of rows) {
          keys[row.key] = Number(row.count)
          total[row.key] = (total[row.key] ?? 0) + Number(row.count)
        }
        columns.push({ table, column, keys })
      }
    })
    return { columns, total }
  }

  const encryptColumn = async (
    model: EncryptedModel,
    property: string,
    options: { from: string; batchSize?: number; onProgress?: (progress: EncryptColumnProgress) => void },
  ): Promise<{ encrypted: number }> => {
    const ring = needKeyring('encrypt a column')
    const walked = columnsOf([model]).find((w) => w.property.property === property)
    if (walked === undefined) {
      throw new ValidationError(`${String(model?.name)}.${String(property)} is not an encrypted property.`, [
        { field: 'property', message: 'must be an encrypted property of the model' },
      ])
    }
    const from: unknown = options?.from
    if (typeof from !== 'string' || from.length === 0 || from.length > 63 || from === walked.column) {
      throw new ValidationError('from must name the plaintext column.', [
        { field: 'from', message: 'must name the plaintext column (1 to 63 characters), not the ciphertext column' },
      ])
    }
    const batchSize = checkBatchSize(options.batchSize ?? 500)
    const { table, column } = walked
    const t = quoteIdentifier(table)
    const c = quoteIdentifier(column)
    const f = quoteIdentifier(from)
    const indexColumn = walked.property.blindIndexColumn
    const b = indexColumn === undefined ? undefined : quoteIdentifier(indexColumn)
    let encrypted = 0
    await dataErrors(async () => {
      for (;;) {
        // Rows still holding a plaintext: each batch empties the ones it takes, so a run that stops is resumed by
        // running it again.
        const done = await knex.transaction(async (trx) => {
          const { rows } = await trx.raw<{ rows: { id: string; value: string; taken: boolean }[] }>(
            `select id::text as id, ${f}::text as value, ${c} is not null as taken from ${t}
             where ${f} is not null order by id limit ? for no key update`,
            [batchSize],
          )
          if (rows.length === 0) return true
          const ids: string[] = []
          const values: (string | null)[] = []
          const indexes: (string | null)[] = []
          for (const row of rows) {
            ids.push(row.id)
            if (row.taken) {
              values.push(null)
              indexes.push(null)
              continue
            }
            values.push(encryptValue(ring, row.value, { table, column, rowId: row.id }))
            indexes.push(currentIndex(ring, walked, row.value))
            encrypted += 1
          }
          await trx.raw(
            `update ${t} set ${f} = null, ${c} = coalesce(${t}.${c}, v.value)
               ${b === undefined ? '' : `, ${b} = case when ${t}.${c} is null then v.bidx else ${t}.${b} end`}
             from unnest(?::uuid[], ?::text[], ?::text[]) as v(id, value, bidx) where ${t}.id = v.id`,
            [ids, values, indexes] as Knex.RawBinding[],
          )
          options.onProgress?.({ table, from, encrypted })
          return rows.length < batchSize
        })
        if (done) break
      }
      await summarize('crypto.encrypt_column', 'encrypt column', { table, from, column, encrypted })
    })
    return { encrypted }
  }

  return Object.freeze({ rotate, keyUsage, encryptColumn })
}
