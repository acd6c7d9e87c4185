import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { inspect } from 'node:util'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTopology, type Topology } from '../../scripts/topology.js'
import { runCli } from '../../src/cli/main.js'
import { redactPassword } from '../../src/cli/with-database.js'
import { freePort } from '../../src/db/embedded-postgres.js'
import { ConfigError, createDatabase, UnavailableError, type DatabaseConfig } from '../../src/index.js'
import { adminQuery, adminUrl, createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { needs } from '../helpers/tools.js'

/**
 * What a new user meets when the first connection fails: each failure of `createDatabase` names the host, port and
 * database (and the user or database where that is the problem), says what to do, keeps the driver's error as
 * `cause`, and never repeats the password. The failures are real: a wrong password and a missing database on the
 * suite's server (which asks for passwords over TCP, scram-sha-256), a port nothing listens on, a host name that
 * does not exist, a server that accepts and never answers, TLS asked of a server without it; and, on a server of
 * this file's own, what a pg_hba.conf can refuse.
 */

const hex = (): string => randomBytes(5).toString('hex')

/** What `createDatabase` rejected with (the test fails when it connected). */
async function failure(connection: string, config: Omit<DatabaseConfig, 'connection'> = {}): Promise<unknown> {
  const db = await createDatabase({ ...config, connection }).catch((error: unknown) => error)
  if (typeof db === 'object' && db !== null && 'close' in db) {
    await (db as { close(): Promise<void> }).close()
    throw new Error(`connected to ${connection.replace(/:[^:@/]*@/, ':…@')}`)
  }
  return db
}

/** The password appears nowhere: not in the message, the JSON, the string, nor anything `inspect` shows (causes). */
function expectNoSecret(error: unknown, ...secrets: string[]): void {
  const texts = [String(error), JSON.stringify(error), inspect(error, { depth: 6 }), (error as Error).message]
  for (const secret of secrets) for (const text of texts) expect(text).not.toContain(secret)
}

/** The URL of `base` with another user, password, host:port, database or query. */
function urlOf(
  base: string,
  change: { user?: string; password?: string | null; port?: number; host?: string; database?: string },
): string {
  const url = new URL(base)
  if (change.user !== undefined) url.username = encodeURIComponent(change.user)
  if (change.password !== undefined) url.password = change.password === null ? '' : encodeURIComponent(change.password)
  if (change.host !== undefined) url.hostname = change.host
  if (change.port !== undefined) url.port = String(change.port)
  if (change.database !== undefined) url.pathname = `/${change.database}`
  return url.toString()
}

/** Runs `wincloud-data` from the source as a process of its own, as a user would, without DATABASE_URL. */
function runCliProcess(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = { ...process.env, DATABASE_URL: '', NODE_NO_WARNINGS: '1' }
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: join(__dirname, '../..'),
    env,
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  child.stdin.end()
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** A TCP server that accepts connections and never says a word: a host that does not answer. */
async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  return {
    port: typeof address === 'object' && address !== null ? address.port : 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}

let testDb: TestDatabase
let role: string
/** The role's real password: it must never show either. */
let rolePassword: string
/** A wrong password with characters that need encoding in a URL, so both of its forms are checked. */
const wrongPassword = `wrong/pw@${hex()}:x`
let port: number
let appUrl: string

beforeAll(async () => {
  testDb = await createTestDatabase('ce')
  role = `ce_${hex()}`
  rolePassword = `right-${hex()}`
  await adminQuery(`create role ${role} login password '${rolePassword}'`)
  port = Number(new URL(adminUrl()).port)
  appUrl = urlOf(testDb.url, { user: role, password: rolePassword })
})

afterAll(async () => {
  await testDb?.drop()
  if (role !== undefined) await adminQuery(`drop role if exists ${role}`)
})

describe('createDatabase: a first connection that fails says where and what to do', () => {
  it('a wrong password: ConfigError naming host, port, database and user, telling to check the password', async () => {
    const error = await failure(urlOf(appUrl, { password: wrongPassword }))
    expect(error).toBeInstanceOf(ConfigError)
    const e = error as ConfigError
    expect(e).toMatchObject({ field: 'connection', code: 'CONFIG_INVALID' })
    expect(e.message).toBe(
      `Invalid configuration: connection was refused by PostgreSQL at 127.0.0.1:${port}/${testDb.name}: ` +
        `authentication failed for user ${role} (28P01). Check the password (and the user name) in the connection string.`,
    )
    expect(e.cause).toMatchObject({ code: '28P01' })
    expectNoSecret(error, wrongPassword, encodeURIComponent(wrongPassword), rolePassword)
  })

  it('a database that does not exist: ConfigError naming it and saying to create it', async () => {
    const missing = `no_such_db_${hex()}`
    const error = await failure(urlOf(appUrl, { database: missing }))
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).message).toBe(
      `Invalid configuration: connection names database ${missing}, which does not exist on PostgreSQL at ` +
        `127.0.0.1:${port} (3D000). Create it (createdb ${missing}, or create database ${missing}) or fix the name ` +
        'in the connection string.',
    )
    expect((error as ConfigError).cause).toMatchObject({ code: '3D000' })
    expectNoSecret(error, rolePassword)
  })

  it('a role that does not exist, on a server that asks for passwords: the credentials of that user are refused', async () => {
    // With password authentication PostgreSQL does not tell a missing role from a wrong password (28P01).
    const ghost = `ghost_${hex()}`
    const error = await failure(urlOf(appUrl, { user: ghost, password: wrongPassword }))
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).message).toContain(
      `was refused by PostgreSQL at 127.0.0.1:${port}/${testDb.name}: authentication failed for user ${ghost} (28P01)`,
    )
    expectNoSecret(error, wrongPassword, encodeURIComponent(wrongPassword))
  })

  it('a port nothing listens on: UnavailableError, asking whether PostgreSQL runs and whether this is its port', async () => {
    const free = await freePort()
    const started = Date.now()
    const error = await failure(urlOf(appUrl, { port: free, password: wrongPassword }))
    expect(Date.now() - started).toBeLessThan(5_000)
    expect(error).toBeInstanceOf(UnavailableError)
    expect((error as UnavailableError).message).toBe(
      `Could not connect to PostgreSQL at 127.0.0.1:${free}/${testDb.name}: nothing listens at 127.0.0.1:${free} ` +
        '(ECONNREFUSED). Is PostgreSQL running, and is this its port?',
    )
    expect((error as UnavailableError).cause).toMatchObject({ code: 'ECONNREFUSED' })
    expectNoSecret(error, wrongPassword, encodeURIComponent(wrongPassword))
  })

  it('a host name that does not exist: UnavailableError naming it', async () => {
    const error = await failure(urlOf(appUrl, { host: 'nonexistent.invalid', port: 5432, password: wrongPassword }))
    expect(error).toBeInstanceOf(UnavailableError)
    expect((error as UnavailableError).message).toMatch(
      new RegExp(
        `^Could not connect to PostgreSQL at nonexistent\\.invalid:5432/${testDb.name}: the host name ` +
          'nonexistent\\.invalid was not found \\((ENOTFOUND|EAI_AGAIN)\\)\\. Check the host in the connection string',
      ),
    )
    expectNoSecret(error, wrongPassword, encodeURIComponent(wrongPassword))
  })

  it('a server that never answers: UnavailableError after the acquire timeout, saying how long it waited', async () => {
    const silent = await silentServer()
    try {
      const started = Date.now()
      const error = await failure(urlOf(appUrl, { port: silent.port }), { pool: { acquireTimeoutMs: 400 } })
      expect(Date.now() - started).toBeLessThan(5_000)
      expect(error).toBeInstanceOf(UnavailableError)
      expect((error as UnavailableError).message).toMatch(
        new RegExp(
          `^Could not connect to PostgreSQL at 127\\.0\\.0\\.1:${silent.port}/${testDb.name}: no answer within 400 ms\\.`,
        ),
      )
      expectNoSecret(error, rolePassword)
    } finally {
      await silent.close()
    }
  })

  it('a host list where nothing listens: names every host', async () => {
    const [a, b] = [await freePort(), await freePort()]
    const list = `postgres://${role}:${encodeURIComponent(wrongPassword)}@127.0.0.1:${a},127.0.0.1:${b}/${testDb.name}`
    const error = await failure(list, { failoverTimeoutMs: 300 })
    expect(error).toBeInstanceOf(UnavailableError)
    expect((error as UnavailableError).message).toBe(
      `Could not connect to PostgreSQL at 127.0.0.1:${a}, 127.0.0.1:${b} (database ${testDb.name}): nothing listens ` +
        `at 127.0.0.1:${a}, 127.0.0.1:${b} (ECONNREFUSED). Is PostgreSQL running, and is this its port?`,
    )
    expectNoSecret(error, wrongPassword, encodeURIComponent(wrongPassword))
  })

  it('a port out of range or not a number: ConfigError on connection saying what a port must be', async () => {
    const password = `pw-${hex()}`
    for (const bad of ['0', '99999', 'abc']) {
      const url = `postgres://${role}:${password}@127.0.0.1:${bad}/wincloud`
      const error = await failure(url)
      expect(error, bad).toBeInstanceOf(ConfigError)
      expect((error as ConfigError).field).toBe('connection')
      expect((error as ConfigError).message).toMatch(/a port must be a whole number from 1 to 65535/)
      expect((error as ConfigError).message).not.toMatch(/must be a postgres:\/\//)
      expectNoSecret(error, password)
    }
    const listed = await failure(`postgres://u:${password}@127.0.0.1:5432,127.0.0.1:99999/wincloud`)
    expect((listed as ConfigError).message).toBe(
      'Invalid configuration: connection has port 99999: a port must be a whole number from 1 to 65535 (PostgreSQL ' +
        'listens on 5432 unless told otherwise).',
    )
    // A password with an @ and a : left unencoded: the URL's host part is then wrong; nothing of the password shows.
    const unencoded = await failure(`postgres://u:se@cr:et9x@127.0.0.1:5432/wincloud`)
    expect(unencoded).toBeInstanceOf(ConfigError)
    expect((unencoded as ConfigError).message).toMatch(/URL-encode the password/)
    expectNoSecret(unencoded, 'se@cr', 'cr:et9x')
  })

  it('TLS asked of a server without it: ConfigError saying to remove sslmode=require or enable TLS', async () => {
    const error = await failure(`${urlOf(appUrl, { password: wrongPassword })}?sslmode=require`)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).message).toBe(
      'Invalid configuration: connection asks for TLS (sslmode=require, or ssl in connection fields), but PostgreSQL ' +
        `at 127.0.0.1:${port}/${testDb.name} does not support TLS connections. Remove sslmode=require (or ssl), or ` +
        'enable TLS on the server (ssl = on, with a certificate).',
    )
    expect((error as ConfigError).cause).toMatchObject({ message: 'The server does not support SSL connections' })
    expectNoSecret(error, wrongPassword, encodeURIComponent(wrongPassword))
  })

  it('a role at its connection limit: UnavailableError (53300) naming the user and the limit', async () => {
    const limited = `ce_limited_${hex()}`
    const password = `pw-${hex()}`
    await adminQuery(`create role ${limited} login password '${password}' connection limit 0`)
    try {
      const error = await failure(urlOf(appUrl, { user: limited, password }))
      expect(error).toBeInstanceOf(UnavailableError)
      expect((error as UnavailableError).message).toBe(
        `Could not connect to PostgreSQL at 127.0.0.1:${port}/${testDb.name}: user ${limited} has as many ` +
          `connections as its connection limit allows (53300). Close idle connections, lower pool.max, or raise ` +
          `the limit (alter role ${limited} connection limit …).`,
      )
      expectNoSecret(error, password)
    } finally {
      await adminQuery(`drop role ${limited}`)
    }
  })
})

describe('the command line: the message, then the cause; one exit code for every "could not check"', () => {
  it('prints the error and, below it, the cause, and exits 1; never the password', async () => {
    const url = urlOf(appUrl, { password: wrongPassword })
    const result = await runCliProcess(['migrate', 'status', '--url', url])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain(
      `wincloud-data: ConfigError: Invalid configuration: connection was refused by PostgreSQL at ` +
        `127.0.0.1:${port}/${testDb.name}: authentication failed for user ${role} (28P01).`,
    )
    expect(result.stderr).toContain(`\n  cause (28P01): password authentication failed for user "${role}"\n`)
    for (const secret of [wrongPassword, encodeURIComponent(wrongPassword), rolePassword]) {
      expect(result.stdout + result.stderr).not.toContain(secret)
    }

    const free = await freePort()
    const refused = await runCliProcess(['seed', '--url', urlOf(url, { port: free })])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain(
      `wincloud-data: UnavailableError: Could not connect to PostgreSQL at 127.0.0.1:${free}/${testDb.name}: ` +
        `nothing listens at 127.0.0.1:${free} (ECONNREFUSED).`,
    )
    expect(refused.stderr).toMatch(/\n {2}cause \(ECONNREFUSED\): connect ECONNREFUSED 127\.0\.0\.1:\d+\n/)
    expect(refused.stdout + refused.stderr).not.toContain(encodeURIComponent(wrongPassword))
  })

  it('health exits 3 whatever kept it from checking: refused, no answer, credentials, no database, a bad URL', async () => {
    const free = await freePort()
    const wrong = urlOf(appUrl, { password: wrongPassword })
    const cases: [string, string, RegExp][] = [
      ['nothing listens', urlOf(wrong, { port: free }), /could not connect \(ECONNREFUSED\)/],
      ['wrong password', wrong, /could not connect \(28P01\)/],
      ['no database', urlOf(appUrl, { database: `none_${hex()}` }), /could not connect \(3D000\)/],
      ['bad port', urlOf(wrong, { port: 1 }).replace(':1/', ':99999/'), /could not connect \(CONFIG_INVALID\)/],
    ]
    const results = await Promise.all(
      cases.map(([, url]) => runCliProcess(['health', '--timeout-ms', '500', '--url', url])),
    )
    // A server that accepts and never answers, in process: the connection attempt it swallowed keeps its socket
    // open (pg is given no connect timeout of its own), so a process of its own would not exit until that closes.
    const silent = await silentServer()
    try {
      const out: string[] = []
      const err: string[] = []
      const io = { out: (line: string) => out.push(line), err: (line: string) => err.push(line), env: {} }
      const code = await runCli(['health', '--timeout-ms', '500', '--url', urlOf(wrong, { port: silent.port })], io)
      results.push({ code, stdout: `${out.join('\n')}\n`, stderr: `${err.join('\n')}\n` })
      cases.push(['no answer', '', /could not connect \(KnexTimeoutError\)/])
    } finally {
      await silent.close()
    }
    results.forEach((result, i) => {
      const [name, , reason] = cases[i]!
      expect({ name, code: result.code }).toEqual({ name, code: 3 })
      expect(result.stdout, name).toMatch(/^status: unhealthy \(could not connect/)
      expect(result.stdout, name).toMatch(reason)
      expect(result.stderr, name).toMatch(/^wincloud-data: (ConfigError|UnavailableError): /)
      for (const secret of [wrongPassword, encodeURIComponent(wrongPassword), rolePassword]) {
        expect(result.stdout + result.stderr, name).not.toContain(secret)
      }
    })
  })

  it('documents the exit codes in the help of health', async () => {
    const help = await runCliProcess(['health', '--help'])
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/3 {2}unhealthy, or the health could not be checked/)
  })

  it('blanks out the password of the URL, encoded or not, and of any URL in a text', () => {
    const url = `postgres://app:${encodeURIComponent('p@ss/word')}@db:5432,db2/x`
    expect(redactPassword('p@ss/word and p%40ss%2Fword', url)).toBe('*** and ***')
    expect(redactPassword('at postgres://u:hunter22@h/x', url)).toBe('at postgres://u:***@h/x')
  })
})

const ownServer = needs('postgresql-15', 'the pg_hba.conf connection tests') ? describe : describe.skip

ownServer('what a pg_hba.conf refuses (a server of its own)', () => {
  let topology: Topology
  let serverPort: number
  const ghost = `ghost_${hex()}`
  const tlsOnly = `tls_only_${hex()}`
  const noTls = `no_tls_${hex()}`
  const noLogin = `no_login_${hex()}`
  const withPassword = `with_pw_${hex()}`

  beforeAll(async () => {
    topology = await startTopology({ replica: false, pgbouncer: false, redis: false })
    serverPort = Number(new URL(topology.primaryUrl).port)
    const client = new pg.Client({ connectionString: topology.primaryUrl })
    await client.connect()
    try {
      for (const name of [tlsOnly, noTls]) await client.query(`create role ${name} login`)
      await client.query(`create role ${noLogin} nologin`)
      await client.query(`create role ${withPassword} login password 'pw-${hex()}'`)
      const { rows } = await client.query<{ hba_file: string }>('show hba_file')
      const hbaFile = rows[0]!.hba_file
      // trust for a role that does not exist: the server then says so (28000) instead of asking for a password.
      writeFileSync(
        hbaFile,
        [
          'host all postgres 127.0.0.1/32 trust',
          `host all ${ghost},${noLogin} 127.0.0.1/32 trust`,
          `hostssl all ${tlsOnly} 127.0.0.1/32 trust`,
          `hostnossl all ${noTls} 127.0.0.1/32 reject`,
          `host all ${withPassword} 127.0.0.1/32 scram-sha-256`,
          '',
        ].join('\n'),
      )
      expect(readFileSync(hbaFile, 'utf8')).toContain(tlsOnly)
      await client.query('select pg_reload_conf()')
    } finally {
      await client.end()
    }
  }, 120_000)

  afterAll(async () => {
    await topology?.stop()
  })

  const urlFor = (user: string): string => `postgres://${user}@127.0.0.1:${serverPort}/postgres`

  it('a role that does not exist (28000): names it and says to create it or fix the user name', async () => {
    const error = await failure(urlFor(ghost))
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).message).toBe(
      `Invalid configuration: connection names user ${ghost}, which does not exist on PostgreSQL at ` +
        `127.0.0.1:${serverPort}/postgres (28000). Fix the user name in the connection string, or create the ` +
        `role: create role ${ghost} login password '…'.`,
    )
  })

  it('TLS required by the server (no entry without encryption, or a reject line): says to connect with TLS', async () => {
    for (const user of [tlsOnly, noTls]) {
      const error = await failure(urlFor(user))
      expect(error, user).toBeInstanceOf(ConfigError)
      expect((error as ConfigError).message).toBe(
        `Invalid configuration: connection was refused by PostgreSQL at 127.0.0.1:${serverPort}/postgres: its ` +
          `pg_hba.conf lets user ${user} connect to database postgres from here only over TLS (28000). Add ` +
          'sslmode=require to the URL (ssl: true in connection fields), or allow the connection without TLS with a ' +
          'host line in pg_hba.conf.',
      )
      expect((error as ConfigError).cause).toMatchObject({ code: '28000' })
    }
  })

  it('a role that may not log in: says to give it LOGIN', async () => {
    const error = await failure(urlFor(noLogin))
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).message).toMatch(
      new RegExp(`names user ${noLogin}, which may not log in to PostgreSQL at 127\\.0\\.0\\.1:${serverPort}/postgres`),
    )
    expect((error as ConfigError).message).toContain(`alter role ${noLogin} login`)
  })

  it('no password at all, to a server that asks for one: says to add it', async () => {
    // pg leaves this connection open (the server waits authentication_timeout for the password), so it is made to
    // this server, whose stop ends it, rather than to the suite's.
    const error = await failure(urlFor(withPassword))
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).message).toBe(
      `Invalid configuration: connection has no password for user ${withPassword}, and PostgreSQL at ` +
        `127.0.0.1:${serverPort}/postgres asks for one. Add it to the connection string after the user name and a ` +
        'colon (user:password@host), URL-encoded.',
    )
  })
})
