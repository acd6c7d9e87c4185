import { createCipheriv, createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto'
import { DecryptionError, ValidationError } from '../errors/index.js'
import { freshRandom } from './random-pool.js'

const VERSION = 0x80
const HEADER = 1 + 8 + 16
const HMAC_BYTES = 32
/** As Python's `cryptography.fernet`: a token stamped further than this in the future is refused (with a TTL). */
const MAX_CLOCK_SKEW_SECONDS = 60
const TOKEN = /^[A-Za-z0-9_-]+={0,2}$/

function invalidOption(field: string, message: string): ValidationError {
  return new ValidationError(`Fernet option ${field} ${message}.`, [{ field, message }])
}

function splitKey(key: Buffer): { signing: Buffer; encryption: Buffer } {
  if (!Buffer.isBuffer(key) || key.length !== 32) throw new DecryptionError()
  return { signing: key.subarray(0, 16), encryption: key.subarray(16) }
}

/**
 * A Fernet key (URL-safe base64 of 32 bytes, as Python's `Fernet.generate_key()` prints it) as bytes, or undefined
 * when it is not one.
 *
 * @example
 * ```ts
 * const key = fernetKey(process.env.FERNET_KEY!)
 * ```
 */
export function fernetKey(text: string): Buffer | undefined {
  if (typeof text !== 'string' || !/^[A-Za-z0-9_-]{43}=$/.test(text)) return undefined
  const bytes = Buffer.from(text, 'base64url')
  return bytes.length === 32 && bytes.toString('base64url') === text.slice(0, 43) ? bytes : undefined
}

/**
 * Makes a Fernet token (the format of Python's `cryptography.fernet`): version 0x80, the time in seconds, a random
 * IV, AES-128-CBC with PKCS#7 padding under the key's second half, HMAC-SHA256 under its first half; URL-safe
 * base64 with padding. `now` and `iv` are for tests and conformance vectors.
 *
 * @example
 * ```ts
 * const token = fernetEncrypt(fernetKey(process.env.FERNET_KEY!)!, Buffer.from('secret'))
 * ```
 */
export function fernetEncrypt(key: Buffer, plaintext: Buffer, options: { now?: Date; iv?: Buffer } = {}): string {
  const { signing, encryption } = splitKey(key)
  const iv = options.iv ?? freshRandom(16)
  if (!Buffer.isBuffer(iv) || iv.length !== 16) throw invalidOption('iv', 'must be 16 bytes')
  const seconds = Math.floor((options.now ?? new Date()).getTime() / 1000)
  if (!Number.isSafeInteger(seconds) || seconds < 0) throw invalidOption('now', 'must be a valid date after 1970')
  const header = Buffer.alloc(HEADER)
  header[0] = VERSION
  header.writeBigUInt64BE(BigInt(seconds), 1)
  iv.copy(header, 9)
  const cipher = createCipheriv('aes-128-cbc', encryption, iv)
  const body = Buffer.concat([header, cipher.update(plaintext), cipher.final()])
  const mac = createHmac('sha256', signing).update(body).digest()
  return Buffer.concat([body, mac])
    .toString('base64url')
    .padEnd(Math.ceil((body.length + HMAC_BYTES) / 3) * 4, '=')
}

/**
 * The time a Fernet token says it was made, or undefined when it is not shaped like one. Not authenticated: use it
 * only after {@link fernetDecrypt} succeeded.
 *
 * @internal
 */
export function fernetTimestamp(token: string): Date | undefined {
  if (typeof token !== 'string' || !TOKEN.test(token)) return undefined
  const bytes = Buffer.from(token, 'base64url')
  if (bytes.length < HEADER || bytes[0] !== VERSION) return undefined
  return new Date(Number(bytes.readBigUInt64BE(1)) * 1000)
}

/**
 * Whether a text is shaped like a Fernet token (version byte 0x80, URL-safe base64): not whether it is valid.
 *
 * @example
 * ```ts
 * const legacy = isFernetToken(row.ssh_key_enc) // a value the Python backend wrote
 * ```
 */
export function isFernetToken(text: string): boolean {
  return typeof text === 'string' && text.startsWith('gAAAAA') && TOKEN.test(text)
}

/**
 * Reads a Fernet token with the first of `keys` that authenticates it, as Python's `Fernet` / `MultiFernet` do:
 * with `ttlSeconds`, a token older than that, or stamped more than 60 s in the future, is refused. Every failure is
 * a {@link DecryptionError} ("Decryption failed").
 *
 * @example
 * ```ts
 * const plaintext = fernetDecrypt([fernetKey(process.env.FERNET_KEY!)!], token, { ttlSeconds: 3600 })
 * ```
 */
export function fernetDecrypt(
  keys: readonly Buffer[],
  token: string,
  options: { ttlSeconds?: number; now?: Date } = {},
): Buffer {
  if (typeof token !== 'string' || !TOKEN.test(token) || token.length % 4 !== 0) throw new DecryptionError()
  const bytes = Buffer.from(token, 'base64url')
  const bodyLength = bytes.length - HEADER - HMAC_BYTES
  if (bytes[0] !== VERSION || bodyLength < 16 || bodyLength % 16 !== 0) throw new DecryptionError()
  if (bytes.toString('base64url') !== token.replace(/=+$/, '')) throw new DecryptionError()
  if (options.ttlSeconds !== undefined) {
    if (!Number.isSafeInteger(options.ttlSeconds) || options.ttlSeconds < 0) {
      throw invalidOption('ttlSeconds', 'must be a whole number of seconds')
    }
    const stamped = Number(bytes.readBigUInt64BE(1))
    const now = Math.floor((options.now ?? new Date()).getTime() / 1000)
    if (!Number.isSafeInteger(now)) throw invalidOption('now', 'must be a valid date')
    if (stamped + options.ttlSeconds < now || now + MAX_CLOCK_SKEW_SECONDS < stamped) throw new DecryptionError()
  }
  const signed = bytes.subarray(0, bytes.length - HMAC_BYTES)
  const mac = bytes.subarray(bytes.length - HMAC_BYTES)
  for (const key of keys) {
    const { signing, encryption } = splitKey(key)
    if (!timingSafeEqual(createHmac('sha256', signing).update(signed).digest(), mac)) continue
    try {
      const decipher = createDecipheriv('aes-128-cbc', encryption, bytes.subarray(9, HEADER))
      return Buffer.concat([decipher.update(bytes.subarray(HEADER, bytes.length - HMAC_BYTES)), decipher.final()])
    } catch {
      throw new DecryptionError()
    }
  }
  throw new DecryptionError()
}
