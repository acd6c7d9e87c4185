import type { PasswordHashOptions } from '../../auth/passwords.js'
import { ConfigError } from '../../errors/index.js'
import { checkKeys, integer, isPlainObject, section } from './fields.js'

/**
 * `auth.passwordHash`: the scrypt parameters of new and upgraded hashes, or undefined for the defaults.
 *
 * @internal
 */
export function parsePasswordHash(value: unknown): PasswordHashOptions | undefined {
  const auth = section(value, 'auth', ['passwordHash'])
  if (auth.passwordHash === undefined) return undefined
  const hash = auth.passwordHash
  if (!isPlainObject(hash)) throw new ConfigError('auth.passwordHash', 'must be an object.')
  checkKeys(hash, ['cost', 'blockSize', 'parallelization'], 'auth.passwordHash.')
  return Object.freeze({
    cost: integer(hash.cost, 'auth.passwordHash.cost', 10, 20, 15),
    blockSize: integer(hash.blockSize, 'auth.passwordHash.blockSize', 1, 32, 8),
    parallelization: integer(hash.parallelization, 'auth.passwordHash.parallelization', 1, 16, 1),
  })
}
