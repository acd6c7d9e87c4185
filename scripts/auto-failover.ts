/**
 * A pg_auto_failover formation on loopback: a monitor and two PostgreSQL 15 nodes (a primary and its synchronous
 * secondary), each run by its own `pg_autoctl run` process over a data directory in a temporary directory. The
 * programs come from the machine's packages (Debian: postgresql-15, postgresql-15-auto-failover). `stop()` stops
 * everything and deletes the files.
 *
 * Every pg_autoctl process runs under a small shell guard that stops it (SIGTERM: a fast shutdown of its
 * PostgreSQL) when the harness closes the guard's stdin, or exits without closing it, or dies: no server outlives
 * the harness.
 *
 * Run alone: `npx tsx scripts/auto-failover.ts` starts the formation, prints its URLs and stops on Ctrl-C.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import {
  chownSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from '../src/db/embedded-postgres.js'
import { queryOnce, runAs } from './topology.js'

/** Where Debian puts the PostgreSQL 15 server programs and pg_auto_failover's `pg_autoctl`. */
const PG_BIN = process.env.WINCLOUD_PG_BIN ?? '/usr/lib/postgresql/15/bin'
const PG_AUTOCTL = process.env.WINCLOUD_PG_AUTOCTL ?? '/usr/bin/pg_autoctl'

/** The database and the role (no password, trusted on loopback) made for applications; the role owns the database. */
const APP = 'app'

/**
 * Runs "$@" with stdin on /dev/null; when the guard's own stdin ends (the harness closed it, or exited, or died),
 * sends the program SIGTERM. Exits with the program's status.
 */
const GUARD = [
  'exec 3<&0 0</dev/null',
  '"$@" 3<&- &',
  'pid=$!',
  '{ read -r _ <&3 || :; kill -TERM "$pid" 2>/dev/null; } &',
  'watcher=$!',
  'wait "$pid"',
  'status=$?',
  'kill "$watcher" 2>/dev/null',
  'exit "$status"',
].join('\n')

/** The pg_auto_failover states in which a node is the one that takes writes. */
const WRITABLE_STATES = ['single', 'wait_primary', 'primary', 'join_primary', 'apply_settings']

/** What the harness needs from the machine and is missing (empty when it can run). */
export function missingAutoFailover(): string[] {
  const programs = ['initdb', 'pg_ctl', 'postgres', 'pg_basebackup', 'pg_controldata'].map((p) => join(PG_BIN, p))
  const dirs = spawnSync(join(PG_BIN, 'pg_config'), ['--pkglibdir', '--sharedir'], { encoding: 'utf8' })
  const [lib = '/usr/lib/postgresql/15/lib', share = '/usr/share/postgresql/15'] =
    dirs.status === 0 ? dirs.stdout.trim().split('\n') : []
  const extension = [join(lib, 'pgautofailover.so'), join(share, 'extension', 'pgautofailover.control')]
  return [PG_AUTOCTL, ...programs, ...extension].filter((file) => !existsSync(file))
}

/** A running pg_auto_failover formation: one monitor, two nodes, formation `default`, group 0. */
export interface AutoFailover {
  /**
   * `pg_autoctl show uri --formation default`, as printed: both nodes, `target_session_attrs=read-write`, database
   * `postgres`, `sslmode=disable`. It names no user (a client falls back to its own default): `uriFor` does.
   */
  readonly uri: string
  /**
   * The formation's URI on another database, as `user` (default `postgres`, the superuser). The `app` database is
   * there, owned by the role `app`, which logs in without a password: `uriFor('app', 'app')`.
   */
  uriFor(database: string, user?: string): string
  /** The nodes in the order they joined (the first started as primary), with single-host superuser URLs. */
  readonly nodes: readonly { name: string; port: number; url: string }[]
  /** Superuser URL of the monitor's `pg_auto_failover` database (`pgautofailover.node` and its functions). */
  readonly monitorUrl: string
  /** The port of the node that takes writes now, as the monitor sees it (waits while a failover is under way). */
  primaryPort(): Promise<number>
  /**
   * `pg_autoctl perform failover`, then waits until it is over: the other node is primary, takes writes, and the
   * old primary follows it as secondary.
   */
  performFailover(timeoutMs?: number): Promise<void>
  /** Stops the nodes, then the monitor, and deletes every file. Safe to call twice. */
  stop(): Promise<void>
}

/** Makes a directory (if needed) that the servers' user owns. */
function owned(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const user = runAs()
  if (user !== undefined) chownSync(dir, user.uid, user.gid)
  return dir
}

/** A guarded pg_autoctl process; its output goes to `log`. */
interface Guarded {
  readonly label: string
  readonly child: ChildProcess
  readonly log: string
  /** Settles with the exit code (null: killed by a signal) once it has exited. */
  readonly exited: Promise<number | null>
  done: boolean
}

/** Starts, tracks and stops the pg_autoctl processes of one formation, all with the same environment. */
class Supervisor {
  private readonly processes: Guarded[] = []
  private count = 0
  private readonly user = runAs()
  readonly env: NodeJS.ProcessEnv

  constructor(private readonly root: string) {
    owned(join(root, 'logs'))
    const inherited = Object.entries(process.env).filter(([name]) => !name.startsWith('PG'))
    this.env = {
      ...Object.fromEntries(inherited),
      HOME: root,
      XDG_CONFIG_HOME: owned(join(root, 'config')),
      XDG_DATA_HOME: owned(join(root, 'data')),
      XDG_RUNTIME_DIR: owned(join(root, 'run')),
      // The servers' Unix sockets go here, not in the system-wide directory (which another user may not write):
      // pg_autoctl starts PostgreSQL with `-k $PG_REGRESS_SOCK_DIR` and connects to it through PGHOST.
      PGHOST: owned(join(root, 'sockets')),
      PG_REGRESS_SOCK_DIR: join(root, 'sockets'),
      PG_CONFIG: join(PG_BIN, 'pg_config'),
      PATH: `${PG_BIN}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    }
  }

  /** Starts `pg_autoctl ...args` under the guard, in its own process group. */
  start(label: string, args: string[]): Guarded {
    this.count += 1
    const log = join(this.root, 'logs', `${String(this.count).padStart(2, '0')}-${label}.log`)
    const fd = openSync(log, 'a')
    let child: ChildProcess
    try {
      child = spawn('/bin/sh', ['-c', GUARD, 'pg_autoctl', PG_AUTOCTL, ...args], {
        ...(this.user ?? {}),
        cwd: this.root,
        env: this.env,
        detached: true,
        stdio: ['pipe', fd, fd],
      })
    } finally {
      closeSync(fd)
    }
    const guarded: Guarded = {
      label,
      child,
      log,
      done: false,
      exited: new Promise<number | null>((resolve) => {
        child.once('error', () => resolve(null))
        child.once('exit', (code) => resolve(code))
      }).then((code) => {
        guarded.done = true
        return code
      }),
    }
    child.stdin?.on('error', () => undefined)
    this.processes.push(guarded)
    return guarded
  }

  /** Runs `pg_autoctl ...args` to its end; throws, with the end of its output, unless it exits 0 in time. */
  async run(label: string, args: string[], timeoutMs: number): Promise<void> {
    const guarded = this.start(label, args)
    const code = await Promise.race([guarded.exited, sleep(Math.max(timeoutMs, 1_000), 'timeout', { ref: false })])
    if (code === 0) return
    if (code === 'timeout') await this.stop(guarded, 5_000)
    const why = code === 'timeout' ? `did not finish within ${Math.max(timeoutMs, 1_000)} ms` : `exited ${code}`
    throw new Error(`pg_autoctl ${args.join(' ')} ${why}:\n${tail(guarded.log, 3_000)}`)
  }

  /** Stops one process: ends its guard's stdin (SIGTERM to pg_autoctl), then kills its process group if it lingers. */
  async stop(guarded: Guarded, graceMs = 30_000): Promise<void> {
    if (guarded.done) return
    guarded.child.stdin?.end()
    await Promise.race([guarded.exited, sleep(graceMs, undefined, { ref: false })])
    if (guarded.done) return
    const pid = guarded.child.pid
    if (pid !== undefined) {
      try {
        process.kill(-pid, 'SIGKILL')
      } catch {
        // Already gone.
      }
    }
    await Promise.race([guarded.exited, sleep(5_000, undefined, { ref: false })])
  }

  /** Stops whatever still runs, the labels in `first` first (in parallel), then the rest (in parallel). */
  async stopAll(first: (label: string) => boolean): Promise<void> {
    const live = this.processes.filter((p) => !p.done)
    await Promise.all(live.filter((p) => first(p.label)).map((p) => this.stop(p)))
    await Promise.all(live.filter((p) => !first(p.label)).map((p) => this.stop(p)))
  }

  /** The end of every process's output, oldest process first. */
  logs(charsEach = 3_000): string {
    const dir = join(this.root, 'logs')
    if (!existsSync(dir)) return ''
    return readdirSync(dir)
      .sort()
      .map((file) => `--- ${file}\n${tail(join(dir, file), charsEach)}`)
      .join('\n')
  }
}

function tail(file: string, chars: number): string {
  try {
    return readFileSync(file, 'utf8').slice(-chars)
  } catch {
    return ''
  }
}

/** A postmaster that outlived its pg_autoctl (killed, not stopped) gets an immediate shutdown. */
async function stopLeftoverServer(dataDir: string, env: NodeJS.ProcessEnv): Promise<void> {
  const pidFile = join(dataDir, 'postmaster.pid')
  if (!existsSync(pidFile)) return
  const pid = Number(tail(pidFile, 10_000).split('\n')[0])
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return
  const user = runAs()
  const pgCtl = spawn(join(PG_BIN, 'pg_ctl'), ['-D', dataDir, '-m', 'immediate', '-w', '-t', '10', 'stop'], {
    ...(user ?? {}),
    env,
    stdio: 'ignore',
  })
  await new Promise<void>((resolve) => {
    pgCtl.once('error', () => resolve())
    pgCtl.once('exit', () => resolve())
  })
  if (alive(pid)) process.kill(pid, 'SIGKILL')
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

interface NodeState {
  name: string
  port: number
  current: string
  assigned: string
}

async function formationState(monitorUrl: string): Promise<NodeState[]> {
  return queryOnce<NodeState>(
    monitorUrl,
    `select nodename as name, nodeport as port, current_group_state::text as current,
            assigned_group_state::text as assigned
       from pgautofailover.current_state('default') order by node_id`,
  )
}

/**
 * Waits until the formation is settled: one node reports and is assigned `primary` (another one than `notPort`,
 * when given), the other `secondary`. Returns the primary's port.
 */
async function waitForFormation(monitorUrl: string, deadline: number, notPort?: number): Promise<number> {
  let last: unknown
  for (;;) {
    try {
      const states = await formationState(monitorUrl)
      last = states
      const settled = (state: string) => states.filter((s) => s.current === state && s.assigned === state)
      const [primary, ...others] = settled('primary')
      if (states.length === 2 && primary !== undefined && others.length === 0 && primary.port !== notPort) {
        if (settled('secondary').length === 1) return primary.port
      }
    } catch (error) {
      last = error
    }
    if (Date.now() > deadline) {
      const seen = last instanceof Error ? last.message : JSON.stringify(last)
      throw new Error(`the formation did not settle on a primary and a secondary in time; last seen: ${seen}`)
    }
    await sleep(200)
  }
}

/** Waits until the server at `url` takes writes: out of recovery, not read-only. */
async function waitWritable(url: string, deadline: number): Promise<void> {
  for (;;) {
    try {
      const [row] = await queryOnce<{ writable: boolean }>(
        url,
        `select not pg_is_in_recovery() and current_setting('transaction_read_only') = 'off' as writable`,
      )
      if (row?.writable === true) return
    } catch (error) {
      if (Date.now() > deadline) throw error
    }
    if (Date.now() > deadline) throw new Error(`${url} did not take writes in time`)
    await sleep(100)
  }
}

/** Replaces the user and the database of a (multi-host) `postgres://` URI, keeping its hosts and parameters. */
function withDatabase(uri: string, database: string, user: string): string {
  const parts = /^(postgres(?:ql)?:\/\/)(?:[^@/]*@)?([^/?]*)(?:\/[^?]*)?(\?.*)?$/.exec(uri)
  if (parts === null) throw new Error(`not a postgres URI: ${uri}`)
  const [, scheme = 'postgres://', hosts = '', params = ''] = parts
  return `${scheme}${encodeURIComponent(user)}@${hosts}/${encodeURIComponent(database)}${params}`
}

/** Reads what a short pg_autoctl command prints (no server started, so no guard). */
function autoctlOutput(args: string[], env: NodeJS.ProcessEnv, cwd: string): Promise<string> {
  const user = runAs()
  return new Promise((resolve, reject) => {
    const child = spawn(PG_AUTOCTL, args, { ...(user ?? {}), cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    child.on('error', reject)
    child.on('close', (code) =>
      code === 0 ? resolve(stdout) : reject(new Error(`pg_autoctl ${args.join(' ')} exited ${code}:\n${stderr}`)),
    )
  })
}

/** Distinct free loopback ports. */
async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>()
  while (ports.size < count) ports.add(await freePort())
  return [...ports]
}

/**
 * Starts a monitor and two nodes on loopback ports and waits until the formation has a primary and a synchronous
 * secondary; makes the `app` database, owned by the role `app`. Throws, naming them, when the programs are missing,
 * and, with the end of every pg_autoctl process's output, when anything fails (after stopping what started).
 */
export async function startAutoFailover(options: { timeoutMs?: number } = {}): Promise<AutoFailover> {
  const missing = missingAutoFailover()
  if (missing.length > 0) throw new Error(`missing programs: ${missing.join(', ')}`)
  const deadline = Date.now() + (options.timeoutMs ?? 120_000)
  const left = () => deadline - Date.now()
  const root = owned(mkdtempSync(join(tmpdir(), 'wincloud-autofailover-')))
  const supervisor = new Supervisor(root)
  const monitorDir = join(root, 'monitor')
  const names = ['node1', 'node2']
  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      await supervisor.stopAll((label) => label !== 'monitor')
      for (const dir of [...names.map((name) => join(root, name)), monitorDir]) {
        await stopLeftoverServer(dir, supervisor.env).catch(() => undefined)
      }
      rmSync(root, { recursive: true, force: true })
    })())

  try {
    const [monitorPort = 0, ...nodePorts] = await freePorts(3)
    const common = ['--hostname', '127.0.0.1', '--auth', 'trust', '--no-ssl', '--ssl-mode', 'disable']
    const pgctl = ['--pgctl', join(PG_BIN, 'pg_ctl')]

    await supervisor.run(
      'monitor-create',
      ['create', 'monitor', '--pgdata', monitorDir, '--pgport', String(monitorPort), ...common, ...pgctl],
      left(),
    )
    // `create monitor` has no --listen: the monitor would listen on every address.
    await supervisor.run(
      'monitor-config',
      ['config', 'set', '--pgdata', monitorDir, 'postgresql.listen_addresses', '127.0.0.1'],
      left(),
    )
    supervisor.start('monitor', ['run', '--pgdata', monitorDir])
    const monitorUrl = `postgres://postgres@127.0.0.1:${monitorPort}/pg_auto_failover`
    // pg_autoctl's own connection string for the monitor (its `autoctl_node` role, trusted on loopback).
    const monitorUri = `postgres://autoctl_node@127.0.0.1:${monitorPort}/pg_auto_failover?sslmode=disable`
    for (;;) {
      const ready = await queryOnce(monitorUrl, 'select 1 from pgautofailover.formation').then(
        () => true,
        (error: unknown) => {
          if (left() < 0) throw error
          return false
        },
      )
      if (ready) break
      await sleep(100)
    }

    const nodes = names.map((name, i) => {
      const port = nodePorts[i] ?? 0
      return { name, port, url: `postgres://postgres@127.0.0.1:${port}/postgres` }
    })
    for (const node of nodes) {
      const pgdata = join(root, node.name)
      // The second node's create waits for the first node's keeper (running) to make room for a standby.
      await supervisor.run(
        `${node.name}-create`,
        [
          'create',
          'postgres',
          '--pgdata',
          pgdata,
          '--pgport',
          String(node.port),
          '--listen',
          '127.0.0.1',
          '--name',
          node.name,
          '--monitor',
          monitorUri,
          ...common,
          ...pgctl,
        ],
        left(),
      )
      supervisor.start(node.name, ['run', '--pgdata', pgdata])
    }
    const firstPrimary = await waitForFormation(monitorUrl, deadline)

    const primaryUrl = nodes.find((node) => node.port === firstPrimary)?.url ?? ''
    await queryOnce(primaryUrl, `create role ${APP} login`)
    await queryOnce(primaryUrl, `create database ${APP} owner ${APP}`)

    const uri = (
      await autoctlOutput(['show', 'uri', '--pgdata', monitorDir, '--formation', 'default'], supervisor.env, root)
    ).trim()

    const primaryPort = async (timeoutMs = 30_000): Promise<number> => {
      const until = Date.now() + timeoutMs
      for (;;) {
        const states = await formationState(monitorUrl)
        const writable = (state: string) => WRITABLE_STATES.includes(state)
        const primaries = states.filter((s) => writable(s.current) && writable(s.assigned))
        if (primaries.length === 1 && primaries[0] !== undefined) return primaries[0].port
        if (Date.now() > until) throw new Error(`no single primary in the formation: ${JSON.stringify(states)}`)
        await sleep(100)
      }
    }
    let failovers = 0
    return {
      uri,
      uriFor: (database, user = 'postgres') => withDatabase(uri, database, user),
      nodes,
      monitorUrl,
      primaryPort: () => primaryPort(),
      performFailover: async (timeoutMs = 60_000) => {
        const until = Date.now() + timeoutMs
        const before = await primaryPort()
        failovers += 1
        await supervisor.run(
          `failover-${failovers}`,
          ['perform', 'failover', '--pgdata', monitorDir, '--wait', String(Math.ceil(timeoutMs / 1_000))],
          timeoutMs,
        )
        const after = await waitForFormation(monitorUrl, until, before)
        await waitWritable(nodes.find((node) => node.port === after)?.url ?? '', until)
      },
      stop,
    }
  } catch (error) {
    const logs = supervisor.logs()
    await stop()
    if (error instanceof Error && logs.length > 0) error.message += `\n${logs}`
    throw error
  }
}

if (require.main === module) {
  void (async () => {
    const started = Date.now()
    const formation = await startAutoFailover()
    const { uri, nodes, monitorUrl } = formation
    console.log(JSON.stringify({ uri, app: formation.uriFor(APP, APP), nodes, monitorUrl }, undefined, 2))
    console.log(`started in ${Date.now() - started} ms; primary on port ${await formation.primaryPort()}`)
    process.once('SIGINT', () => void formation.stop().then(() => process.exit(0)))
  })()
}
