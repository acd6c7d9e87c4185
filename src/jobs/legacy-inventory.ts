import { createHmac, timingSafeEqual } from 'node:crypto'
import type { Knex } from 'knex'
import { quoteIdentifier } from '../internal/identifiers.js'
import { ConfigError, ValidationError } from '../errors/index.js'
import { fernetDecrypt, isFernetToken } from '../crypto/fernet.js'
import type { EncryptedModel } from '../crypto/key-usage.js'
import { checkBatchSize, columnsOf, walkById, type WalkedPlace } from './batch-walk.js'
import type { CryptoJob } from './crypto-job.js'

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

/** Whether a Fernet token authenticates under one of the legacy keys. */
function readsAsFernet(keys: readonly Buffer[], token: string): boolean {
  try {
    fernetDecrypt(keys, token)
    return true
  } catch {
    return false
  }
}

/**
 * Whether a legacy token's digest at its place matches a recorded one under any inventory key.
 *
 * @internal
 */
export function vouchedFor(keys: readonly Buffer[], place: WalkedPlace, token: string, recorded: Buffer): boolean {
  return keys.some((key) => {
    const digest = legacyTokenDigest(key, place, token)
    return digest.length === recorded.length && timingSafeEqual(digest, recorded)
  })
}

/**
 * The inventory entries (hex digests) of some rows of one column, by row id.
 *
 * @internal
 */
export async function inventoryEntries(
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

/**
 * Whether the inventory of one column was completed; undefined when migration 0005 has not run.
 *
 * @internal
 */
export async function inventoryCompleted(knex: Knex, table: string, column: string): Promise<boolean | undefined> {
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

/** One run of the inventory: its settings, keys and counts so far. */
interface InventoryRun {
  readonly knex: Knex
  readonly batchSize: number
  readonly reopen: boolean
  /** The key new entries are recorded under. */
  readonly key: Buffer
  readonly fernetKeys: readonly Buffer[]
  /** Every key an existing entry may be under. */
  readonly inventoryKeys: readonly Buffer[]
  readonly counts: { recorded: number; alreadyRecorded: number; moved: number; unlisted: number; unreadable: number }
  readonly onProgress: ((progress: LegacyInventoryProgress) => void) | undefined
}

/**
 * `db.crypto.inventoryLegacyTokens()`: see `DatabaseCrypto.inventoryLegacyTokens`.
 *
 * @internal
 */
export async function inventoryLegacyTokens(
  job: CryptoJob,
  options: {
    batchSize?: number
    models?: readonly EncryptedModel[]
    reopen?: boolean
    onProgress?: (progress: LegacyInventoryProgress) => void
  },
): Promise<LegacyInventoryResult> {
  const ring = job.needKeyring('take the legacy-token inventory')
  const [key] = ring.legacyInventoryKeys()
  if (key === undefined) {
    throw new ConfigError('encryption.blindIndexKey', 'is needed for the legacy-token inventory (it keys its digests).')
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
  const columns = columnsOf(options.models ?? job.defaultModels)
  const counts = { recorded: 0, alreadyRecorded: 0, moved: 0, unlisted: 0, unreadable: 0 }
  const run: InventoryRun = {
    knex: job.knex,
    batchSize,
    reopen,
    key,
    fernetKeys,
    inventoryKeys: ring.legacyInventoryKeys(),
    counts,
    onProgress: options.onProgress,
  }
  await job.dataErrors(async () => {
    for (const { table, column } of columns) await inventoryColumn(run, table, column)
    await job.summarize('crypto.inventory_legacy_tokens', 'legacy-token inventory', { ...counts, reopen })
  })
  return { ...counts }
}

/** Records the legacy tokens of one column in batches, then marks the column's inventory completed. */
async function inventoryColumn(run: InventoryRun, table: string, column: string): Promise<void> {
  const { knex, batchSize, counts } = run
  const t = quoteIdentifier(table)
  const c = quoteIdentifier(column)
  const completed = await inventoryCompleted(knex, table, column)
  if (completed === undefined) {
    throw new ConfigError('migrations', 'are not up to date: 0005_legacy_token_inventory is needed.')
  }
  await walkById(
    knex,
    batchSize,
    async (trx, after) => {
      // Rows are share-locked, so the token recorded is the one the row holds when the batch commits.
      const { rows } = await trx.raw<{ rows: { id: string; value: string }[] }>(
        `select id::text as id, ${c} as value from ${t} where ${c} like 'gAAAAA%' and id > ?
         order by id limit ? for share`,
        [after, batchSize],
      )
      return rows
    },
    async (trx, rows) => {
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
        if (!isFernetToken(row.value) || !readsAsFernet(run.fernetKeys, row.value)) {
          counts.unreadable += 1
          continue
        }
        const entry = entries.get(row.id)
        if (entry !== undefined) {
          if (vouchedFor(run.inventoryKeys, place, row.value, entry)) counts.alreadyRecorded += 1
          else counts.moved += 1
          continue
        }
        if (completed && !run.reopen) {
          counts.unlisted += 1
          continue
        }
        newIds.push(row.id)
        digests.push(legacyTokenDigest(run.key, place, row.value).toString('hex'))
      }
      if (newIds.length > 0) {
        const inserted = await trx.raw<{ rowCount: number }>(
          `insert into wincloud_legacy_tokens (table_name, column_name, row_id, digest)
           select ?, ?, v.row_id, decode(v.digest, 'hex') from unnest(?::text[], ?::text[]) as v(row_id, digest)
           on conflict (table_name, column_name, row_id) do nothing`,
          [table, column, newIds, digests] as Knex.RawBinding[],
        )
        counts.recorded += inserted.rowCount
      }
      run.onProgress?.({ table, column, recorded: counts.recorded })
    },
  )
  await knex.raw(
    `insert into wincloud_legacy_token_columns (table_name, column_name) values (?, ?)
     on conflict (table_name, column_name) do nothing`,
    [table, column],
  )
}
