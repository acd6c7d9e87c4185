import type { Knex } from 'knex'
import { auditRowInsert, stampedRow, type AuditStamp } from '../audit/recorder.js'
import { toDataError } from '../errors/driver-errors.js'
import { ConfigError, DecryptionError, ValidationError } from '../errors/index.js'
import type { Keyring } from '../crypto/keyring.js'
import type { EncryptedModel } from '../crypto/key-usage.js'

/**
 * What every job of `db.crypto` shares: the database, the keyring, the default models, the audit summary of a run
 * and the mapping of driver errors.
 *
 * @internal
 */
export interface CryptoJob {
  readonly knex: Knex
  /** The registered models with encrypted properties, walked when a call names no models. */
  readonly defaultModels: readonly EncryptedModel[]
  /** The keyring, or a `ConfigError` saying `encryption` is needed to do `what`. */
  needKeyring(what: string): Keyring
  /** Writes the one audit row that sums a run up. */
  summarize(action: string, reason: string, metadata: Record<string, unknown>): Promise<void>
  /** Runs `work`, turning driver errors into `DataError`s (decryption and validation errors pass as they are). */
  dataErrors<T>(work: () => Promise<T>): Promise<T>
}

/** @internal */
export function createCryptoJob(
  knex: Knex,
  keyring: Keyring | undefined,
  defaultModels: readonly EncryptedModel[],
  systemStamp: (reason: string) => AuditStamp,
): CryptoJob {
  return {
    knex,
    defaultModels,
    needKeyring: (what) => {
      if (keyring === undefined) throw new ConfigError('encryption', `is needed to ${what}.`)
      return keyring
    },
    summarize: async (action, reason, metadata) => {
      const insert = auditRowInsert(stampedRow(systemStamp(reason), action, { metadata }))
      await knex.raw(insert.sql, insert.bindings as Knex.RawBinding[])
    },
    dataErrors: async (work) => {
      try {
        return await work()
      } catch (error) {
        if (error instanceof DecryptionError || error instanceof ValidationError) throw error
        throw toDataError(error)
      }
    },
  }
}
