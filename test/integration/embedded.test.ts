import { spawn } from 'node:child_process'
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError, createDatabase, Droplet, isDataError, UnavailableError } from '../../src/index.js'
import { createTestDatabase } from '../helpers/database.js'
import { processes, type ProcInfo } from '../helpers/processes.js'

const root = resolve(__dirname, '../..')
const probe = join(root, 'test/helpers/close-probe.ts')

/** Handle types that would keep a host's process alive (or that a closed database must not hold on to). */
const LEAKS = ['TCPSocketWrap', 'TCPWrap', 'Timeout', 'ProcessWrap', 'PipeWrap']

/** The embedded server's postmaster (found by its `-p` argument), its data directory and its children. */
function serverOnPort(port: number): { postmaster: ProcInfo; dataDir: string; children: ProcInfo[] } {
  const all = processes()
  const postmaster = all.find((p) => {
    const i = p.argv.indexOf('-p')
    return i >= 0 && p.argv[i + 1] === String(port) && p.argv.includes('-D')
  })
  if (!postmaster) throw new Error(`no postgres process listens on port ${port}`)
  const dataDir = postmaster.argv[postmaster.argv.indexOf('-D') + 1]!
  return { postmaster, dataDir, children: all.filter((p) => p.ppid === postmaster.pid) }
}

/** Processes still alive that belong to a stopped server: any mentioning its data dir, or its old pids. */
function leftovers(dataDir: string, postmasterPid: number, pids: readonly number[]): ProcInfo[] {
  return processes().filter(
    (p) =>
      p.argv.some((arg) => arg.includes(dataDir)) ||
      p.ppid === postmasterPid ||
      (p.pid === postmasterPid && p.argv.some((arg) => arg.includes('postgres'))) ||
      (pids.includes(p.pid) && p.argv.some((arg) => arg.startsWith('postgres:'))),
  )
}

function portFrom(connectionInfo: string): number {
  const port = Number(/^127\.0\.0\.1:(\d+)\//.exec(connectionInfo)?.[1])
  expect(port).toBeGreaterThan(0)
  return port
}

/** How a TCP connect to 127.0.0.1:port ends: 'connected' or the error code. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve('connected')
    })
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? String(error)))
  })
}

/** What close-probe.ts wrote; fields past `baseline` are missing when it did not get that far. */
interface ProbeReport {
  embedded: boolean
  connectionInfo: string
  port: number
  two: number
  migrations: number
  usersCreated: number
  users: number
  droplets: number
  dataDir?: string
  postgresPids: number[]
  baseline: string[]
  duringUse: string[]
  afterClose: string[]
}

/**
 * Runs test/helpers/close-probe.ts in a child node with stdout and stderr going to files (so the probe's own stdio
 * holds no pipe handles), and waits for it to exit by itself.
 */
async function runProbe(
  connection: string | undefined,
  timeoutMs = 20_000,
  exitCode?: number,
): Promise<{
  code: number | null
  signal: NodeJS.Signals | null
  exitedBy: 'itself' | 'timeout'
  report?: ProbeReport
  output: string
}> {
  const dir = await mkdtemp(join(tmpdir(), 'close-probe-'))
  const resultFile = join(dir, 'result.json')
  const outFd = openSync(join(dir, 'out.log'), 'w')
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, PROBE_RESULT: resultFile }
    delete env.PROBE_CONNECTION
    if (connection !== undefined) env.PROBE_CONNECTION = connection
    if (exitCode !== undefined) env.PROBE_EXIT_CODE = String(exitCode)
    const child = spawn(process.execPath, ['--import', 'tsx', probe], {
      cwd: root,
      env,
      stdio: ['ignore', outFd, outFd],
    })
    const outcome = await new Promise<{
      code: number | null
      signal: NodeJS.Signals | null
      exitedBy: 'itself' | 'timeout'
    }>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        resolve({ code: null, signal: 'SIGKILL', exitedBy: 'timeout' })
      }, timeoutMs)
      child.once('error', (error) => {
        clearTimeout(timer)
        reject(error)
      })
      child.once('exit', (code, signal) => {
        clearTimeout(timer)
        resolve({ code, signal, exitedBy: 'itself' })
      })
    })
    const output = await readFile(join(dir, 'out.log'), 'utf8')
    const report = existsSync(resultFile)
      ? (JSON.parse(await readFile(resultFile, 'utf8')) as Partial<ProbeReport>)
      : undefined
    const postmaster = report?.postgresPids?.[0]
    if (outcome.exitedBy === 'timeout' && postmaster !== undefined) {
      // The probe had to be killed: do not leave its server running or its files behind.
      try {
        process.kill(postmaster, 'SIGINT')
        for (let i = 0; i < 50 && existsSync(`/proc/${postmaster}`); i++) await sleep(100)
      } catch {
        // already gone
      }
      if (report?.dataDir) await rm(report.dataDir, { recursive: true, force: true })
    }
    return { ...outcome, report: report as ProbeReport | undefined, output }
  } finally {
    closeSync(outFd)
    await rm(dir, { recursive: true, force: true })
  }
}

// The three tests below each start node or PostgreSQL processes and mostly wait on them: run them side by side.
describe.concurrent('createDatabase() with no connection, and close()', () => {
  it('starts PostgreSQL 15, and close() (twice) stops it, frees its port and deletes its files', async () => {
    const db = await createDatabase()
    let closed = false
    try {
      expect(db.embedded).toBe(true)
      const port = portFrom(db.connectionInfo)
      expect(db.connectionInfo).toBe(`127.0.0.1:${port}/postgres`)

      const { rows } = await db.knex.raw('select version() as version, 6 * 7 as answer')
      expect(rows[0].version).toMatch(/^PostgreSQL 15\.\d+/)
      expect(rows[0].answer).toBe(42)
      await db.migrate.latest()
      expect(await db.model(Droplet).query().resultSize()).toBe(0)

      const server = serverOnPort(port)
      expect(server.dataDir.startsWith(join(tmpdir(), 'wincloud-data-pg-'))).toBe(true)
      expect(existsSync(join(server.dataDir, 'PG_VERSION'))).toBe(true)
      expect(readFileSync(join(server.dataDir, 'PG_VERSION'), 'utf8').trim()).toBe('15')
      expect(server.children.length).toBeGreaterThan(0)
      expect(await tryConnect(port)).toBe('connected')

      // Two calls at once and one more afterwards: all resolve.
      await Promise.all([db.close(), db.close()])
      await db.close()
      closed = true

      expect(await tryConnect(port)).toBe('ECONNREFUSED')
      expect(existsSync(server.dataDir)).toBe(false)
      expect(
        leftovers(
          server.dataDir,
          server.postmaster.pid,
          server.children.map((c) => c.pid),
        ),
      ).toEqual([])
      await expect(db.model(Droplet).query().resultSize()).rejects.toBeInstanceOf(UnavailableError)
    } finally {
      if (!closed) await db.close()
    }
  })

  it('close() leaves no process, timer or socket behind (embedded default): the host process exits by itself, and the server and its files are gone', async () => {
    const result = await runProbe(undefined)
    const report = result.report
    expect(result, result.output).toMatchObject({ exitedBy: 'itself', code: 0, signal: null })
    expect(report).toBeDefined()
    if (!report) return
    expect(report).toMatchObject({ embedded: true, two: 2, migrations: 5, usersCreated: 1, droplets: 1 })
    // The probe really held a server, sockets and timers while in use, so the check below is not vacuous.
    expect(report.duringUse).toEqual(expect.arrayContaining(['TCPSocketWrap', 'ProcessWrap']))
    expect(report.postgresPids.length).toBeGreaterThan(1)
    expect(report.baseline.filter((type) => LEAKS.includes(type))).toEqual([])
    expect(
      report.afterClose.filter((type) => LEAKS.includes(type)),
      `after close: ${report.afterClose.join(', ')}`,
    ).toEqual([])

    const dataDir = report.dataDir
    expect(dataDir?.startsWith(join(tmpdir(), 'wincloud-data-pg-'))).toBe(true)
    if (!dataDir) return
    expect(existsSync(dataDir)).toBe(false)
    expect(leftovers(dataDir, report.postgresPids[0]!, report.postgresPids)).toEqual([])
    expect(await tryConnect(report.port)).toBe('ECONNREFUSED')
  })

  it("keeps the host's exit code: a process that used the embedded default and set exitCode 7 exits 7", async () => {
    const result = await runProbe(undefined, 20_000, 7)
    expect(result, result.output).toMatchObject({ exitedBy: 'itself', code: 7, signal: null })
  })

  it('close() leaves no process, timer or socket behind (postgres:// URL): the host process exits by itself', async () => {
    const target = await createTestDatabase('probe')
    try {
      const result = await runProbe(target.url)
      const report = result.report
      expect(result, result.output).toMatchObject({ exitedBy: 'itself', code: 0, signal: null })
      expect(report).toMatchObject({ embedded: false, two: 2, migrations: 5, usersCreated: 1, droplets: 1 })
      if (!report) return
      expect(report.duringUse).toEqual(expect.arrayContaining(['TCPSocketWrap']))
      expect(
        report.afterClose.filter((type) => LEAKS.includes(type)),
        `after close: ${report.afterClose.join(', ')}`,
      ).toEqual([])
    } finally {
      await target.drop()
    }
  })
})

describe('a connection field that is present but empty', () => {
  it.each([
    ['undefined', undefined],
    ['an empty string', ''],
  ])('is a ConfigError naming connection when it is %s, not a pool timeout or an embedded server', async (_, value) => {
    const started = Date.now()
    const error = await createDatabase({ connection: value }).then(
      (db) => db.close().then(() => new Error('createDatabase resolved')),
      (e: unknown) => e,
    )
    // Fast: nothing was started or tried (an embedded server takes seconds, a pool acquire timeout 10 s).
    expect(Date.now() - started).toBeLessThan(1_000)
    expect(isDataError(error)).toBe(true)
    expect(error).toBeInstanceOf(ConfigError)
    expect(error).toMatchObject({ name: 'ConfigError', code: 'CONFIG_INVALID', field: 'connection' })
    expect((error as ConfigError).message).toMatch(/^Invalid configuration: connection /)
    expect((error as ConfigError).message).not.toMatch(/Unable to acquire a connection|Timeout acquiring/)
  })
})
