/**
 * Starts the example API: `npm start`.
 *
 * Environment:
 *
 * - `DATABASE_URL`: the PostgreSQL to use. When it is unset, an embedded PostgreSQL is started in a temporary
 *   directory and removed on exit (development only).
 * - `PORT`: the HTTP port, default 3000.
 * - `APP_TOKEN_SECRET`: signs login tokens, at least 32 characters (`openssl rand -base64 32`). Required in
 *   production; in development a random one is made per start.
 * - `CURSOR_SECRET`: base64 of 32+ bytes, signs pagination cursors and consistency tokens so they work across
 *   instances and restarts.
 * - `REPLICA_URL`: streaming replicas of `DATABASE_URL` for reads, one URL or several separated by commas. A user's
 *   reads go to a healthy replica, or to the primary until a replica has replayed their last write on this instance;
 *   on another instance, the `X-Consistency-Token` header of the write does the same (see app.ts). Needs
 *   `DATABASE_URL`.
 * - `NODE_ENV`: `production` skips seeding, and requires `DATABASE_URL` and `APP_TOKEN_SECRET`.
 */
import { randomBytes } from 'node:crypto'
import { createDatabase, isDataError, type Database, type DatabaseConfig, type Logger } from '@wincloud/data'
import { createApp } from './app.js'

const production = process.env.NODE_ENV === 'production'

function fail(message: string): never {
  process.stderr.write(`${message}\n`)
  process.exit(1)
}

const port = Number(process.env.PORT ?? 3000)
if (!Number.isInteger(port) || port < 0 || port > 65_535) fail('PORT must be a port number.')

const url = process.env.DATABASE_URL
if (url === undefined && production) fail('DATABASE_URL is required in production.')

let tokenSecret = process.env.APP_TOKEN_SECRET
if (tokenSecret === undefined || tokenSecret === '') {
  if (production) fail('APP_TOKEN_SECRET is required in production.')
  tokenSecret = randomBytes(32).toString('base64url')
  console.warn('APP_TOKEN_SECRET is not set: using a random secret, so tokens stop working when this process ends.')
} else if (tokenSecret.length < 32) {
  fail('APP_TOKEN_SECRET must be at least 32 characters.')
}

// The library's log lines (lifecycle, slow queries, leaked connections) go to the console; debug lines are dropped.
const logger: Logger = {
  debug: () => undefined,
  info: (fields, message) => console.info(message ?? '', fields),
  warn: (fields, message) => console.warn(message ?? '', fields),
  error: (fields, message) => console.error(message ?? '', fields),
}

const cursorSecret = process.env.CURSOR_SECRET
// One URL or several separated by commas; the library checks each. Set but empty is refused, like DATABASE_URL.
const replicaUrls = process.env.REPLICA_URL?.split(',').map((replica) => replica.trim())
if (replicaUrls?.includes('')) fail('REPLICA_URL must be postgres:// URLs separated by commas, none of them empty.')
if (replicaUrls !== undefined && url === undefined) fail('REPLICA_URL needs DATABASE_URL: the embedded one has none.')
if (replicaUrls !== undefined && cursorSecret === undefined) {
  console.warn('CURSOR_SECRET is not set: cursors and consistency tokens made here work on no other instance.')
}
const config: DatabaseConfig = {
  logger,
  applicationName: 'wincloud-express-example',
  // Leaving `connection` out starts the embedded PostgreSQL. An empty DATABASE_URL is refused by the library.
  ...(url === undefined ? {} : { connection: url }),
  ...(cursorSecret === undefined ? {} : { pagination: { cursorSecrets: [cursorSecret] } }),
  ...(replicaUrls === undefined ? {} : { replicas: replicaUrls }),
}

/** Migrates, and in development seeds, printing the passwords of accounts it creates. */
async function prepare(db: Database): Promise<void> {
  const migrated = await db.migrate.latest()
  if (migrated.migrations.length > 0) console.info(`migrations applied: ${migrated.migrations.join(', ')}`)
  if (production) return
  const seeded = await db.seed.development()
  // Generated passwords are returned once, when the account is created: this is the only time to show them.
  for (const account of [seeded.admin, ...seeded.users]) {
    if (account.generatedPassword !== undefined) {
      console.info(`seeded ${account.username} (${account.email}), password ${account.generatedPassword}`)
    }
  }
}

async function main(secret: string): Promise<void> {
  const db = await createDatabase(config)
  try {
    await prepare(db)
  } catch (error) {
    await db.close()
    throw error
  }

  const app = createApp(db, { tokenSecret: secret })
  const server = app.listen(port, () => {
    const address = server.address()
    const bound = typeof address === 'object' && address !== null ? address.port : port
    console.info(`listening on http://localhost:${bound} (${db.embedded ? 'embedded PostgreSQL' : db.connectionInfo})`)
  })
  server.once('error', (error) => {
    // The port is taken, for example: close the database (and the embedded server) before giving up.
    void db.close().finally(() => fail(`could not listen on port ${port}: ${error.message}`))
  })

  let stopping = false
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return
    stopping = true
    console.info(`${signal}: closing`)
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeIdleConnections()
    })
    // Closing the database stops the embedded server and deletes its files, when there is one.
    await db.close()
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      stop(signal).then(
        () => process.exit(0),
        (error: unknown) => {
          console.error('shutdown failed', error)
          process.exit(1)
        },
      )
    })
  }
}

main(tokenSecret).catch((error: unknown) => {
  // The library's errors explain themselves (a bad DATABASE_URL, the database unreachable); anything else is a bug.
  if (isDataError(error)) fail(`could not start: ${error.name}: ${error.message}`)
  fail(`could not start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
})
