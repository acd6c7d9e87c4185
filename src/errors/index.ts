/**
 * Every error the library throws on purpose is a {@link DataError}: a string `code` callers can switch on, an
 * `httpStatus` a host can answer with, and the original `cause` kept (non-enumerable, so it stays out of JSON).
 *
 * Errors are branded with `Symbol.for('@wincloud/data:error')`, so {@link isDataError} and `instanceof` work even
 * when two copies of the package (for example its ESM and CJS builds) are loaded in one process.
 *
 * No message, detail or `toJSON()` output ever contains a password, a key or a plaintext secret.
 *
 * @module
 */

const BRAND: unique symbol = Symbol.for('@wincloud/data:error') as never
const KINDS: unique symbol = Symbol.for('@wincloud/data:error-kinds') as never

/**
 * The codes of every {@link DataError}.
 *
 * @example
 * ```ts
 * import { isDataError, type DataErrorCode } from '@wincloud/data'
 *
 * function retryable(code: DataErrorCode): boolean {
 *   return code === 'UNAVAILABLE'
 * }
 * ```
 */
export type DataErrorCode =
  | 'DATA_ERROR'
  | 'VALIDATION_FAILED'
  | 'AUTHENTICATION_FAILED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'INVALID_CURSOR'
  | 'DECRYPTION_FAILED'
  | 'UNAVAILABLE'
  | 'CONFIG_INVALID'

/**
 * One problem with one field, as listed by {@link ValidationError.details}.
 *
 * @example
 * ```ts
 * const detail: ValidationDetail = { field: 'name', message: 'must NOT have fewer than 1 characters', keyword: 'minLength' }
 * ```
 */
export interface ValidationDetail {
  /** The field (model property, config path or filter path) the problem is about. */
  readonly field: string
  /** What is wrong with it, in words. Never contains the offending value. */
  readonly message: string
  /** A machine-readable reason, e.g. the JSON-schema keyword (`minLength`, `pattern`, `not-null`). */
  readonly keyword?: string
}

/**
 * The JSON shape of a {@link DataError}, as `toJSON()` returns it and as an HTTP body would carry it.
 *
 * @example
 * ```ts
 * const body: DataErrorJson = new NotFoundError('Droplet').toJSON()
 * ```
 */
export interface DataErrorJson {
  readonly name: string
  readonly code: DataErrorCode
  readonly message: string
  readonly httpStatus: number
  readonly details?: readonly ValidationDetail[]
}

/**
 * Tells whether a value is an error thrown by this library, from any loaded copy of it.
 *
 * @example
 * ```ts
 * try {
 *   await db.model(Droplet).query().insert({ name: '' })
 * } catch (error) {
 *   if (isDataError(error)) res.status(error.httpStatus).json(error)
 *   else throw error
 * }
 * ```
 */
export function isDataError(value: unknown): value is DataError {
  return typeof value === 'object' && value !== null && (value as { [BRAND]?: unknown })[BRAND] === true
}

function hasKind(value: unknown, kind: string): boolean {
  if (!isDataError(value)) return false
  const kinds = (value as unknown as { [KINDS]?: unknown })[KINDS]
  return Array.isArray(kinds) && kinds.includes(kind)
}

/**
 * The base class of every error this library throws on purpose.
 *
 * `instanceof DataError` (and of each subclass) also recognises errors made by another copy of the package.
 *
 * @example
 * ```ts
 * import { DataError } from '@wincloud/data'
 *
 * app.use((error, req, res, next) => {
 *   if (error instanceof DataError) return res.status(error.httpStatus).json(error)
 *   next(error)
 * })
 * ```
 */
export class DataError extends Error {
  /** Recognises errors of this class from any copy of the package. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasKind(value, this.name)
  }

  declare readonly [BRAND]: true
  declare readonly [KINDS]: readonly string[]
  override readonly name: string = 'DataError'
  /** A stable, machine-readable code. */
  readonly code: DataErrorCode
  /** The HTTP status a host should answer with. */
  readonly httpStatus: number

  constructor(code: DataErrorCode, message: string, httpStatus = 500, options?: ErrorOptions) {
    super(message, options)
    this.code = code
    this.httpStatus = httpStatus
    const kinds: string[] = []
    for (let c: unknown = new.target; typeof c === 'function' && c !== Error; c = Object.getPrototypeOf(c)) {
      kinds.push((c as { name: string }).name)
    }
    Object.defineProperty(this, BRAND, { value: true, enumerable: false })
    Object.defineProperty(this, KINDS, { value: Object.freeze(kinds), enumerable: false })
    // `name` is an own field; keep it out of JSON.stringify's enumeration of own keys except via toJSON.
  }

  /** The safe, serialisable form: name, code, message, httpStatus (and details where there are some). */
  toJSON(): DataErrorJson {
    return { name: this.name, code: this.code, message: this.message, httpStatus: this.httpStatus }
  }
}

/**
 * Input that breaks a rule: a model's JSON schema, a NOT NULL or CHECK constraint, a bad filter or page size.
 * `details` lists each field and why, without the offending values.
 *
 * @example
 * ```ts
 * try {
 *   await db.model(Droplet).query().insert({ userId, name: '', region: 'NYC 3', size: 's-1' })
 * } catch (error) {
 *   if (error instanceof ValidationError) console.log(error.details.map((d) => d.field)) // ['name', 'region']
 * }
 * ```
 */
export class ValidationError extends DataError {
  override readonly name: string = 'ValidationError'
  /** One entry per field and problem. */
  readonly details: readonly ValidationDetail[]
  /** The database constraint that refused the row, when the database did. */
  readonly constraint: string | undefined

  constructor(
    message: string,
    details: readonly ValidationDetail[] = [],
    options?: ErrorOptions & { constraint?: string | undefined },
  ) {
    super('VALIDATION_FAILED', message, 400, options)
    this.details = Object.freeze([...details])
    this.constraint = options?.constraint
  }

  override toJSON(): DataErrorJson {
    return { ...super.toJSON(), details: this.details }
  }
}

/**
 * A login that failed. It never says whether the user, the password or the account state was wrong.
 *
 * @example
 * ```ts
 * if (error instanceof AuthenticationError) res.status(401).json({ message: error.message })
 * ```
 */
export class AuthenticationError extends DataError {
  override readonly name: string = 'AuthenticationError'
  constructor(message = 'Invalid credentials', options?: ErrorOptions) {
    super('AUTHENTICATION_FAILED', message, 401, options)
  }
}

/**
 * An action the actor's role may not perform at all (rows outside a scope are {@link NotFoundError}s instead, so
 * existence does not leak).
 *
 * @example
 * ```ts
 * throw new ForbiddenError('delete', 'AuditLog')
 * ```
 */
export class ForbiddenError extends DataError {
  override readonly name: string = 'ForbiddenError'
  constructor(
    readonly action: string,
    readonly resource: string,
    options?: ErrorOptions,
  ) {
    super('FORBIDDEN', `Not allowed: ${action} (${resource}).`, 403, options)
  }
}

/**
 * A row that does not exist, or that the actor may not see.
 *
 * @example
 * ```ts
 * const droplet = await db.model(Droplet).query().findById(id)
 * if (!droplet) throw new NotFoundError('Droplet', id)
 * ```
 */
export class NotFoundError extends DataError {
  override readonly name: string = 'NotFoundError'
  declare readonly id: string | undefined
  constructor(
    readonly resource: string,
    id?: string,
    options?: ErrorOptions,
  ) {
    super('NOT_FOUND', `${resource} not found.`, 404, options)
    Object.defineProperty(this, 'id', { value: id, enumerable: false })
  }
}

/**
 * The kind of database constraint behind a {@link ConflictError}.
 *
 * @example
 * ```ts
 * const kind: ConstraintKind = 'unique'
 * ```
 */
export type ConstraintKind = 'unique' | 'foreign-key'

/**
 * A write that conflicts with existing rows: a unique violation (duplicate email), or a foreign key (a droplet for
 * a user that does not exist, or deleting a user who still owns droplets). Names the constraint and columns,
 * never the values.
 *
 * @example
 * ```ts
 * try {
 *   await db.model(User).query().insert({ email: 'taken@example.com', username: 'x', passwordHash })
 * } catch (error) {
 *   if (error instanceof ConflictError) console.log(error.constraint, error.columns) // users_email_unique ['email']
 * }
 * ```
 */
export class ConflictError extends DataError {
  override readonly name: string = 'ConflictError'
  constructor(
    message: string,
    readonly kind: ConstraintKind,
    readonly table: string | undefined,
    readonly columns: readonly string[],
    readonly constraint: string | undefined,
    options?: ErrorOptions,
  ) {
    super('CONFLICT', message, 409, options)
  }
}

/**
 * A pagination cursor that is malformed, tampered with, or used with another sort, filter or actor.
 *
 * @example
 * ```ts
 * throw new InvalidCursorError()
 * ```
 */
export class InvalidCursorError extends DataError {
  override readonly name: string = 'InvalidCursorError'
  constructor(message = 'Invalid cursor.', options?: ErrorOptions) {
    super('INVALID_CURSOR', message, 400, options)
  }
}

/**
 * A value that could not be decrypted. The message is always "Decryption failed": never why.
 *
 * @example
 * ```ts
 * throw new DecryptionError()
 * ```
 */
export class DecryptionError extends DataError {
  override readonly name: string = 'DecryptionError'
  constructor() {
    super('DECRYPTION_FAILED', 'Decryption failed', 500)
  }
}

/**
 * The database cannot be reached or cannot serve the call now: pool acquire timeout, connection refused, the
 * server shutting down or terminating the connection, no writable host during a failover. Safe to retry later,
 * except a write with `commitUnknown: true`, whose outcome must be checked first.
 *
 * @example
 * ```ts
 * if (error instanceof UnavailableError && !error.commitUnknown) res.set('Retry-After', '1').status(503).end()
 * ```
 */
export class UnavailableError extends DataError {
  override readonly name: string = 'UnavailableError'
  /**
   * True when the connection was lost while a write was being committed (an autocommit write in flight, or the
   * COMMIT of a transaction): the write may or may not have been applied, so it must not be retried blindly. Read it
   * back (by a key the write set) before writing again. False when nothing was committed or the call was a read.
   */
  readonly commitUnknown: boolean
  constructor(message: string, options?: ErrorOptions & { commitUnknown?: boolean }) {
    super('UNAVAILABLE', message, 503, options)
    this.commitUnknown = options?.commitUnknown === true
  }
}

/**
 * A configuration field that is missing or wrong. `field` names it (`pool.max`), and the message says what is
 * expected. Thrown by {@link createDatabase} before anything connects.
 *
 * @example
 * ```ts
 * try {
 *   await createDatabase({ connection: process.env.DATABASE_URL, pool: { max: 0 } })
 * } catch (error) {
 *   if (error instanceof ConfigError) console.error(error.field, error.message)
 * }
 * ```
 */
export class ConfigError extends DataError {
  override readonly name: string = 'ConfigError'
  constructor(
    readonly field: string,
    expected: string,
    options?: ErrorOptions,
  ) {
    super('CONFIG_INVALID', `Invalid configuration: ${field} ${expected}`, 500, options)
  }
}
