import { createHmac } from 'node:crypto'
import { ConfigError, ValidationError } from '../errors/index.js'
import { isPlaceName, type Keyring } from './keyring.js'

/**
 * How a value is normalized before it is indexed, so that equal-enough values find each other: `'none'`,
 * `'lowercase'`, `'trim'`, `'trim-lowercase'` (e.g. emails), or a function.
 *
 * @example
 * ```ts
 * const emails: BlindIndexNormalization = 'trim-lowercase'
 * ```
 */
export type BlindIndexNormalization = 'none' | 'lowercase' | 'trim' | 'trim-lowercase' | ((value: string) => string)

/**
 * A column's blind index: normalization and size in bytes (8 to 32, default 16). Fewer bytes leak less about equal
 * values across rows and collide more often (a lookup then returns a few extra rows, which the decrypted value
 * filters out).
 *
 * @example
 * ```ts
 * const apiToken: BlindIndexOptions = { normalize: 'none', bytes: 16 }
 * ```
 */
export interface BlindIndexOptions {
  readonly normalize?: BlindIndexNormalization
  readonly bytes?: number
}

function normalizer(normalize: BlindIndexNormalization | undefined): (value: string) => string {
  switch (normalize ?? 'none') {
    case 'none':
      return (v) => v
    case 'lowercase':
      return (v) => v.toLowerCase()
    case 'trim':
      return (v) => v.trim()
    case 'trim-lowercase':
      return (v) => v.trim().toLowerCase()
    default:
      if (typeof normalize === 'function') return normalize
      throw new ConfigError(
        'blindIndex.normalize',
        "must be 'none', 'lowercase', 'trim', 'trim-lowercase' or a function.",
      )
  }
}

/**
 * The blind index of a value for one table and column: HMAC-SHA256 under the column's blind-index key (derived from
 * `encryption.blindIndexKey`) over the normalized value (NFC Unicode), truncated to `bytes`, as base64url. Equal
 * values give equal indexes; nothing else about the value can be read from it without the key.
 *
 * @example
 * ```ts
 * const lookup = blindIndex(keyring, 'users', 'api_token_bidx', token, { bytes: 16 })
 * ```
 */
export function blindIndex(
  keyring: Keyring,
  table: string,
  column: string,
  value: string,
  options: BlindIndexOptions = {},
): string {
  return blindIndexes(keyring, table, column, value, options)[0]!
}

/**
 * The blind indexes a value may have while a blind-index key is being retired: under `blindIndexKey` first, then
 * under each of `previousBlindIndexKeys`. A lookup matches any of them; a write stores the first.
 *
 * @internal
 */
export function blindIndexes(
  keyring: Keyring,
  table: string,
  column: string,
  value: string,
  options: BlindIndexOptions = {},
): string[] {
  for (const [field, name] of [
    ['table', table],
    ['column', column],
  ] as const) {
    if (!isPlaceName(name) || name.length === 0) {
      throw new ValidationError(`A blind index needs its ${field}.`, [
        { field, message: 'must be a string of 1 to 255 characters' },
      ])
    }
  }
  if (typeof value !== 'string') {
    throw new ValidationError('A blind index is made of a string.', [{ field: column, message: 'must be a string' }])
  }
  if (keyring.blindIndexKey(table, column) === undefined) {
    throw new ConfigError('encryption.blindIndexKey', 'is needed for blind indexes.')
  }
  const bytes = options.bytes ?? 16
  if (!Number.isInteger(bytes) || bytes < 8 || bytes > 32) {
    throw new ConfigError('blindIndex.bytes', 'must be an integer from 8 to 32.')
  }
  const normalized = normalizer(options.normalize)(value.normalize('NFC'))
  const indexes: string[] = []
  for (let generation = 0; generation <= keyring.previousBlindIndexCount; generation++) {
    const key = keyring.blindIndexKey(table, column, generation)!
    indexes.push(createHmac('sha256', key).update(normalized, 'utf8').digest().subarray(0, bytes).toString('base64url'))
  }
  return indexes
}
