import { quoteIdentifier } from '../internal/identifiers.js'
import { createHmac, timingSafeEqual } from 'node:crypto'
import type { Knex } from 'knex'
import { auditRowInsert, stampedRow, type AuditStamp } from '../audit/recorder.js'
import { toDataError } from '../errors/driver-errors.js'
import { ConfigError, DecryptionError, ValidationError } from '../errors/index.js'
import { blindIndex } from '../crypto/blind-index.js'
import { encryptedProperties, readStoredValue, type EncryptedProperty } from '../crypto/columns.js'
import { encryptValue } from '../crypto/envelope.js'
import { fernetDecrypt, isFernetToken } from '../crypto/fernet.js'
import type { Keyring } from '../crypto/keyring.js'
import { keyUsageSql, type EncryptedModel, type KeyUsage } from '../crypto/key-usage.js'

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
  /** Fernet tokens left as they were so far in this run, all columns: see {@link LegacyTokenRefusal}. */
  readonly refused: number
}

/**
 * Why `db.crypto.rotate()` left a Fernet token as it was instead of making it an envelope bound to its row:
 *
 * - `no-inventory`: no inventory of legacy tokens was completed for the column. Take it with
 *   `db.crypto.inventoryLegacyTokens()` right after importing the Python backend's data.
 * - `not-in-inventory`: the inventory has no entry for this row: the token was written or moved here after it.
 * - `moved`: the row's entry is for another token: this one was moved or copied here (or swapped) since.
 * - `no-key`: `encryption.blindIndexKey`, which keys the inventory, is not configured.
 *
 * @example
 * ```ts
 * const { refusals } = await db.crypto.rotate()
 * for (const r of refusals) log.warn({ table: r.table, column: r.column, rowId: r.rowId }, r.message)
 * ```
 */
export interface LegacyTokenRefusal {
  readonly table: string
  readonly column: string
  readonly rowId: string
  readonly reason: 'no-inventory' | 'not-in-inventory' | 'moved' | 'no-key'
  /** What it means and what to do; never the value. */
  readonly message: string
}

/**
 * What `db.crypto.rotate()` did.
 *
 * @example
 * ```ts
 * const { rotated, refused }: RotationResult = await db.crypto.rotate()
 * ```
 */
export interface RotationResult {
  /** Values re-encrypted under the current key (Fernet tokens made envelopes included). */
  readonly rotated: number
  /** Blind indexes recomputed under `blindIndexKey` (only while `previousBlindIndexKeys` are set). */
  readonly reindexed: number
  /** Fernet tokens left as they were, because the inventory does not vouch for them at their row. */
  readonly refused: number
  /** The first 100 of them, each with its reason. */
  readonly refusals: readonly LegacyTokenRefusal[]
}

/**
 * What `db.crypto.inventoryLegacyTokens()` found.
 *
 * @example
 * ```ts
 * const { recorded, moved }: LegacyInventoryResult = await db.crypto.inventoryLegacyTokens()
 * ```
 */
export interface LegacyInventoryResult {
  /** Tokens recorded at their place in this run. */
  readonly recorded: number
  /** Tokens whose place already had an entry for them (from an earlier run). */
  readonly alreadyRecorded: number
  /** Tokens whose place has an entry for another token: not overwritten, `rotate()` will refuse them. */
  readonly moved: number
  /**
   * Tokens at places without an entry, in a column whose inventory was completed by an earlier run: not recorded
   * (pass `reopen: true` to record them), `rotate()` will refuse them.
   */
  readonly unlisted: number
  /** Values shaped like Fernet tokens that no key of `legacyFernetKeys` reads: not recorded. */
  readonly unreadable: number
}

/**
 * Progress of `db.crypto.inventoryLegacyTokens()`, after each batch.
 *
 * @example
 * ```ts
 * const onProgress = (p: LegacyInventoryProgress) => console.log(`${p.table}.${p.column}: ${p.recorded}`)
 * ```
 */
export interface LegacyInventoryProgress {
  readonly table: string
  readonly column: string
  /** Tokens recorded so far in this run, all columns. */
  readonly recorded: number
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

const LEGACY_DIGEST_LABEL = 'wincloud-data/legacy-token/v1'

/**
 * The inventory digest of a legacy token at its place: HMAC-SHA256 under an inventory key over the label, table,
 * column, row id and token, each prefixed by its length in bytes (4 bytes, big-endian), so no two places or tokens
 * give the same message.
 *
 * @internal
 */
export function legacyTokenDigest(
  key: Buffer,
  place: { readonly table: string; readonly column: string; readonly rowId: string },
  token: string,
): Buffer {
  const hmac = createHmac('sha256', key)
  for (const part of [LEGACY_DIGEST_LABEL, place.table, place.column, place.rowId, token]) {
    const bytes = Buffer.from(part, 'utf8')
    const length = Buffer.alloc(4)
    length.writeUInt32BE(bytes.length)
    hmac.update(length).update(bytes)
  }
  return hmac.digest()
}

const REFUSALS_LISTED = 100

const REFUSAL_MESSAGES: Record<LegacyTokenRefusal['reason'], string> = {
  'no-inventory':
    'Fernet token left as it is: no inventory of legacy tokens was taken for this column. Take it with ' +
    'db.crypto.inventoryLegacyTokens() (command line: wincloud-data inventory-legacy) right after importing the ' +
    "Python backend's data, before anyone else can write to the database, then rotate again.",
  'not-in-inventory':
    'Fernet token left as it is: the legacy-token inventory has no entry for this row, so it was written or moved ' +
    'here after the inventory was taken.',
  moved:
    "Fernet token left as it is: this row's inventory entry is for another token, so this one was moved or copied " +
    'here, or replaced, after the inventory was taken.',
  'no-key':
    'Fernet token left as it is: encryption.blindIndexKey, which keys the legacy-token inventory, is not configured.',
}

/** Whether a Fernet token authenticates under one of the legacy keys. */
function readsAsFernet(keys: readonly Buffer[], token: string): boolean {
  try {
    fernetDecrypt(keys, token)
    return true
  } catch {
    return false
  }
}

/** Whether a legacy token's digest at its place matches a recorded one under any inventory key. */
function vouchedFor(keys: readonly Buffer[], place: WalkedPlace, token: string, recorded: Buffer): boolean {
  return keys.some((key) => {
    const digest = legacyTokenDigest(key, place, token)
    return digest.length === recorded.length && timingSafeEqual(digest, recorded)
  })
}

interface WalkedPlace {
  readonly table: string
  readonly column: string
  readonly rowId: string
}

/** The inventory entries (hex digests) of some rows of one column, by row id. */
async function inventoryEntries(
  trx: Knex,
  table: string,
  column: string,
  rowIds: readonly string[],
): Promise<Map<string, Buffer>> {
  if (rowIds.length === 0) return new Map()
  const { rows } = await trx.raw<{ rows: { row_id: string; digest: string }[] }>(
    `select row_id, encode(digest, 'hex') as digest from wincloud_legacy_tokens
     where table_name = ? and column_name = ? and row_id = any(?::text[])`,
    [table, column, rowIds] as Knex.RawBinding[],
  )
  return new Map(rows.map((r) => [r.row_id, Buffer.from(r.digest, 'hex')]))
}

/** Whether the inventory of one column was completed; undefined when migration 0005 has not run. */
async function inventoryCompleted(knex: Knex, table: string, column: string): Promise<boolean | undefined> {
  const { rows } = await knex.raw<{ rows: { present: boolean }[] }>(
    `select to_regclass('wincloud_legacy_token_columns') is not null as present`,
  )
  if (rows[0]?.present !== true) return undefined
  const done = await knex.raw<{ rows: unknown[] }>(
    `select 1 from wincloud_legacy_token_columns where table_name = ? and column_name = ?`,
    [table, column],
  )
  return done.rows.length > 0
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
  ): Promise<RotationResult> => {
    const ring = needKeyring('rotate keys')
    const batchSize = checkBatchSize(options.batchSize ?? 500)
    const columns = columnsOf(options.models ?? defaultModels)
    const current = `v1.${ring.currentKeyId}.%`
    const inventoryKeys = ring.legacyInventoryKeys()
    let rotated = 0
    let reindexed = 0
    let refused = 0
    const refusals: LegacyTokenRefusal[] = []
    const refuse = (place: WalkedPlace, reason: LegacyTokenRefusal['reason']): void => {
      refused += 1
      if (refusals.length < REFUSALS_LISTED) refusals.push({ ...place, reason, message: REFUSAL_MESSAGES[reason] })
    }
    await dataErrors(async () => {
      for (const walked of columns) {
        const { table, column } = walked
        // Whether this column's legacy-token inventory was completed: asked once, when its first token shows up.
        let completed: boolean | undefined | null = null
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
            // A Fernet token names no row: it becomes an envelope bound to this row only when the inventory, taken
            // before anyone could move it, recorded it here.
            const tokenIds = rows.filter((row) => isFernetToken(row.value)).map((row) => row.id)
            if (tokenIds.length > 0 && completed === null) completed = await inventoryCompleted(trx, table, column)
            const entries =
              tokenIds.length > 0 && completed !== undefined && inventoryKeys.length > 0
                ? await inventoryEntries(trx, table, column, tokenIds)
                : new Map<string, Buffer>()
            const ids: string[] = []
            const values: string[] = []
            const indexes: (string | null)[] = []
            const converted: string[] = []
            for (const row of rows) {
              const place = { table, column, rowId: row.id }
              const underCurrent = row.value.startsWith(`v1.${ring.currentKeyId}.`)
              if (underCurrent && !reindex) continue
              if (isFernetToken(row.value)) {
                const entry = entries.get(row.id)
                if (inventoryKeys.length === 0) {
                  refuse(place, 'no-key')
                  continue
                }
                if (entry === undefined) {
                  refuse(place, completed === true ? 'not-in-inventory' : 'no-inventory')
                  continue
                }
                if (!vouchedFor(inventoryKeys, place, row.value, entry)) {
                  refuse(place, 'moved')
                  continue
                }
                converted.push(row.id)
              }
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
            if (converted.length > 0) {
              await trx.raw(
                `delete from wincloud_legacy_tokens where table_name = ? and column_name = ? and row_id = any(?::text[])`,
                [table, column, converted] as Knex.RawBinding[],
              )
            }
            after = rows[rows.length - 1]!.id
            options.onProgress?.({ table, column, rotated, reindexed, refused })
            return rows.length < batchSize
          })
          if (done) break
        }
      }
      await summarize('crypto.rotate', 'key rotation', { rotated, reindexed, refused, currentKey: ring.currentKeyId })
    })
    return { rotated, reindexed, refused, refusals }
  }

  const inventoryLegacyTokens = async (
    options: {
      batchSize?: number
      models?: readonly EncryptedModel[]
      reopen?: boolean
      onProgress?: (progress: LegacyInventoryProgress) => void
    } = {},
  ): Promise<LegacyInventoryResult> => {
    const ring = needKeyring('take the legacy-token inventory')
    const [key] = ring.legacyInventoryKeys()
    if (key === undefined) {
      throw new ConfigError(
        'encryption.blindIndexKey',
        'is needed for the legacy-token inventory (it keys its digests).',
      )
    }
    const fernetKeys = ring.fernetKeys()
    if (fernetKeys.length === 0) {
      throw new ConfigError('encryption.legacyFernetKeys', 'is needed for the legacy-token inventory.')
    }
    const batchSize = checkBatchSize(options.batchSize ?? 500)
    const reopen: unknown = options.reopen ?? false
    if (typeof reopen !== 'boolean') {
      throw new ValidationError('reopen must be true or false.', [{ field: 'reopen', message: 'must be a boolean' }])
    }
    const columns = columnsOf(options.models ?? defaultModels)
    const inventoryKeys = ring.legacyInventoryKeys()
    let recorded = 0
    let alreadyRecorded = 0
    let moved = 0
    let unlisted = 0
    let unreadable = 0
    await dataErrors(async () => {
      for (const { table, column } of columns) {
        const t = quoteIdentifier(table)
        const c = quoteIdentifier(column)
        const completed = await inventoryCompleted(knex, table, column)
        if (completed === undefined) {
          throw new ConfigError('migrations', 'are not up to date: 0005_legacy_token_inventory is needed.')
        }
        let after = '00000000-0000-0000-0000-000000000000'
        for (;;) {
          const done = await knex.transaction(async (trx) => {
            // Rows are share-locked, so the token recorded is the one the row holds when the batch commits.
            const { rows } = await trx.raw<{ rows: { id: string; value: string }[] }>(
              `select id::text as id, ${c} as value from ${t} where ${c} like 'gAAAAA%' and id > ?
               order by id limit ? for share`,
              [after, batchSize],
            )
            if (rows.length === 0) return true
            const entries = await inventoryEntries(
              trx,
              table,
              column,
              rows.map((row) => row.id),
            )
            const newIds: string[] = []
            const digests: string[] = []
            for (const row of rows) {
              const place = { table, column, rowId: row.id }
              if (!isFernetToken(row.value) || !readsAsFernet(fernetKeys, row.value)) {
                unreadable += 1
                continue
              }
              const entry = entries.get(row.id)
              if (entry !== undefined) {
                if (vouchedFor(inventoryKeys, place, row.value, entry)) alreadyRecorded += 1
                else moved += 1
                continue
              }
              if (completed && !reopen) {
                unlisted += 1
                continue
              }
              newIds.push(row.id)
              digests.push(legacyTokenDigest(key, place, row.value).toString('hex'))
            }
            if (newIds.length > 0) {
              const inserted = await trx.raw<{ rowCount: number }>(
                `insert into wincloud_legacy_tokens (table_name, column_name, row_id, digest)
                 select ?, ?, v.row_id, decode(v.digest, 'hex') from unnest(?::text[], ?::text[]) as v(row_id, digest)
                 on conflict (table_name, column_name, row_id) do nothing`,
                [table, column, newIds, digests] as Knex.RawBinding[],
              )
              recorded += inserted.rowCount
            }
            after = rows[rows.length - 1]!.id
            options.onProgress?.({ table, column, recorded })
            return rows.length < batchSize
          })
          if (done) break
        }
        await knex.raw(
          `insert into wincloud_legacy_token_columns (table_name, column_name) values (?, ?)
           on conflict (table_name, column_name) do nothing`,
          [table, column],
        )
      }
      await summarize('crypto.inventory_legacy_tokens', 'legacy-token inventory', {
        recorded,
        alreadyRecorded,
        moved,
        unlisted,
        unreadable,
        reopen,
      })
    })
    return { recorded, alreadyRecorded, moved, unlisted, unreadable }
  }

  const keyUsage = async (options: { models?: readonly EncryptedModel[] } = {}): Promise<KeyUsage> => {
    const columns: { table: string; column: string; keys: Record<string, number> }[] = []
    // No prototype: key ids are the configuration's names (`constructor`, `__proto__` count like any other).
    const total = Object.create(null) as Record<string, number>
    const walked = columnsOf(options.models ?? defaultModels)
    await dataErrors(async () => {
      for (const { table, column } of walked) {
        const { rows } = await knex.raw<{ rows: { key: string; count: string }[] }>(keyUsageSql(table, column))
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

  return Object.freeze({ rotate, inventoryLegacyTokens, keyUsage, encryptColumn })
}
