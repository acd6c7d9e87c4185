import { createSecretKey, hkdfSync, type KeyObject } from 'node:crypto'
import { inspect } from 'node:util'
import { ConfigError } from '../errors/index.js'

/**
 * The `encryption` part of the configuration: keys by id (base64 of 32 random bytes), the one that encrypts new
 * values, the blind-index key, and the Fernet keys of values the Python backend wrote.
 *
 * @example
 * ```ts
 * const encryption: EncryptionConfig = {
 *   keys: { k2025: process.env.KEY_2025!, k2026: process.env.KEY_2026! },
 *   current: 'k2026',
 *   blindIndexKey: process.env.BLIND_INDEX_KEY!,
 *   legacyFernetKeys: [process.env.FERNET_KEY!],
 * }
 * ```
 */
export interface EncryptionConfig {
  /** Key id → base64 (standard or URL-safe) of exactly 32 bytes. Ids: letters, digits, `_` and `-`, 1 to 64. */
  readonly keys: Readonly<Record<string, string>>
  /** The id of the key that encrypts new values; the others only decrypt. */
  readonly current: string
  /** Base64 of 32 bytes: the key of every blind index (each column derives its own from it). */
  readonly blindIndexKey?: string
  /**
   * Blind-index keys being retired, while `db.crypto.rotate()` recomputes the indexes under `blindIndexKey`: lookups
   * match an index made with any of them meanwhile. Remove them once a rotation has completed.
   */
  readonly previousBlindIndexKeys?: readonly string[]
  /** Fernet keys (URL-safe base64 of 32 bytes, as Python's `Fernet.generate_key()` makes them), newest first. */
  readonly legacyFernetKeys?: readonly string[]
}

const KEY_ID = /^[A-Za-z0-9_-]{1,64}$/
const BASE64 = /^(?:[A-Za-z0-9+/_-]{4})*(?:[A-Za-z0-9+/_-]{2}(?:==)?|[A-Za-z0-9+/_-]{3}=?)?$/

/** The 32 bytes of a base64 key, or a ConfigError naming the field (never the value). */
function keyBytes(value: unknown, field: string): Buffer {
  if (typeof value !== 'string' || !BASE64.test(value.trim())) {
    throw new ConfigError(field, 'must be base64 of 32 bytes.')
  }
  const bytes = Buffer.from(value.trim().replace(/-/g, '+').replace(/_/g, '/'), 'base64')
  if (bytes.length !== 32) throw new ConfigError(field, `must be base64 of 32 bytes (it has ${bytes.length}).`)
  return bytes
}

/** What the columns of one table and column are encrypted with: a sub-key per key id. @internal */
export interface ColumnKeys {
  readonly table: string
  readonly column: string
}

/**
 * Whether a table or column name can name a sub-key: at most 255 characters, so HKDF's info stays within its limit
 * (PostgreSQL identifiers have at most 63 bytes).
 *
 * @internal
 */
export function isPlaceName(name: unknown): name is string {
  return typeof name === 'string' && name.length <= 255
}

/** An unambiguous cache key: the table's length says where it ends. */
const placeKey = (prefix: string, table: string, column: string): string =>
  `${prefix}.${table.length}.${table}.${column}`

const SUBKEY_INFO = 'wincloud-data/column-key/v1'
const BLIND_INDEX_INFO = 'wincloud-data/blind-index/v1'
const LEGACY_INVENTORY_INFO = 'wincloud-data/legacy-token-inventory/v1'

function derive(master: KeyObject, info: string, table: string, column: string): Buffer {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), JSON.stringify([info, table, column]), 32))
}

/**
 * The keys of one database: several AES-256 keys by id (one current), sub-keys derived per table and column with
 * HKDF-SHA256 (so no key encrypts two columns with the same sub-key), the blind-index key, and legacy Fernet keys.
 * Key material never leaves it: `util.inspect`, `JSON.stringify` and `String()` show only the key ids.
 *
 * @example
 * ```ts
 * const keyring = Keyring.from({ keys: { k1: randomBytes(32).toString('base64') }, current: 'k1' })
 * console.log(keyring) // Keyring { current: 'k1', keys: [ 'k1' ], blindIndex: false, previousBlindIndexKeys: 0, fernetKeys: 0 }
 * ```
 */
export class Keyring {
  /** The id of the key that encrypts new values. */
  readonly currentKeyId: string
  /** Every key id, the current one included. */
  readonly keyIds: readonly string[]
  readonly #keys: ReadonlyMap<string, KeyObject>
  readonly #blindIndex: KeyObject | undefined
  readonly #previousBlindIndexes: readonly KeyObject[]
  readonly #fernet: readonly Buffer[]
  readonly #subKeys = new Map<string, Buffer>()

  private constructor(
    keys: Map<string, KeyObject>,
    current: string,
    blindIndex: KeyObject | undefined,
    previousBlindIndexes: KeyObject[],
    fernet: Buffer[],
  ) {
    this.#keys = keys
    this.currentKeyId = current
    this.keyIds = Object.freeze([...keys.keys()])
    this.#blindIndex = blindIndex
    this.#previousBlindIndexes = Object.freeze(previousBlindIndexes)
    this.#fernet = Object.freeze(fernet)
  }

  /**
   * Checks an encryption configuration and builds its keyring. Every problem is a `ConfigError` that names the
   * field and never shows a key.
   */
  static from(config: unknown): Keyring {
    if (typeof config !== 'object' || config === null || Array.isArray(config)) {
      throw new ConfigError('encryption', 'must be an object with keys and current.')
    }
    const c = config as Record<string, unknown>
    for (const field of Object.keys(c)) {
      if (!['keys', 'current', 'blindIndexKey', 'previousBlindIndexKeys', 'legacyFernetKeys'].includes(field)) {
        throw new ConfigError(`encryption.${field}`, 'is not an encryption option.')
      }
    }
    if (typeof c.keys !== 'object' || c.keys === null || Array.isArray(c.keys) || Object.keys(c.keys).length === 0) {
      throw new ConfigError('encryption.keys', 'must map key ids to base64 keys (at least one).')
    }
    const keys = new Map<string, KeyObject>()
    const seen = new Set<string>()
    for (const [id, value] of Object.entries(c.keys)) {
      if (!KEY_ID.test(id)) {
        throw new ConfigError('encryption.keys', 'ids must be 1 to 64 letters, digits, _ or -.')
      }
      // Key usage reports Fernet tokens and unreadable values under these two names.
      if (id === 'fernet' || id === 'unknown') {
        throw new ConfigError(`encryption.keys.${id}`, 'is a reserved name (key usage reports use it).')
      }
      const bytes = keyBytes(value, `encryption.keys.${id}`)
      const fingerprint = bytes.toString('hex')
      if (seen.has(fingerprint)) throw new ConfigError(`encryption.keys.${id}`, 'repeats another key.')
      seen.add(fingerprint)
      keys.set(id, createSecretKey(bytes))
    }
    if (typeof c.current !== 'string' || !keys.has(c.current)) {
      throw new ConfigError('encryption.current', 'must be one of the ids in encryption.keys.')
    }
    const blindIndex =
      c.blindIndexKey === undefined ? undefined : createSecretKey(keyBytes(c.blindIndexKey, 'encryption.blindIndexKey'))
    const previousBlindIndexes: KeyObject[] = []
    if (c.previousBlindIndexKeys !== undefined) {
      if (!Array.isArray(c.previousBlindIndexKeys)) {
        throw new ConfigError('encryption.previousBlindIndexKeys', 'must be a list of base64 keys.')
      }
      if (blindIndex === undefined) {
        throw new ConfigError('encryption.previousBlindIndexKeys', 'needs encryption.blindIndexKey, the new key.')
      }
      for (const [i, value] of (c.previousBlindIndexKeys as unknown[]).entries()) {
        previousBlindIndexes.push(createSecretKey(keyBytes(value, `encryption.previousBlindIndexKeys[${i}]`)))
      }
    }
    const fernet: Buffer[] = []
    if (c.legacyFernetKeys !== undefined) {
      if (!Array.isArray(c.legacyFernetKeys)) {
        throw new ConfigError('encryption.legacyFernetKeys', 'must be a list of Fernet keys.')
      }
      for (const [i, value] of (c.legacyFernetKeys as unknown[]).entries()) {
        fernet.push(keyBytes(value, `encryption.legacyFernetKeys[${i}]`))
      }
    }
    return new Keyring(keys, c.current, blindIndex, previousBlindIndexes, fernet)
  }

  /** Whether a key id is on the ring. */
  has(keyId: string): boolean {
    return this.#keys.has(keyId)
  }

  /**
   * The AES-256 key of one key id for one table and column (HKDF-SHA256 of the key, with the table and column as
   * info), or undefined for an unknown id. Cached.
   *
   * @internal
   */
  columnKey(keyId: string, table: string, column: string): Buffer | undefined {
    const master = this.#keys.get(keyId)
    if (master === undefined || !isPlaceName(table) || !isPlaceName(column)) return undefined
    const cacheKey = placeKey(keyId, table, column)
    let key = this.#subKeys.get(cacheKey)
    if (key === undefined) {
      key = derive(master, SUBKEY_INFO, table, column)
      this.#subKeys.set(cacheKey, key)
    }
    return key
  }

  /**
   * The HMAC key of one column's blind index, or undefined when no blind-index key is configured. `generation` 0 is
   * `blindIndexKey`; 1, 2… are the `previousBlindIndexKeys` (undefined past the last).
   *
   * @internal
   */
  blindIndexKey(table: string, column: string, generation = 0): Buffer | undefined {
    const master = generation === 0 ? this.#blindIndex : this.#previousBlindIndexes[generation - 1]
    if (master === undefined || !isPlaceName(table) || !isPlaceName(column)) return undefined
    const cacheKey = placeKey(`#bidx${generation}`, table, column)
    let key = this.#subKeys.get(cacheKey)
    if (key === undefined) {
      key = derive(master, BLIND_INDEX_INFO, table, column)
      this.#subKeys.set(cacheKey, key)
    }
    return key
  }

  /**
   * The HMAC keys of the legacy-token inventory (see `db.crypto.inventoryLegacyTokens()`), derived with HKDF-SHA256
   * from `blindIndexKey` under a label of their own (never the raw key, never a blind-index sub-key): the one from
   * `blindIndexKey` first (it records), then one per `previousBlindIndexKeys` (they still verify, so retiring a
   * blind-index key does not void an inventory). Empty without `blindIndexKey`.
   *
   * @internal
   */
  legacyInventoryKeys(): readonly Buffer[] {
    const masters = this.#blindIndex === undefined ? [] : [this.#blindIndex, ...this.#previousBlindIndexes]
    return masters.map((master, generation) => {
      const cacheKey = placeKey(`#legacy${generation}`, '', '')
      let key = this.#subKeys.get(cacheKey)
      if (key === undefined) {
        key = derive(master, LEGACY_INVENTORY_INFO, '', '')
        this.#subKeys.set(cacheKey, key)
      }
      return key
    })
  }

  /** How many blind-index keys are being retired (`previousBlindIndexKeys`). @internal */
  get previousBlindIndexCount(): number {
    return this.#previousBlindIndexes.length
  }

  /**
   * Secrets for another purpose (e.g. signing pagination cursors), one per key, derived with HKDF-SHA256: the
   * current key's first, so it signs and the others still verify.
   *
   * @internal
   */
  purposeSecrets(purpose: string): Buffer[] {
    const ids = [this.currentKeyId, ...this.keyIds.filter((id) => id !== this.currentKeyId)]
    return ids.map((id) => derive(this.#keys.get(id)!, 'wincloud-data/purpose/v1', purpose, ''))
  }

  /** The legacy Fernet keys (32 bytes each), newest first. @internal */
  fernetKeys(): readonly Buffer[] {
    return this.#fernet
  }

  /** Key ids only. */
  toJSON(): {
    current: string
    keys: readonly string[]
    blindIndex: boolean
    previousBlindIndexKeys: number
    fernetKeys: number
  } {
    return {
      current: this.currentKeyId,
      keys: this.keyIds,
      blindIndex: this.#blindIndex !== undefined,
      previousBlindIndexKeys: this.#previousBlindIndexes.length,
      fernetKeys: this.#fernet.length,
    }
  }

  toString(): string {
    return `Keyring(current: ${this.currentKeyId}, keys: ${this.keyIds.join(', ')})`
  }

  [inspect.custom](): string {
    return `Keyring ${inspect(this.toJSON())}`
  }
}
