import { createDatabase, type Database } from '../db/create-database.js'
import { UsageError } from './command.js'

/**
 * Opens the database at `url` for `work`, and closes it after. The encryption configuration is read from
 * `env.WINCLOUD_ENCRYPTION` (the commands that need no keys pass no `env`); `connectTimeoutMs` bounds the wait
 * for the first connection.
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
  const db = await createDatabase({
    connection: url,
    ...(encryption === undefined ? {} : { encryption: encryption as never }),
    // The first connection waits at most this long (health answers within its own timeout).
    ...(connectTimeoutMs === undefined ? {} : { pool: { acquireTimeoutMs: connectTimeoutMs } }),
  })
  try {
    return await work(db)
  } finally {
    await db.close()
  }
}
