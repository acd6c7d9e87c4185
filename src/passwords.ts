/**
 * `@wincloud/data/passwords`: the password hashing that `db.auth.login()` uses, for a host's own flows (sign-up,
 * password change, its own login). scrypt in PHC strings; bcrypt hashes of the Python backend verify and report that
 * they need a rehash.
 *
 * @example
 * ```ts
 * import { hashPassword, passwordNeedsRehash, verifyPassword } from '@wincloud/data/passwords'
 *
 * const hash = await hashPassword('correct horse battery staple')
 * const ok = await verifyPassword('correct horse battery staple', hash) // true
 * const stale = passwordNeedsRehash(hash) // false under the default settings
 * ```
 *
 * @packageDocumentation
 */
export { hashPassword, verifyPassword, passwordNeedsRehash } from './auth/passwords.js'
export type { PasswordHashOptions } from './auth/passwords.js'
