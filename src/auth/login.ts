import { isStorableText } from '../internal/text.js'
import type { Knex } from 'knex'
import { toDataError } from '../errors/driver-errors.js'
import { AuthenticationError } from '../errors/index.js'
import type { User } from '../models/user.js'
import type { RequestMeta } from '../access/scope.js'
import { hashPassword, passwordNeedsRehash, verifyPassword, type PasswordHashOptions } from './passwords.js'

/**
 * One login attempt, as `db.auth.onLoginAttempt` listeners receive it. It never carries the password. `reason`
 * is for the audit trail only; callers of `login()` get one undifferentiated `AuthenticationError`.
 *
 * @example
 * ```ts
 * db.auth.onLoginAttempt((attempt: LoginAttempt) => metrics.increment(attempt.success ? 'login.ok' : 'login.failed'))
 * ```
 */
export interface LoginAttempt {
  /** The login name as typed (email or username). */
  readonly login: string
  /** The matched user, when one matched. */
  readonly userId: string | undefined
  /** The matched user's role, when one matched. */
  readonly role: string | undefined
  readonly success: boolean
  readonly reason: 'ok' | 'unknown-user' | 'wrong-password' | 'inactive'
  readonly meta: RequestMeta
  /** The transaction the attempt ran in, so a listener can write in it. */
  readonly transaction: Knex.Transaction
}

/**
 * A listener of login attempts; it runs inside the login's transaction, and a throw fails the login.
 *
 * @example
 * ```ts
 * const listener: LoginListener = async (attempt) => console.log(attempt.login, attempt.success)
 * ```
 */
export type LoginListener = (attempt: LoginAttempt) => void | Promise<void>

/**
 * `db.auth`: logging users in.
 *
 * @example
 * ```ts
 * const user = await db.auth.login(req.body.login, req.body.password, { ip: req.ip })
 * const scope = db.scope(user, { ip: req.ip })
 * ```
 */
export interface DatabaseAuth {
  /**
   * Finds the user by email or username (case-insensitive) and checks the password. Inactive users, unknown
   * users, wrong passwords and malformed input (a login name that is not a string, is empty, is longer than 320
   * characters or holds a NUL or a lone surrogate; a password that is not a string) all fail with the same
   * {@link AuthenticationError}, and an unknown user takes as long as a wrong password. A legacy bcrypt hash, or a
   * scrypt hash with old settings, is replaced by a fresh scrypt hash on success; a bcrypt hash stays when the
   * password that verified has 72 UTF-8 bytes or more, because bcrypt checked only its first 72.
   */
  login(login: string, password: string, meta?: RequestMeta): Promise<User>
  /** Adds a listener of every attempt (the audit log uses this); returns a function that removes it. */
  onLoginAttempt(listener: LoginListener): () => void
}

const MAX_LOGIN_LENGTH = 320

/**
 * Whether a login name is one a user could have, so it is worth a lookup. Anything else (not a string, empty, too
 * long, a NUL that PostgreSQL text cannot hold, a lone surrogate that UTF-8 cannot encode) matches no user.
 */
function isLoginName(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_LOGIN_LENGTH && isStorableText(value)
}

/**
 * The former name of {@link DatabaseAuth}, kept for one minor version.
 *
 * @deprecated Use `DatabaseAuth`, named like `DatabaseAudit` and `DatabaseCrypto`.
 * @example
 * ```ts
 * const auth: DatabaseAuth = db.auth
 * ```
 */
export type Auth = DatabaseAuth

/** @internal */
export function createAuth(
  knex: Knex,
  BoundUser: typeof User,
  hashOptions: PasswordHashOptions | undefined,
): DatabaseAuth {
  const listeners = new Set<LoginListener>()
  let dummyHash: Promise<string> | undefined
  const dummy = (): Promise<string> => (dummyHash ??= hashPassword(`dummy-${Math.random()}`, hashOptions))

  const login = async (loginName: string, password: string, meta: RequestMeta = {}): Promise<User | undefined> => {
    // Malformed input fails here, before the lookup, with the error of a wrong password and no audit row: what
    // fails here depends on the input alone, never on which users exist.
    if (!isLoginName(loginName) || typeof password !== 'string') throw new AuthenticationError()
    try {
      return await knex.transaction(async (trx) => {
        const column = loginName.includes('@') ? 'email' : 'username'
        const user = await BoundUser.query(trx).whereRaw(`lower(${column}) = lower(?)`, [loginName]).first()
        // Verify against a dummy hash for unknown users, so both paths cost one hash computation.
        const valid = await verifyPassword(password, user?.passwordHash ?? (await dummy()))
        const reason: LoginAttempt['reason'] =
          user === undefined ? 'unknown-user' : !valid ? 'wrong-password' : !user.isActive ? 'inactive' : 'ok'
        // A legacy or outdated hash is replaced first, so listeners (the audit row, which may hold the audit
        // chain's lock until commit) run after the one slow step. A bcrypt hash that a password of 72 bytes or more
        // matched stays: bcrypt checked only the first 72, and a hash of what was typed could lock out the real one.
        if (reason === 'ok' && user !== undefined && passwordNeedsRehash(user.passwordHash, hashOptions, password)) {
          const fresh = await hashPassword(password, hashOptions)
          await BoundUser.query(trx)
            .patch({ passwordHash: fresh })
            .where('id', user.id)
            .where('password_hash', user.passwordHash)
          user.passwordHash = fresh
        }
        const attempt: LoginAttempt = {
          login: loginName,
          userId: user?.id,
          role: user?.role,
          success: reason === 'ok',
          reason,
          meta,
          transaction: trx,
        }
        for (const listener of listeners) await listener(attempt)
        if (reason !== 'ok' || user === undefined) return undefined
        return user
      })
    } catch (error) {
      throw toDataError(error)
    }
  }

  return Object.freeze({
    login: async (loginName: string, password: string, meta?: RequestMeta): Promise<User> => {
      const user = await login(loginName, password, meta)
      if (user === undefined) throw new AuthenticationError()
      return user
    },
    onLoginAttempt: (listener: LoginListener) => {
      listeners.add(listener)
      return () => {
        listeners.delete(listener)
      }
    },
  })
}
