import { isStorableText } from '../internal/text.js'
import { randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto'
import bcrypt from 'bcryptjs'
import { ValidationError } from '../errors/index.js'

/**
 * scrypt cost settings. `cost` is log2 of scrypt's N. Defaults: `cost: 15`, `blockSize: 8`, `parallelization: 1`
 * (about 64 ms and 32 MiB per hash on a current server core).
 *
 * @example
 * ```ts
 * const hash = await hashPassword(password, { cost: 16 })
 * ```
 */
export interface PasswordHashOptions {
  /** log2(N), from 10 to 20. */
  cost?: number
  /** scrypt's r, from 1 to 32. */
  blockSize?: number
  /** scrypt's p, from 1 to 16. */
  parallelization?: number
}

const SALT_BYTES = 16
const KEY_BYTES = 32
const MAX_PASSWORD_LENGTH = 1024

function scrypt(password: string, salt: Buffer, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCallback(password, salt, KEY_BYTES, options, (error, key) => {
      if (error) reject(error)
      else resolve(key)
    })
  })
}

function resolveOptions(options: PasswordHashOptions = {}): { ln: number; r: number; p: number } {
  const check = (value: number | undefined, field: string, min: number, max: number, fallback: number): number => {
    if (value === undefined) return fallback
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new ValidationError(`${field} must be an integer from ${min} to ${max}.`, [
        { field, message: `must be an integer from ${min} to ${max}`, keyword: 'range' },
      ])
    }
    return value
  }
  return {
    ln: check(options.cost, 'cost', 10, 20, 15),
    r: check(options.blockSize, 'blockSize', 1, 32, 8),
    p: check(options.parallelization, 'parallelization', 1, 16, 1),
  }
}

function checkPassword(password: unknown): asserts password is string {
  if (typeof password !== 'string' || password.length === 0 || password.length > MAX_PASSWORD_LENGTH) {
    throw new ValidationError(`password must be a string of 1 to ${MAX_PASSWORD_LENGTH} characters.`, [
      { field: 'password', message: `must be a string of 1 to ${MAX_PASSWORD_LENGTH} characters`, keyword: 'length' },
    ])
  }
  // A NUL (HMAC pads short keys with zero bytes, so scrypt takes "pw\0" for "pw"; bcrypt repeats its key, so
  // "pw\0pw" is "pw") or a lone surrogate (UTF-8 makes it U+FFFD) would let other passwords share a hash.
  if (!isStorableText(password)) {
    throw new ValidationError('password must not contain a NUL character or a lone surrogate.', [
      { field: 'password', message: 'must not contain a NUL character or a lone surrogate', keyword: 'format' },
    ])
  }
}

const scryptOptions = ({ ln, r, p }: { ln: number; r: number; p: number }): ScryptOptions => ({
  N: 2 ** ln,
  r,
  p,
  maxmem: 256 * 2 ** ln * r * p + 1024 * 1024,
})

const b64 = (bytes: Buffer): string => bytes.toString('base64').replace(/=+$/, '')

/**
 * Hashes a password with scrypt and a fresh 16-byte salt, as a PHC string:
 * `$scrypt$ln=15,r=8,p=1$<salt>$<hash>` (standard base64 without padding), the format Python's passlib reads and
 * writes. The password is hashed as UTF-8, unnormalised, as passlib does, so both backends verify each other's hashes.
 * A password of 1 to 1024 characters with no NUL and no lone surrogate; anything else is a `ValidationError`.
 *
 * @example
 * ```ts
 * import { hashPassword } from '@wincloud/data/passwords'
 *
 * const passwordHash = await hashPassword('correct horse battery staple')
 * await db.model(User).query().insert({ email, username, passwordHash })
 * ```
 */
export async function hashPassword(password: string, options?: PasswordHashOptions): Promise<string> {
  checkPassword(password)
  const params = resolveOptions(options)
  const salt = randomBytes(SALT_BYTES)
  const key = await scrypt(password, salt, scryptOptions(params))
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${b64(salt)}$${b64(key)}`
}

const PHC_SCRYPT = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/

const BCRYPT = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/

/** bcrypt keys its cipher with the first 72 bytes of the password (and a NUL terminator, when it fits). */
const BCRYPT_KEY_BYTES = 72

/**
 * Whether a password that a bcrypt hash accepted is necessarily the password that was hashed: shorter than 72 UTF-8
 * bytes and free of NUL. bcrypt uses only the first 72 bytes, so a 72-byte (or longer) input is also accepted for
 * every longer password that starts with it; and bcrypt repeats its key (the password and a NUL) to fill 72 bytes,
 * so `"pw\0pw"` is the same key as `"pw"`. A new hash of such an input could lock the real password out.
 */
const bcryptAcceptsOnlyItself = (password: string): boolean =>
  !password.includes('\0') && Buffer.byteLength(password, 'utf8') < BCRYPT_KEY_BYTES

/**
 * Tells whether a stored hash is a legacy bcrypt hash (`$2a$`, `$2b$`, `$2y$`, as Python's passlib and bcrypt
 * write them).
 *
 * @internal
 */
export const isBcryptHash = (hash: string): boolean => BCRYPT.test(hash)

/**
 * Checks a password against a hash made by {@link hashPassword}, or against a legacy bcrypt hash (`$2a$`, `$2b$`,
 * `$2y$`, as the Python backend's passlib wrote them; the password is compared as UTF-8, unnormalised, as passlib
 * hashed it). Constant time for a given hash. A malformed or unknown hash is `false`, never an exception with the
 * hash in it.
 *
 * bcrypt's own limit holds for bcrypt hashes: only the first 72 UTF-8 bytes of the password count. A password with a
 * NUL or a lone surrogate is `false` for every hash ({@link hashPassword} refuses them, and passlib's bcrypt refuses
 * a NUL), after the same work as any other password.
 *
 * @example
 * ```ts
 * import { verifyPassword } from '@wincloud/data/passwords'
 *
 * if (!(await verifyPassword(input, user.passwordHash))) throw new AuthenticationError()
 * ```
 */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  if (typeof password !== 'string' || password.length === 0 || password.length > MAX_PASSWORD_LENGTH) return false
  if (typeof hash === 'string' && BCRYPT.test(hash)) {
    let valid: boolean
    try {
      valid = await bcrypt.compare(password, hash)
    } catch {
      return false
    }
    // Checked after the comparison, so a malformed password costs the same time as any wrong one.
    return valid && isStorableText(password)
  }
  const match = typeof hash === 'string' ? PHC_SCRYPT.exec(hash) : null
  if (!match) return false
  const [, ln, r, p, salt, expected] = match as unknown as [string, string, string, string, string, string]
  let params: { ln: number; r: number; p: number }
  try {
    params = resolveOptions({ cost: Number(ln), blockSize: Number(r), parallelization: Number(p) })
  } catch {
    return false
  }
  const expectedKey = Buffer.from(expected, 'base64')
  if (expectedKey.length !== KEY_BYTES) return false
  const key = await scrypt(password, Buffer.from(salt, 'base64'), scryptOptions(params))
  return timingSafeEqual(key, expectedKey) && isStorableText(password)
}

/**
 * Tells whether a stored hash was made with other settings than `options` (or by another algorithm, such as
 * legacy bcrypt), so it should be replaced by a fresh {@link hashPassword} after the next successful login.
 *
 * Pass the password that has just verified as `verifiedPassword`: a bcrypt hash is then kept (`false`) when that
 * password has 72 UTF-8 bytes or more (or a NUL). bcrypt checked only its first 72 bytes, so it may be a prefix of
 * the real password plus anything, and a new hash of it would lock the real password out.
 *
 * @example
 * ```ts
 * if (passwordNeedsRehash(user.passwordHash, undefined, input)) {
 *   await user.$query().patch({ passwordHash: await hashPassword(input) })
 * }
 * ```
 */
export function passwordNeedsRehash(hash: string, options?: PasswordHashOptions, verifiedPassword?: string): boolean {
  const match = PHC_SCRYPT.exec(hash)
  if (!match) {
    if (verifiedPassword !== undefined && BCRYPT.test(hash)) {
      return typeof verifiedPassword === 'string' && bcryptAcceptsOnlyItself(verifiedPassword)
    }
    return true
  }
  const { ln, r, p } = resolveOptions(options)
  return Number(match[1]) !== ln || Number(match[2]) !== r || Number(match[3]) !== p
}
