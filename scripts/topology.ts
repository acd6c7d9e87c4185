/**
 * The scale-out test topology on loopback: a PostgreSQL 15 primary, a streaming replica made with
 * `pg_basebackup -R`, PgBouncer in transaction mode in front of the primary, and a Redis server. Each is a real
 * server from the machine's packages (Debian: postgresql-15, pgbouncer, redis-server), started in a temporary
 * directory and stopped, with its files deleted, by `stop()`.
 *
 * Run alone: `npx tsx scripts/topology.ts` starts everything, prints the URLs and stops on Ctrl-C.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { freePort } from '../src/db/embedded-postgres.js'

/** Where Debian puts the PostgreSQL 15 server programs. */
const PG_BIN = process.env.WINCLOUD_PG_BIN ?? '/usr/lib/postgresql/15/bin'
const PGBOUNCER = process.env.WINCLOUD_PGBOUNCER ?? '/usr/sbin/pgbouncer'
const REDIS = process.env.WINCLOUD_REDIS_SERVER ?? '/usr/bin/redis-server'

/** What the topology needs from the machine, and what is missing. */
export function missingPrograms(parts: { replica?: boolean; pgbouncer?: boolean; redis?: boolean } = {}): string[] {
  const needed = [join(PG_BIN, 'initdb'), join(PG_BIN, 'pg_ctl'), join(PG_BIN, 'postgres')]
  if (parts.replica !== false) needed.push(join(PG_BIN, 'pg_basebackup'))
  if (parts.pgbouncer !== false) needed.push(PGBOUNCER)
  if (parts.redis !== false) needed.push(REDIS)
  return needed.filter((program) => !existsSync(program))
}

/** A running topology. */
export interface Topology {
  /** Superuser URL of the primary's `postgres` database. */
  readonly primaryUrl: string
  readonly replicaUrl: string | undefined
  /** PgBouncer (transaction mode) in front of the primary. */
  readonly pgbouncerUrl: string | undefined
  readonly redisUrl: string | undefined
  /** The same URL on another database name. */
  urlFor(base: string, database: string): string
  /** Pauses or resumes WAL replay on the replica: lag becomes deterministic. */
  pauseReplay(): Promise<void>
  resumeReplay(): Promise<void>
  /** Stops the replica (fast) and starts it again, keeping its data. */
  stopReplica(): Promise<void>
  startReplica(): Promise<void>
  /**
   * Stops the primary (fast: it sends the replica all its WAL, shutdown checkpoint included, before it exits) and
   * keeps its data. `stop()` still cleans up whatever is left running.
   */
  stopPrimary(): Promise<void>
  /**
   * Starts the old primary again, on its port and with its data. After `promoteReplica()` it runs beside the
   * promoted replica as a second primary on the old timeline: a primary that was cut off, not a standby.
   */
  startPrimary(): Promise<void>
  /** Promotes the replica (`pg_ctl promote`) and waits until it accepts writes: `pg_is_in_recovery()` is false. */
  promoteReplica(timeoutMs?: number): Promise<void>
  /**
   * One URL naming the primary, then the replica, with `target_session_attrs=read-write`: a libpq-style client
   * connects to whichever of them accepts writes (after `promoteReplica()`, the replica).
   */
  multiHostUrl(database: string): string
  /** Waits until the replica has replayed everything the primary has written so far. */
  waitForReplica(timeoutMs?: number): Promise<void>
  /** Stops whatever still runs (a server stopped on request is skipped) and deletes every file. */
  stop(): Promise<void>
}

/** PostgreSQL refuses to run as root: as root, run its programs as the `postgres` system user. */
export function runAs(): { uid: number; gid: number } | undefined {
  if (userInfo().uid !== 0) return undefined
  const id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' })
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' })
  if (id.status !== 0 || gid.status !== 0) throw new Error('running as root needs a postgres system user')
  return { uid: Number(id.stdout.trim()), gid: Number(gid.stdout.trim()) }
}

function run(program: string, args: string[], options: SpawnOptions = {}): Promise<string> {
  const user = runAs()
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { ...options, ...(user ?? {}), stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.on('error', reject)
    child.on('close', (code) =>
      code === 0 ? resolve(output) : reject(new Error(`${program} ${args.join(' ')} exited ${code}:\n${output}`)),
    )
  })
}

/** Makes a directory (if needed) that the servers' user owns. */
function owned(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const user = runAs()
  if (user !== undefined) chownSync(dir, user.uid, user.gid)
  return dir
}

async function waitForPort(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1_000 })
    try {
      await client.connect()
      await client.query('select 1')
      return
    } catch (error) {
      if (Date.now() > deadline) throw error
      await sleep(100)
    } finally {
      await client.end().catch(() => undefined)
    }
  }
}

/** One statement on a connection of its own (not a pool), closed afterwards: for setting servers up and checking them. */
export async function queryOnce<R extends pg.QueryResultRow>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
  await client.connect()
  try {
    return (await client.query<R>(sql, params)).rows
  } finally {
    await client.end().catch(() => undefined)
  }
}

const SERVER_SETTINGS = [
  'listen_addresses=127.0.0.1',
  'fsync=off',
  'synchronous_commit=off',
  'full_page_writes=off',
  'wal_level=replica',
  'max_wal_senders=5',
  'hot_standby=on',
  'max_connections=200',
  'wal_keep_size=256MB',
  // Lets a stopped or cut-off primary be rewound into a standby of the promoted replica.
  'wal_log_hints=on',
]

/**
 * Starts a primary, and on request a streaming replica, PgBouncer (transaction mode) and Redis, on loopback ports.
 * Throws, naming them, when the programs are missing.
 */
export async function startTopology(
  parts: { replica?: boolean; pgbouncer?: boolean; redis?: boolean } = {},
): Promise<Topology> {
  const missing = missingPrograms(parts)
  if (missing.length > 0) throw new Error(`missing programs: ${missing.join(', ')}`)
  const root = mkdtempSync(join(tmpdir(), 'wincloud-topology-'))
  owned(root)
  const stops: (() => Promise<void>)[] = []
  const stop = async (): Promise<void> => {
    for (const step of stops.splice(0).reverse()) await step().catch(() => undefined)
    rmSync(root, { recursive: true, force: true })
  }
  try {
    const primaryDir = owned(join(root, 'primary'))
    const primaryPort = await freePort()
    await run(join(PG_BIN, 'initdb'), ['-D', primaryDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync'])
    writeFileSync(
      join(primaryDir, 'pg_hba.conf'),
      'host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n',
    )
    const pgCtl = join(PG_BIN, 'pg_ctl')
    const serverOptions = (port: number, dir: string) =>
      [...SERVER_SETTINGS, `port=${port}`, `unix_socket_directories=${dir}`].map((s) => `-c ${s}`).join(' ')
    const startServer = (dir: string, port: number) =>
      run(pgCtl, ['-D', dir, '-l', join(dir, 'server.log'), '-w', '-t', '60', '-o', serverOptions(port, dir), 'start'])
    // A server stopped on request (stopPrimary, stopReplica) is left alone.
    const stopServer = async (dir: string): Promise<void> => {
      if (existsSync(join(dir, 'postmaster.pid'))) await run(pgCtl, ['-D', dir, '-m', 'fast', '-w', 'stop'])
    }
    await startServer(primaryDir, primaryPort)
    stops.push(() => stopServer(primaryDir))
    const primaryUrl = `postgres://postgres@127.0.0.1:${primaryPort}/postgres`
    await waitForPort(primaryUrl, 30_000)

    let replicaUrl: string | undefined
    let replicaDir: string | undefined
    let replicaPort = 0
    if (parts.replica !== false) {
      replicaDir = owned(join(root, 'replica'))
      replicaPort = await freePort()
      await run(join(PG_BIN, 'pg_basebackup'), [
        '-h',
        '127.0.0.1',
        '-p',
        String(primaryPort),
        '-U',
        'postgres',
        '-D',
        replicaDir,
        '-R',
        '-X',
        'stream',
        '--no-sync',
      ])
      await startServer(replicaDir, replicaPort)
      const dir = replicaDir
      stops.push(() => stopServer(dir))
      replicaUrl = `postgres://postgres@127.0.0.1:${replicaPort}/postgres`
      await waitForPort(replicaUrl, 30_000)
    }

    let pgbouncerUrl: string | undefined
    if (parts.pgbouncer !== false) {
      const bouncer = await startPgBouncer({ port: primaryPort, dir: owned(join(root, 'pgbouncer')) })
      stops.push(() => bouncer.stop())
      pgbouncerUrl = bouncer.url
    }

    let redisUrl: string | undefined
    if (parts.redis !== false) {
      const redis = await startRedis(owned(join(root, 'redis')))
      stops.push(() => redis.stop())
      redisUrl = redis.url
    }

    const urlFor = (base: string, database: string): string => {
      const url = new URL(base)
      url.pathname = `/${database}`
      return url.toString()
    }
    const replicaOnly = (): { url: string; dir: string } => {
      if (replicaUrl === undefined || replicaDir === undefined) throw new Error('no replica in this topology')
      return { url: replicaUrl, dir: replicaDir }
    }
    return {
      primaryUrl,
      replicaUrl,
      pgbouncerUrl,
      redisUrl,
      urlFor,
      pauseReplay: async () => {
        await queryOnce(replicaOnly().url, 'select pg_wal_replay_pause()')
      },
      resumeReplay: async () => {
        await queryOnce(replicaOnly().url, 'select pg_wal_replay_resume()')
      },
      stopReplica: async () => {
        await stopServer(replicaOnly().dir)
      },
      startReplica: async () => {
        const { url, dir } = replicaOnly()
        await startServer(dir, replicaPort)
        await waitForPort(url, 30_000)
      },
      stopPrimary: async () => {
        await stopServer(primaryDir)
      },
      startPrimary: async () => {
        await startServer(primaryDir, primaryPort)
        await waitForPort(primaryUrl, 30_000)
      },
      promoteReplica: async (timeoutMs = 30_000) => {
        const { url, dir } = replicaOnly()
        await run(pgCtl, ['-D', dir, '-w', '-t', String(Math.ceil(timeoutMs / 1_000)), 'promote'])
        const deadline = Date.now() + timeoutMs
        for (;;) {
          const [row] = await queryOnce<{ recovering: boolean }>(url, 'select pg_is_in_recovery() as recovering')
          if (row?.recovering === false) return
          if (Date.now() > deadline) throw new Error(`the replica was still in recovery after ${timeoutMs} ms`)
          await sleep(20)
        }
      },
      multiHostUrl: (database: string) => {
        const hosts = [primaryPort, ...(replicaUrl === undefined ? [] : [replicaPort])]
        return `postgres://postgres@${hosts.map((port) => `127.0.0.1:${port}`).join(',')}/${encodeURIComponent(database)}?target_session_attrs=read-write`
      },
      waitForReplica: async (timeoutMs = 10_000) => {
        const [{ lsn }] = (await queryOnce<{ lsn: string }>(
          primaryUrl,
          'select pg_current_wal_insert_lsn()::text as lsn',
        )) as [{ lsn: string }]
        const deadline = Date.now() + timeoutMs
        for (;;) {
          const [row] = await queryOnce<{ caught: boolean }>(
            replicaOnly().url,
            'select pg_last_wal_replay_lsn() >= $1::pg_lsn as caught',
            [lsn],
          )
          if (row?.caught === true) return
          if (Date.now() > deadline) throw new Error(`the replica did not replay ${lsn} within ${timeoutMs} ms`)
          await sleep(20)
        }
      },
      stop,
    }
  } catch (error) {
    const logs = ['primary/server.log', 'replica/server.log', 'pgbouncer/pgbouncer.log']
      .map((file) => join(root, file))
      .filter((file) => existsSync(file))
      .map((file) => `--- ${file}\n${readFileSync(file, 'utf8').slice(-2_000)}`)
    await stop()
    if (error instanceof Error && logs.length > 0) error.message += `\n${logs.join('\n')}`
    throw error
  }
}

/**
 * Starts PgBouncer in transaction mode on a free loopback port in front of the server on `port` (any database;
 * clients connect without a password, PgBouncer logs in as `user` with `password`). Its URL names the `postgres`
 * database: change the path for another.
 */
export async function startPgBouncer(target: {
  port: number
  user?: string
  password?: string
  dir?: string
}): Promise<{ url: string; stop(): Promise<void> }> {
  if (!existsSync(PGBOUNCER)) throw new Error(`missing program: ${PGBOUNCER}`)
  const dir = owned(target.dir ?? mkdtempSync(join(tmpdir(), 'wincloud-pgbouncer-')))
  const port = await freePort()
  const user = target.user ?? 'postgres'
  const login = `user=${user}${target.password === undefined ? '' : ` password=${target.password}`}`
  writeFileSync(join(dir, 'userlist.txt'), `"${user}" ""\n`)
  writeFileSync(
    join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=127.0.0.1 port=${target.port} ${login}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      `unix_socket_dir =`,
      'auth_type = trust',
      `auth_file = ${join(dir, 'userlist.txt')}`,
      'pool_mode = transaction',
      'max_client_conn = 500',
      'default_pool_size = 20',
      'ignore_startup_parameters = extra_float_digits,options',
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      `pidfile = ${join(dir, 'pgbouncer.pid')}`,
    ].join('\n'),
  )
  const owner = runAs()
  if (owner !== undefined) {
    for (const file of ['userlist.txt', 'pgbouncer.ini']) chownSync(join(dir, file), owner.uid, owner.gid)
  }
  const child = spawnDaemon(PGBOUNCER, [join(dir, 'pgbouncer.ini')])
  const url = `postgres://${user}@127.0.0.1:${port}/postgres`
  const stop = async (): Promise<void> => {
    await stopChild(child)
    if (target.dir === undefined) rmSync(dir, { recursive: true, force: true })
  }
  try {
    await waitForPort(url, 30_000)
  } catch (error) {
    await stop()
    throw error
  }
  return { url, stop }
}

/** A Redis server of its own: `pause()` freezes it (SIGSTOP: connections stay open, nothing answers). */
export interface RedisServer {
  readonly url: string
  readonly port: number
  pause(): void
  resume(): void
  /** Stops it; `start()` starts it again on the same port (empty: it keeps nothing on disk). */
  stop(): Promise<void>
  start(): Promise<void>
}

/** Starts `redis-server` on a free loopback port, keeping nothing on disk. */
export async function startRedis(dir?: string): Promise<RedisServer> {
  if (!existsSync(REDIS)) throw new Error(`missing program: ${REDIS}`)
  const home = dir ?? mkdtempSync(join(tmpdir(), 'wincloud-redis-'))
  const port = await freePort()
  let child: ChildProcess | undefined
  const start = async (): Promise<void> => {
    owned(home)
    child = spawnDaemon(REDIS, [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      home,
    ])
    await waitForRedis(port, 30_000)
  }
  await start()
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pause: () => void child?.kill('SIGSTOP'),
    resume: () => void child?.kill('SIGCONT'),
    stop: async () => {
      if (child === undefined) return
      child.kill('SIGCONT')
      await stopChild(child)
      child = undefined
      if (dir === undefined) rmSync(home, { recursive: true, force: true })
    },
    start,
  }
}

function spawnDaemon(program: string, args: string[]): ChildProcess {
  const user = runAs()
  const child = spawn(program, args, { ...(user ?? {}), stdio: 'ignore' })
  child.on('error', () => undefined)
  return child
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  await Promise.race([exited, sleep(5_000).then(() => child.kill('SIGKILL'))])
}

async function waitForRedis(port: number, timeoutMs: number): Promise<void> {
  const { connect } = await import('node:net')
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => socket.write('PING\r\n'))
      socket.once('data', (chunk: Buffer) => {
        socket.destroy()
        resolve(chunk.toString().startsWith('+PONG'))
      })
      socket.once('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`redis did not answer on port ${port}`)
    await sleep(50)
  }
}

if (require.main === module) {
  void (async () => {
    const topology = await startTopology()
    console.log(JSON.stringify({ ...topology }, (_k, v: unknown) => (typeof v === 'function' ? undefined : v), 2))
    process.once('SIGINT', () => void topology.stop().then(() => process.exit(0)))
  })()
}
