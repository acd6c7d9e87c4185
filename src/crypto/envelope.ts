import { isWellFormedText as wellFormed } from '../internal/text.js'
import { createCipheriv, createDecipheriv } from 'node:crypto'
import { DecryptionError, ValidationError } from '../errors/index.js'
import type { Keyring } from './keyring.js'
import { freshRandom } from './random-pool.js'

/**
 * Where an encrypted value lives: its table, column and row id. They are the envelope's associated data, so a
 * ciphertext copied to another row or column does not decrypt.
 *
 * @example
 * ```ts
 * const place: EnvelopeContext = { table: 'droplets', column: 'admin_password_ciphertext', rowId: droplet.id }
 * ```
 */
export interface EnvelopeContext {
  readonly table: string
  readonly column: string
  readonly rowId: string
}

/** The version tag every envelope starts with. */
export const ENVELOPE_VERSION = 'v1'

const NONCE_BYTES = 12
const TAG_BYTES = 16
/** The first plaintext byte says what the value is. */
const STRING = 0x73 // 's'
const JSON_VALUE = 0x6a // 'j'
const KEY_ID = /^[A-Za-z0-9_-]{1,64}$/
const BASE64URL = /^[A-Za-z0-9_-]+$/
const B64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/** Whether unpadded base64url text is the canonical spelling of its bytes (no stray bits in its last character). */
function canonicalBase64url(text: string): boolean {
  const rest = text.length % 4
  if (rest === 1) return false
  if (rest === 0) return true
  const last = B64URL_ALPHABET.indexOf(text[text.length - 1]!)
  return (last & (rest === 2 ? 0x0f : 0x03)) === 0
}

const aadPrefixes = new Map<string, string>()

/** `["wincloud-data/envelope/v1",keyId,table,column,rowId]` as JSON bytes; the part before the row id is cached. */
function associatedData(keyId: string, context: EnvelopeContext): Buffer {
  const cacheKey = `${keyId}.${context.table.length}.${context.table}.${context.column}`
  let prefix = aadPrefixes.get(cacheKey)
  if (prefix === undefined) {
    prefix = JSON.stringify(['wincloud-data/envelope/v1', keyId, context.table, context.column]).slice(0, -1)
    if (aadPrefixes.size < 10_000) aadPrefixes.set(cacheKey, prefix)
  }
  return Buffer.from(`${prefix},${JSON.stringify(context.rowId)}]`)
}

/** The key id, nonce and sealed parts of an envelope, or undefined when the text is not one. */
function parseEnvelope(text: string): [string, string, string] | undefined {
  if (typeof text !== 'string' || !text.startsWith('v1.')) return undefined
  const second = text.indexOf('.', 3)
  if (second < 0) return undefined
  const third = text.indexOf('.', second + 1)
  if (third < 0 || text.indexOf('.', third + 1) >= 0) return undefined
  const keyId = text.slice(3, second)
  const nonce = text.slice(second + 1, third)
  const sealed = text.slice(third + 1)
  if (!KEY_ID.test(keyId) || nonce.length !== 16 || !BASE64URL.test(nonce) || sealed.length < 23) return undefined
  if (!BASE64URL.test(sealed) || !canonicalBase64url(sealed)) return undefined
  return [keyId, nonce, sealed]
}

/** The first part of a place that is not a string of 1 to 255 characters, or undefined when all are. */
function badContextField(context: EnvelopeContext): 'table' | 'column' | 'rowId' | undefined {
  if (typeof context !== 'object' || context === null) return 'table'
  for (const field of ['table', 'column', 'rowId'] as const) {
    const value: unknown = context[field]
    if (typeof value !== 'string' || value.length === 0 || value.length > 255) return field
  }
  return undefined
}

function invalidValue(column: string, message: string): ValidationError {
  return new ValidationError(`An encrypted value ${message}.`, [{ field: column, message }])
}

/**
 * Encrypts a string or a JSON value under the keyring's current key, for one table, column and row:
 * `v1.<keyId>.<nonce>.<ciphertext and tag>` (base64url), AES-256-GCM with a fresh 12-byte nonce and the place as
 * associated data. `null` and `undefined` are not encrypted: they stay themselves.
 *
 * @example
 * ```ts
 * const stored = encryptValue(keyring, 'Pa55-w0rd!', { table: 'droplets', column: 'admin_password_ciphertext', rowId })
 * ```
 */
export function encryptValue(keyring: Keyring, value: null | undefined, context: EnvelopeContext): null
export function encryptValue(keyring: Keyring, value: unknown, context: EnvelopeContext): string
export function encryptValue(keyring: Keyring, value: unknown, context: EnvelopeContext): string | null {
  if (value === null || value === undefined) return null
  const bad = badContextField(context)
  if (bad !== undefined) {
    throw new ValidationError(`An encrypted value needs its ${bad}.`, [
      { field: bad, message: 'must be a string of 1 to 255 characters' },
    ])
  }
  let text: string | undefined
  try {
    text = typeof value === 'string' ? value : JSON.stringify(value)
  } catch {
    // BigInt, circular structures, a throwing toJSON
    throw invalidValue(context.column, 'must be a string or a JSON value')
  }
  if (text === undefined) throw invalidValue(context.column, 'must be a string or a JSON value')
  // UTF-8 cannot carry a lone surrogate: it would come back as U+FFFD, a different string.
  if (!wellFormed(text)) throw invalidValue(context.column, 'must be well-formed Unicode text')
  const plaintext = Buffer.allocUnsafe(1 + Buffer.byteLength(text, 'utf8'))
  plaintext[0] = typeof value === 'string' ? STRING : JSON_VALUE
  plaintext.write(text, 1, 'utf8')
  const keyId = keyring.currentKeyId
  const key = keyring.columnKey(keyId, context.table, context.column)!
  const nonce = freshRandom(NONCE_BYTES)
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES })
  cipher.setAAD(associatedData(keyId, context))
  const sealed = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()])
  plaintext.fill(0)
  return `${ENVELOPE_VERSION}.${keyId}.${nonce.toString('base64url')}.${sealed.toString('base64url')}`
}

/**
 * The key id an envelope names, or undefined when the text is not an envelope (e.g. a Fernet token).
 *
 * @example
 * ```ts
 * if (envelopeKeyId(stored) !== keyring.currentKeyId) needsRotation.push(id)
 * ```
 */
export function envelopeKeyId(text: string): string | undefined {
  return parseEnvelope(text)?.[0]
}

/**
 * Decrypts an envelope made by {@link encryptValue} for the same table, column and row. Anything wrong (another
 * row, a flipped bit, a truncated value, an unknown key id, a wrong key) is a {@link DecryptionError} that says only
 * "Decryption failed".
 *
 * @example
 * ```ts
 * const password = decryptValue(keyring, row.admin_password_ciphertext, { table: 'droplets', column: 'admin_password_ciphertext', rowId: row.id })
 * ```
 */
export function decryptValue(keyring: Keyring, envelope: string, context: EnvelopeContext): unknown {
  const parts = parseEnvelope(envelope)
  if (parts === undefined || badContextField(context) !== undefined) throw new DecryptionError()
  const [keyId, nonceText, sealedText] = parts
  const key = keyring.columnKey(keyId, context.table, context.column)
  if (key === undefined) throw new DecryptionError()
  const nonce = Buffer.from(nonceText, 'base64url')
  const sealed = Buffer.from(sealedText, 'base64url')
  if (nonce.length !== NONCE_BYTES || sealed.length <= TAG_BYTES || !canonicalBase64url(nonceText)) {
    throw new DecryptionError()
  }
  let plaintext: Buffer
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES })
    decipher.setAAD(associatedData(keyId, context))
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES))
    plaintext = Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)), decipher.final()])
  } catch {
    throw new DecryptionError()
  }
  try {
    const body = plaintext.subarray(1).toString('utf8')
    if (plaintext[0] === STRING) return body
    if (plaintext[0] === JSON_VALUE) return JSON.parse(body) as unknown
    throw new DecryptionError()
  } catch {
    throw new DecryptionError()
  } finally {
    plaintext.fill(0)
  }
}
