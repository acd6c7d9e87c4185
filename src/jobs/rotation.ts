import type { Knex } from 'knex'
import type { AuditStamp } from '../audit/recorder.js'
import type { Keyring } from '../crypto/keyring.js'
import { keyUsageSql, type EncryptedModel, type KeyUsage } from '../crypto/key-usage.js'
import { columnsOf } from './batch-walk.js'
import { createCryptoJob, type CryptoJob } from './crypto-job.js'
import { encryptColumn, type EncryptColumnProgress } from './encrypt-column.js'
import { inventoryLegacyTokens, type LegacyInventoryProgress, type LegacyInventoryResult } from './legacy-inventory.js'
import { rotateKeys, type RotationProgress, type RotationResult } from './key-rotation.js'

// The jobs of db.crypto live in their own modules (key rotation, the legacy-token inventory, encryptColumn, the
// batch walking they share); this one puts them together and is the one others import.
export type { EncryptColumnProgress } from './encrypt-column.js'
export type { LegacyInventoryProgress, LegacyInventoryResult } from './legacy-inventory.js'
export type { LegacyTokenRefusal, RotationProgress, RotationResult } from './key-rotation.js'

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
   * configured it also recomputes every blind index under `blindIndexKey`. A Fernet token becomes an envelope only
   * when the legacy-token inventory ({@link DatabaseCrypto.inventoryLegacyTokens}) holds its digest at its row;
   * otherwise it is left as it is and counted in `refused`, with the reason in `refusals` (no inventory taken, moved
   * since, …). Converted tokens leave the inventory. Resumable: a run that stops (a crash, a
   * throw from `onProgress`) is simply run again, it picks up what is left. No model hook runs and no audit row is
   * written per value; one `crypto.rotate` audit row sums the run up. `models` defaults to the registered models
   * with encrypted properties (`User`, `Droplet` and the host's from `createDatabase({ models })`).
   */
  rotate(options?: {
    readonly batchSize?: number
    readonly models?: readonly EncryptedModel[]
    readonly onProgress?: (progress: RotationProgress) => void
  }): Promise<RotationResult>
  /**
   * Records where each legacy Fernet token is, so that `rotate()` makes envelopes only of tokens still at the row,
   * column and table they were found in. Run it once, right after importing the Python backend's data and before
   * anyone else can write to the database: it trusts the rows as they are when it runs. A Fernet token names no row,
   * so until it is rotated, one copied to another row decrypts there; `rotate()` refuses every token the inventory
   * does not vouch for (and all of them when none was taken).
   *
   * Walks every encrypted property of `models` (default: the registered models with encrypted properties) in batches of
   * `batchSize` rows (default 500). Each entry is an HMAC-SHA256 digest of the table, column, row id and token under
   * a key derived from `encryption.blindIndexKey` (required, with `legacyFernetKeys`), useless at any other place.
   * An existing entry is never overwritten. A run that stops is resumed by running it again; once a column's run has
   * completed, later runs record nothing new in it (they count `unlisted` tokens) unless `reopen: true` is passed,
   * which is only for a second import made before the database is exposed again. One
   * `crypto.inventory_legacy_tokens` audit row sums each completed run up.
   *
   * @example
   * ```ts
   * // right after copying the Python backend's rows in, before opening traffic:
   * const { recorded, unreadable } = await db.crypto.inventoryLegacyTokens({ batchSize: 1000 })
   * // …then, whenever ready:
   * const { rotated, refused } = await db.crypto.rotate()
   * ```
   */
  inventoryLegacyTokens(options?: {
    readonly batchSize?: number
    readonly models?: readonly EncryptedModel[]
    readonly reopen?: boolean
    readonly onProgress?: (progress: LegacyInventoryProgress) => void
  }): Promise<LegacyInventoryResult>
  /**
   * How many values each key still protects: when an old key's count is 0 everywhere, it can be retired. `models`
   * defaults to the registered models with encrypted properties.
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

/** How many values each key protects, per encrypted column and in total. */
async function keyUsage(job: CryptoJob, options: { models?: readonly EncryptedModel[] }): Promise<KeyUsage> {
  const columns: { table: string; column: string; keys: Record<string, number> }[] = []
  // No prototype: key ids are the configuration's names (`constructor`, `__proto__` count like any other).
  const total = Object.create(null) as Record<string, number>
  const walked = columnsOf(options.models ?? job.defaultModels)
  await job.dataErrors(async () => {
    for (const { table, column } of walked) {
      const { rows } = await job.knex.raw<{ rows: { key: string; count: string }[] }>(keyUsageSql(table, column))
      const keys = Object.create(null) as Record<string, number>
      for (const row of rows) {
        keys[row.key] = Number(row.count)
        total[row.key] = (total[row.key] ?? 0) + Number(row.count)
      }
      columns.push({ table, column, keys })
    }
  })
  return { columns, total }
}

/** @internal */
export function createDatabaseCrypto(
  knex: Knex,
  keyring: Keyring | undefined,
  defaultModels: readonly EncryptedModel[],
  systemStamp: (reason: string) => AuditStamp,
): DatabaseCrypto {
  const job = createCryptoJob(knex, keyring, defaultModels, systemStamp)
  return Object.freeze({
    rotate: (
      options: {
        batchSize?: number
        models?: readonly EncryptedModel[]
        onProgress?: (progress: RotationProgress) => void
      } = {},
    ): Promise<RotationResult> => rotateKeys(job, options),
    inventoryLegacyTokens: (
      options: {
        batchSize?: number
        models?: readonly EncryptedModel[]
        reopen?: boolean
        onProgress?: (progress: LegacyInventoryProgress) => void
      } = {},
    ): Promise<LegacyInventoryResult> => inventoryLegacyTokens(job, options),
    keyUsage: (options: { models?: readonly EncryptedModel[] } = {}): Promise<KeyUsage> => keyUsage(job, options),
    encryptColumn: (
      model: EncryptedModel,
      property: string,
      options: { from: string; batchSize?: number; onProgress?: (progress: EncryptColumnProgress) => void },
    ): Promise<{ encrypted: number }> => encryptColumn(job, model, property, options),
  })
}
