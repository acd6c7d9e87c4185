import {
  ConfigError,
  ConflictError,
  ForbiddenError,
  isDataError,
  UnavailableError,
  ValidationError,
  type DataError,
} from './index.js'

/**
 * The field each CHECK constraint of the library's schema is about (PostgreSQL's error does not say): the
 * constraints migration `0001_initial` creates.
 */
const CHECK_CONSTRAINT_FIELDS: Readonly<Record<string, string>> = {
  users_role_format_check: 'role',
  droplets_name_length_check: 'name',
  droplets_region_format_check: 'region',
  droplets_size_format_check: 'size',
  droplets_status_check: 'status',
}

interface PgErrorFields {
  code?: unknown
  table?: unknown
  column?: unknown
  constraint?: unknown
  detail?: unknown
  name?: unknown
  message?: unknown
  nativeError?: unknown
  errno?: unknown
}

/** SQLSTATE classes and codes that mean "the server cannot serve this now", not "this call was wrong". */
const UNAVAILABLE_CODES = new Set(['57P01', '57P02', '57P03', '53300', '08000', '08001', '08003', '08004', '08006'])
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EPIPE',
  'EAI_AGAIN',
])

const CONNECTION_LOST = [
  'Connection terminated unexpectedly',
  'Connection terminated',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
  // pg's client-side deadline (`query_timeout`): the reply never came, and the connection's state is unknown.
  'Query read timeout',
]

/**
 * Whether an error means the connection it happened on is gone: the server ended the session (admin shutdown,
 * crash, a connection-class SQLSTATE), the network failed, or pg says the connection terminated. Such a connection
 * must never serve another query.
 *
 * @internal
 */
export function isConnectionLost(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false
  const outer = error as PgErrorFields
  const native = (
    typeof outer.nativeError === 'object' && outer.nativeError !== null ? outer.nativeError : outer
  ) as PgErrorFields
  const code = typeof native.code === 'string' ? native.code : undefined
  if (code !== undefined && (CONNECTION_CODES.has(code) || /^08(?!P01)/.test(code) || NETWORK_CODES.has(code))) {
    return true
  }
  const message = typeof outer.message === 'string' ? outer.message : ''
  // knex puts the SQL in front of driver messages: "select … - Connection terminated unexpectedly".
  return CONNECTION_LOST.some((lost) => message === lost || message.endsWith(` - ${lost}`))
}

/** Set on a driver error whose connection was lost while a write may have been committing. */
const COMMIT_UNKNOWN: unique symbol = Symbol('commitUnknown') as never
/** Set on a driver error whose connection was lost as the statement was sent (see {@link LOST_ON_ARRIVAL_MS}). */
const LOST_ON_ARRIVAL: unique symbol = Symbol('lostOnArrival') as never

/**
 * A statement whose connection is reported lost within this many milliseconds of being sent met a connection that
 * was already dying (killed while idle, a restart): the pool cannot tell it from one killed as the statement began,
 * and a read is safe to run once more. One that had been running longer (say, a runaway query an administrator
 * terminated) is not run again.
 *
 * @internal
 */
export const LOST_ON_ARRIVAL_MS = 250

/**
 * Records on a lost-connection error what the loss means: whether a commit may have been under way when the
 * connection went (the statement was an autocommit write: outside a transaction, not a read, not the BEGIN of a
 * transaction; or the COMMIT of a transaction), and whether it came as the statement was sent.
 * `transactionStatus` is the connection's status before the statement was sent, as the server last reported it
 * (`'I'` idle, `'T'` in a transaction, `'E'` in a failed one); `elapsedMs` how long after sending the loss came.
 *
 * @internal
 */
export function noteLostConnection(
  error: unknown,
  sql: string,
  transactionStatus: string | null | undefined,
  elapsedMs: number,
): void {
  if (typeof error !== 'object' || error === null) return
  const statement = sql.trimStart().slice(0, 16).toLowerCase()
  const unknown =
    transactionStatus === 'T' || transactionStatus === 'E'
      ? /^(commit|end)\b/.test(statement)
      : !/^(select|begin|start|show|rollback|abort|set|reset)\b/.test(statement)
  const marks = error as { [COMMIT_UNKNOWN]?: true; [LOST_ON_ARRIVAL]?: true }
  if (unknown) marks[COMMIT_UNKNOWN] = true
  if (elapsedMs < LOST_ON_ARRIVAL_MS) marks[LOST_ON_ARRIVAL] = true
}

/** The error and the errors it wraps (knex's `nativeError`, a DataError's `cause`), outermost first. */
function layers(error: unknown): object[] {
  const found: object[] = []
  for (let e = error; typeof e === 'object' && e !== null && found.length < 4;) {
    found.push(e)
    const inner = e as { nativeError?: unknown; cause?: unknown }
    e = inner.nativeError ?? inner.cause
  }
  return found
}

/** Whether {@link noteLostConnection} found that a commit may have been under way. */
function commitUnknown(error: object): boolean {
  return layers(error).some((e) => (e as { [COMMIT_UNKNOWN]?: true })[COMMIT_UNKNOWN] === true)
}

/**
 * Whether a statement failed because its connection was lost as it was sent (see {@link LOST_ON_ARRIVAL_MS}): a read
 * that fails so may run once more on another connection.
 *
 * @internal
 */
export function lostOnArrival(error: unknown): boolean {
  return layers(error).some((e) => (e as { [LOST_ON_ARRIVAL]?: true })[LOST_ON_ARRIVAL] === true && isConnectionLost(e))
}

/** SQLSTATEs that end the session: admin_shutdown, crash_shutdown, cannot_connect_now, idle_session_timeout. */
const CONNECTION_CODES = new Set(['57P01', '57P02', '57P03', '57P05'])

/** Columns named in a key detail: `Key (user_id)=(…) is not present…` → `['user_id']`. The values are dropped. */
function keyColumns(detail: unknown): string[] {
  if (typeof detail !== 'string') return []
  const match = /^Key \((.+?)\)=/.exec(detail)
  if (!match?.[1]) return []
  return match[1].split(',').map((column) => column.trim().replace(/^lower\((.+?)(::text)?\)$/, '$1'))
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined
}

/**
 * The error of a unique violation, worded the same wherever it is found: a driver's 23505, or a scoped upsert that
 * met a row outside its scope (the statement that detects it raises it alike, so the two cannot be told apart).
 *
 * @internal
 */
export function uniqueConflict(
  table: string | undefined,
  columns: readonly string[],
  constraint: string | undefined,
  options?: ErrorOptions,
): ConflictError {
  return new ConflictError(
    `A row of ${table ?? 'the table'} with the same ${columns.join(', ') || 'key'} already exists (${constraint ?? 'unique constraint'}).`,
    'unique',
    table,
    columns,
    constraint,
    options,
  )
}

/**
 * Turns an error from pg, knex or objection into the library's typed error where one fits: constraint violations
 * name their constraint and columns (never the values), connection loss and pool timeouts become
 * `UnavailableError`. Anything else is returned unchanged. The original error is kept as `cause`.
 *
 * @internal
 */
// eslint-disable-next-line max-lines-per-function -- one table of driver errors, read top to bottom: split, the order of the checks (which decides the mapping) would be scattered
export function toDataError(error: unknown): unknown {
  if (isDataError(error) || typeof error !== 'object' || error === null) return error
  const outer = error as PgErrorFields
  const native = (
    typeof outer.nativeError === 'object' && outer.nativeError !== null ? outer.nativeError : outer
  ) as PgErrorFields
  const code = typeof native.code === 'string' ? native.code : undefined
  const table = text(native.table)
  const constraint = text(native.constraint)
  const options = { cause: error }
  let mapped: DataError | undefined

  switch (code) {
    case '23505':
      mapped = uniqueConflict(table, keyColumns(native.detail), constraint, options)
      break
    case '23503': {
      const columns = keyColumns(native.detail)
      const stillReferenced = typeof native.detail === 'string' && native.detail.includes('is still referenced')
      // On delete, PostgreSQL reports the referencing table; the row that cannot go is in the one the message names.
      const referenced = /on table "([^"]+)" violates/.exec(
        typeof native.message === 'string' ? native.message : '',
      )?.[1]
      const subject = stillReferenced ? (referenced ?? table) : table
      mapped = new ConflictError(
        stillReferenced
          ? `The ${subject ?? ''} row is still referenced from ${table ?? 'another table'} (${constraint ?? 'foreign key'}).`
          : `${columns.join(', ') || 'A reference'} of ${table ?? 'the row'} points to a row that does not exist (${constraint ?? 'foreign key'}).`,
        'foreign-key',
        subject,
        columns,
        constraint,
        options,
      )
      break
    }
    case '23502': {
      const column = text(native.column) ?? 'unknown'
      mapped = new ValidationError(
        `${column} of ${table ?? 'the row'} must not be null.`,
        [{ field: column, message: 'must not be null', keyword: 'not-null' }],
        { ...options, constraint },
      )
      break
    }
    case '23514': {
      const field =
        (constraint && Object.hasOwn(CHECK_CONSTRAINT_FIELDS, constraint)
          ? CHECK_CONSTRAINT_FIELDS[constraint]
          : undefined) ??
        constraint ??
        'unknown'
      mapped = new ValidationError(
        `A value of ${table ?? 'the row'} breaks the check constraint ${constraint ?? ''}.`.replace(' .', '.'),
        [{ field, message: `breaks the check constraint ${constraint ?? ''}`.trim(), keyword: 'check' }],
        { ...options, constraint },
      )
      break
    }
    case '22P02':
    case '22007':
    case '22008':
    case '22009':
    case '22003':
    case '22001':
    case '22021':
    case '22P05':
      // invalid text representation, datetime format / overflow, time zone, numeric out of range, string too long,
      // invalid byte sequence (NUL in text), untranslatable character
      mapped = new ValidationError('A value has the wrong format for its column.', [], options)
      break
    case '42501':
      // insufficient_privilege: e.g. a host table the scoped role was not granted, or RLS refusing a write.
      mapped = new ForbiddenError('access', table ?? 'a table the database refused', options)
      break
    case '28P01':
    case '28000':
      mapped = new ConfigError('connection', 'was refused by the server: authentication failed.', options)
      break
    case '3D000':
      mapped = new ConfigError('connection', 'names a database that does not exist.', options)
      break
    case '25006':
      // read_only_sql_transaction: a standby, or a primary being demoted; nothing was written.
      mapped = new UnavailableError(
        'The database server is read-only now (a standby, or a failover under way): the write was not applied.',
        options,
      )
      break
    default:
      break
  }
  if (mapped) return mapped

  const name = typeof outer.name === 'string' ? outer.name : ''
  const message = typeof outer.message === 'string' ? outer.message : ''
  if (name === 'KnexTimeoutError' || message.startsWith('Knex: Timeout acquiring a connection')) {
    return new UnavailableError(
      'Timed out waiting for a database connection: the pool is exhausted or the database is not answering.',
      options,
    )
  }
  if (message === 'Unable to acquire a connection') {
    // knex says this when its pool is gone: the database was closed.
    return new UnavailableError('The database handle is closed.', options)
  }
  if (
    (code !== undefined && (UNAVAILABLE_CODES.has(code) || NETWORK_CODES.has(code))) ||
    CONNECTION_LOST.some((lost) => message === lost || message.endsWith(` - ${lost}`))
  ) {
    if (commitUnknown(error)) {
      return new UnavailableError(
        'The database connection was lost while a write was being committed: it may or may not have been applied.',
        { ...options, commitUnknown: true },
      )
    }
    return new UnavailableError('The database connection was lost or refused.', options)
  }
  return error
}
