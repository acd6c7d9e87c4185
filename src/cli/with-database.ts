import { createDatabase, type Database } from '../db/create-database.js'
import { isDataError, type DataError } from '../errors/index.js'
import { UsageError } from './command.js'

/** `scheme://userinfo@`: the user information of a URL, a host list's included (which `new URL` cannot read). */
const USERINFO = /^postgres(?:ql)?:\/\/([^@/?#]*)@/i

/** Any password in a `postgres://user:password@` URL inside a text. */
const URL_PASSWORD = /(postgres(?:ql)?:\/\/[^:@/\s]*:)[^@\s]*@/gi

/** The password of `url` as written and decoded; none when it has none. */
function passwordsOf(url: string): string[] {
  const userinfo = USERINFO.exec(url)?.[1]
  const colon = userinfo?.indexOf(':') ?? -1
  if (userinfo === undefined || colon < 0) return []
  const raw = userinfo.slice(colon + 1)
  let decoded = raw
  try {
    decoded = decodeURIComponent(raw)
  } catch {
    // not percent-encoded properly: the raw form is all there is
  }
  return [raw, decoded].filter((secret) => secret !== '')
}

/**
 * `text` with the password of `url` (as written and decoded) and any password of a URL in it blanked out.
 *
 * @example
 * ```ts
 * redactPassword('failed for postgres://app:s3cret@db/x', 'postgres://app:s3cret@db/x') // 'failed for postgres://app:***@db/x'
 * ```
 *
 * @internal
 */
export function redactPassword(text: string, url: string): string {
  let safe = text.replace(URL_PASSWORD, '$1***@')
  for (const secret of passwordsOf(url)) safe = safe.split(secret).join('***')
  return safe
}

/** The cause's code (or its class, for an error without one) and message, for the line below the error. */
function causeLine(cause: unknown): string | undefined {
  if (cause === undefined || cause === null) return undefined
  if (typeof cause !== 'object') return `cause: ${typeof cause === 'string' ? cause : typeof cause}`
  const { code, name, message } = cause as { code?: unknown; name?: unknown; message?: unknown }
  const label =
    typeof code === 'string' && code !== ''
      ? code
      : typeof name === 'string' && name !== '' && name.toLowerCase() !== 'error'
        ? name
        : undefined
  const text = typeof message === 'string' && message !== '' ? message : '(no message)'
  return label === undefined ? `cause: ${text}` : `cause (${label}): ${text}`
}

/**
 * The database could not be opened (`createDatabase` failed): `error` is the library's error. The command line
 * prints it as its message and, indented below it, the code and message of its cause (the driver's error), never
 * the URL's password; the command exits with the usual failure code.
 *
 * @example
 * ```ts
 * try {
 *   await withDatabase(url, (db) => db.migrate.status())
 * } catch (error) {
 *   if (error instanceof OpenDatabaseError) console.error(String(error))
 *   // ConfigError: Invalid configuration: connection was refused by PostgreSQL at 127.0.0.1:5432/wincloud: …
 *   //   cause (28P01): password authentication failed for user "app"
 * }
 * ```
 *
 * @internal
 */
export class OpenDatabaseError extends Error {
  override readonly name = 'OpenDatabaseError'
  /** The lines printed: the error, then its cause. */
  readonly lines: readonly string[]

  constructor(
    readonly error: DataError,
    url: string,
  ) {
    const cause = causeLine(error.cause)
    const lines = [`${error.name}: ${error.message}`, ...(cause === undefined ? [] : [`  ${cause}`])]
    const safe = lines.map((line) => redactPassword(line, url))
    super(safe[0], { cause: error })
    this.lines = safe
  }

  /** What the command line prints after `wincloud-data: `. */
  override toString(): string {
    return this.lines.join('\n')
  }
}

/**
 * Opens the database at `url` for `work`, and closes it after. The encryption configuration is read from
 * `env.WINCLOUD_ENCRYPTION` (the commands that need no keys pass no `env`); `connectTimeoutMs` bounds the wait
 * for the first connection. A database that cannot be opened (unreachable, credentials refused, no such database,
 * a bad URL) rejects with an {@link OpenDatabaseError}.
 *
 * @example
 * ```ts
 * const applied = await withDatabase(process.env.DATABASE_URL, (db) => db.migrate.latest())
 * ```
 *
 * @internal
 */
export async function withDatabase<T>(
  url: string | undefined,
  work: (db: Database) => Promise<T>,
  env: NodeJS.ProcessEnv = {},
  connectTimeoutMs?: number,
): Promise<T> {
  if (!url) throw new UsageError('no database: set DATABASE_URL or pass --url')
  let encryption: unknown
  if (env.WINCLOUD_ENCRYPTION) {
    try {
      encryption = JSON.parse(env.WINCLOUD_ENCRYPTION) as unknown
    } catch {
      throw new UsageError('WINCLOUD_ENCRYPTION must be the JSON of the encryption configuration')
    }
  }
  let db: Database
  try {
    db = await createDatabase({
      connection: url,
      ...(encryption === undefined ? {} : { encryption: encryption as never }),
      // The first connection waits at most this long (health answers within its own timeout).
      ...(connectTimeoutMs === undefined ? {} : { pool: { acquireTimeoutMs: connectTimeoutMs } }),
    })
  } catch (error) {
    if (isDataError(error)) throw new OpenDatabaseError(error, url)
    throw error
  }
  try {
    return await work(db)
  } finally {
    await db.close()
  }
}
